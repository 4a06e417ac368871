// End to end, in a real headless Chromium: the demo (examples/demo.rs) configured, through its
// TOML file, for a SAML 2.0 identity provider built on samlify (tests/saml-idp/sso-server.mjs),
// logged into through that IdP's own login page:
//
// - the layer sends the browser to the IdP by HTTP-Redirect (`SAMLRequest` + `RelayState`),
//   setting its pending-login cookie;
// - the IdP's page auto-submits a form POSTing the signed `SAMLResponse` and the `RelayState`
//   to the ACS: a cross-origin POST (same-site: loopback ports), which must still carry the
//   pending-login cookie;
// - the ACS provisions the user and opens the session; logout ends it; a second login of the
//   same IdP user finds the same local user.
//
//   node --test tests/e2e/        (after `npm ci --prefix tests/e2e` and
//                                  `npm ci --prefix tests/saml-idp`; needs /usr/bin/chromium
//                                  and the openssl CLI, and the demo built with `saml`)

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { inflateRawSync } from 'node:zlib';

import {
  buildDemo, launchBrowser, loopbackCookies, newContext, freePort, Proc, recordRequests, ROOT,
  scratchDir, screenshot, startDemo, tableRows, tomlString, withDiagnostics,
} from './harness.mjs';

const PROVIDER = 'corp';
const SESSION_COOKIE = 'jit_session'; // no __Host- prefix: `[session] secure = false`
const PENDING_PREFIX = 'jit_login_';
const SAML_IDP = join(ROOT, 'tests/saml-idp');
const READY_TIMEOUT_MS = 60_000; // the IdP loads xmllint (the SAML schemas) before READY
const USER = 'jane';

/** sso-server.mjs's persistent NameID of a user. */
const nameIdOf = (user) =>
  `p-${createHash('sha256').update(`sso-server:${user}`).digest('hex').slice(0, 24)}`;

let browser;

before(async () => {
  await buildDemo(); // a first build may take minutes: here, not in a test's own time limit
  browser = await launchBrowser();
}, { timeout: 25 * 60_000 });

after(async () => {
  await browser?.close().catch(() => {});
}, { timeout: 30_000 });

/**
 * Starts tests/saml-idp/sso-server.mjs, reading the SP metadata at `spMetadataUrl`; resolves
 * once it printed `READY <port>`, with `{ base, proc, stop }`.
 */
async function startSsoServer(spMetadataUrl) {
  assert.ok(
    existsSync(join(SAML_IDP, 'node_modules/samlify/package.json')),
    'tests/saml-idp/node_modules/samlify is missing: run `npm ci --prefix tests/saml-idp`',
  );
  const proc = new Proc('sso-server', process.execPath, [join(SAML_IDP, 'sso-server.mjs'), '0'], {
    cwd: SAML_IDP,
    env: { ...process.env, SP_METADATA_URL: spMetadataUrl },
  });
  let port;
  try {
    [, port] = await proc.waitForLine(/^READY (\d+)$/, READY_TIMEOUT_MS);
  } catch (err) {
    await proc.stop('SIGKILL');
    throw err;
  }
  return {
    base: `http://127.0.0.1:${port}`,
    proc,
    // The script exits when its stdin closes, and on SIGTERM.
    stop: () => {
      proc.child.stdin.end();
      return proc.stop('SIGTERM');
    },
  };
}

/** What the IdP's metadata says: entity ID, SSO URL (HTTP-Redirect), signing certificate. */
async function idpMetadata(base) {
  const res = await fetch(`${base}/metadata`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(res.status, 200);
  const xml = await res.text();
  const entityId = xml.match(/<(?:\w+:)?EntityDescriptor\b[^>]*\bentityID="([^"]+)"/)?.[1];
  const sso = xml.match(
    /<(?:\w+:)?SingleSignOnService\b[^>]*Binding="urn:oasis:names:tc:SAML:2\.0:bindings:HTTP-Redirect"[^>]*Location="([^"]+)"/,
  )?.[1];
  const der = xml.match(/<(?:\w+:)?X509Certificate>([^<]+)</)?.[1]?.replace(/\s+/g, '');
  assert.ok(entityId && sso && der, `entity ID, SSO URL and certificate in the IdP metadata:\n${xml}`);
  const pem = `-----BEGIN CERTIFICATE-----\n${der.match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
  return { metadataUrl: `${base}/metadata`, entityId, sso, pem };
}

/**
 * The demo's config: one SAML provider `corp`, a fresh database. `source` says how the demo
 * knows the IdP: `inline` (entity ID, SSO URL and certificate, taken from the IdP metadata
 * here) or `metadata_url` (the demo reads the IdP's /metadata itself, at the first login).
 */
function demoConfig({ port, idp, source, database }) {
  const idpSettings = source === 'inline'
    ? `idp_entity_id = ${tomlString(idp.entityId)}
idp_sso_url = ${tomlString(idp.sso)}
idp_certificates = [${tomlString(idp.pem)}]`
    : `idp_metadata_url = ${tomlString(idp.metadataUrl)}`;
  return `
public_url = "http://127.0.0.1:${port}"

[session]
secure = false

[providers.${PROVIDER}]
display_name = "the samlify SSO server"

[providers.${PROVIDER}.saml]
${idpSettings}
# Published as WantAssertionsSigned: samlify then signs the assertion (not the response).
want_assertions_signed = true

[providers.${PROVIDER}.mapping]
username = "{mail | localpart}"
email = "{mail}"
display_name = ""

[providers.${PROVIDER}.mapping.groups]
claim = "isMemberOf"

[demo]
listen = "127.0.0.1:${port}"
database_url = ${tomlString(`sqlite://${database}`)}
dev_idp = false
`;
}

/** The XML of a `SAMLRequest` of the HTTP-Redirect binding (base64 of raw DEFLATE). */
const inflateRequest = (value) => inflateRawSync(Buffer.from(value, 'base64')).toString('utf8');

/** The whole scenario, with the IdP known to the demo as `source` says (see demoConfig). */
async function samlLogin(t, source) {
  // Undone last-in first-out at the end: the browser context, the demo, the IdP, the files.
  const undo = [];
  t.after(async () => {
    for (const step of undo.reverse()) await step();
  });
  const scratch = scratchDir(`saml-${source}`);
  undo.push(() => scratch.cleanup());
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const loginUrl = `${base}/auth/${PROVIDER}/login?return_to=/profile`;
  const acsUrl = `${base}/auth/${PROVIDER}/acs`;
  const metadataUrl = `${base}/auth/${PROVIDER}/metadata`;

  // The IdP first (the demo's config needs its certificate); it reads the SP metadata at
  // each login, once the demo is up.
  const sso = await startSsoServer(metadataUrl);
  undo.push(async () => {
    await sso.stop();
    sso.proc.saveLog(`e2e-saml-sso-server-${source}.log`);
  });
  const idp = await idpMetadata(sso.base);
  assert.equal(idp.sso, `${sso.base}/sso`);

  const demo = await startDemo({
    name: `demo (saml, ${source})`,
    port,
    config: demoConfig({ port, idp, source, database: scratch.path('users.db') }),
    dir: scratch.dir,
  });
  undo.push(async () => {
    await demo.stop();
    demo.proc.saveLog(`e2e-demo-saml-${source}.log`);
  });
  const context = await newContext(browser);
  undo.push(() => context.close().catch(() => {}));
  const page = await context.newPage();

  // The SP metadata the IdP reads: our ACS, WantAssertionsSigned.
  const spMetadata = await fetch(metadataUrl, { signal: AbortSignal.timeout(5_000) });
  assert.equal(spMetadata.status, 200);
  assert.equal(spMetadata.headers.get('content-type'), 'application/samlmetadata+xml');
  const spXml = await spMetadata.text();
  assert.match(spXml, new RegExp(`entityID="${metadataUrl}"`));
  assert.match(spXml, new RegExp(`Location="${acsUrl}"`));
  assert.match(spXml, /WantAssertionsSigned="true"/);

  /**
   * One login: the layer's redirect to the IdP, its login page, the POST back to the ACS.
   * Returns the profile page's rows and what went over the wire.
   */
  async function login(user) {
    const logins = recordRequests(page, `${base}/auth/${PROVIDER}/login`);
    await page.goto(loginUrl);

    // The layer's 302 to the IdP, by HTTP-Redirect.
    await page.waitForURL((url) => url.href.startsWith(`${sso.base}/sso?`));
    assert.equal(logins.length, 1, 'one login request');
    const redirect = await logins[0].response();
    assert.equal(redirect.status(), 302);
    const location = new URL(redirect.headers().location);
    assert.equal(`${location.origin}${location.pathname}`, idp.sso);
    const relayState = location.searchParams.get('RelayState');
    assert.match(relayState ?? '', /^[A-Za-z0-9_-]{16,}$/, 'an opaque RelayState');
    const authnRequest = inflateRequest(location.searchParams.get('SAMLRequest'));
    const requestId = authnRequest.match(/<samlp:AuthnRequest\b[^>]*\sID="([^"]+)"/)?.[1];
    assert.ok(requestId, `an AuthnRequest with an ID:\n${authnRequest}`);
    assert.match(authnRequest, new RegExp(`AssertionConsumerServiceURL="${acsUrl}"`));
    assert.match(authnRequest, new RegExp(`<saml:Issuer>${metadataUrl}</saml:Issuer>`));

    // The pending-login cookie: on plain http (`secure = false`) SameSite=Lax, enough for a
    // POST between loopback ports (same site); SameSite=None (with Secure) on https.
    const pending = (await loopbackCookies(context)).filter((c) => c.name.startsWith(PENDING_PREFIX));
    assert.equal(pending.length, 1, `one pending-login cookie: ${JSON.stringify(pending)}`);
    assert.equal(pending[0].path, `/auth/${PROVIDER}/`);
    assert.equal(pending[0].httpOnly, true);
    assert.equal(pending[0].secure, false);
    assert.equal(pending[0].sameSite, 'Lax');

    // samlify parsed the AuthnRequest: its login page names our SP.
    assert.equal(await page.locator('h1').innerText(), 'SSO test identity provider');
    assert.equal(await page.locator('#sp').innerText(), metadataUrl);
    await page.locator('input[name="user"]').fill(user);
    const acs = recordRequests(page, acsUrl);
    await page.getByRole('button', { name: 'Sign in' }).click();

    // The auto-submitted form, the ACS's 303 to return_to, the profile.
    await page.waitForURL(`${base}/profile`);
    assert.equal(acs.length, 1, 'one ACS request');
    const [post] = acs;
    const sent = await post.allHeaders();
    assert.equal(post.method(), 'POST');
    assert.equal(post.url(), acsUrl, 'nothing in the query');
    assert.match(sent['content-type'] ?? '', /^application\/x-www-form-urlencoded/);
    assert.equal(sent.origin, sso.base, 'posted from the IdP\'s page (cross-origin)');
    assert.equal(sent['sec-fetch-site'], 'same-site', 'another origin of the same site');
    assert.match(sent.cookie ?? '', new RegExp(`(^|; )${pending[0].name}=`),
      'the ACS POST carried the pending-login cookie');
    const form = new URLSearchParams(post.postData() ?? '');
    assert.equal(form.get('RelayState'), relayState, 'the RelayState came back');
    const samlResponse = Buffer.from(form.get('SAMLResponse') ?? '', 'base64').toString('utf8');
    assert.match(samlResponse, new RegExp(`InResponseTo="${requestId}"`), 'answers our AuthnRequest');
    assert.match(samlResponse, new RegExp(`Destination="${acsUrl}"`));
    assert.match(samlResponse, /<saml:Assertion\b[^]*<ds:Signature\b[^]*<\/saml:Assertion>/,
      'a signed assertion');
    assert.match(samlResponse, new RegExp(`>${nameIdOf(user)}</saml:NameID>`));
    const response = await post.response();
    assert.equal(response.status(), 303);
    assert.equal(response.headers().location, '/profile');

    assert.equal(await page.locator('h1').innerText(), 'Profile');
    return tableRows(page);
  }

  /** The cookies after a login: the pending one cleared, the session set. */
  async function sessionCookie() {
    const cookies = await loopbackCookies(context);
    assert.deepEqual(cookies.filter((c) => c.name.startsWith(PENDING_PREFIX)), [],
      'the pending-login cookie is cleared by the ACS');
    const session = cookies.filter((c) => c.name === SESSION_COOKIE);
    assert.equal(session.length, 1, `one session cookie: ${JSON.stringify(cookies)}`);
    assert.equal(session[0].path, '/');
    assert.equal(session[0].httpOnly, true);
    assert.equal(session[0].secure, false);
    assert.equal(session[0].sameSite, 'Lax');
    return session[0];
  }

  const fetchMe = () => page.evaluate(async () => {
    const res = await fetch('/me', { headers: { accept: 'application/json' } });
    return { status: res.status, body: await res.json() };
  });

  await withDiagnostics(`saml-${source}`, page, [demo.proc, sso.proc], async () => {
    // The demo's home page offers the SAML provider.
    const home = await page.goto(`${base}/`);
    assert.equal(home.status(), 200);
    const text = await page.locator('body').innerText();
    assert.match(text, /Nobody is logged in\./);
    assert.match(text, /Log in with the samlify SSO server/);
    assert.match(text, /0 local user\(s\) in the store\./);
    assert.equal(await page.getByRole('link', { name: 'Log in' }).getAttribute('href'),
      `/auth/${PROVIDER}/login?return_to=/profile`);

    // First login: jane is provisioned from the assertion.
    const first = await login(USER);
    assert.match(first['Local user id'], /\S/);
    assert.equal(first.Username, USER, '{mail | localpart}');
    assert.equal(first.Email, `${USER}@example.com`);
    assert.equal(first['Display name'], '—', 'display_name = "": unmanaged, empty');
    assert.deepEqual(first.Groups.split(',').map((g) => g.trim()).sort(), ['admins', 'staff']);
    assert.equal(first.Provider, PROVIDER);
    assert.equal(first.Subject, nameIdOf(USER), 'the persistent NameID');
    assert.equal(first.Credential, 'session cookie (interactive login)');
    await sessionCookie();
    await screenshot(page, source === 'inline' ? 'profile-saml.png' : `profile-saml-${source}.png`);

    const me = await fetchMe();
    assert.equal(me.status, 200);
    assert.equal(me.body.user.username, USER);
    assert.equal(me.body.auth.provider, PROVIDER);
    assert.equal(me.body.auth.subject, nameIdOf(USER));

    // Logout: the session is over.
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${base}/`);
    const loggedOut = await page.locator('body').innerText();
    assert.match(loggedOut, /Nobody is logged in\./);
    assert.match(loggedOut, /1 local user\(s\) in the store\./);
    assert.deepEqual((await loopbackCookies(context)).filter((c) => c.name === SESSION_COOKIE), [],
      'the session cookie is deleted');
    assert.equal((await fetchMe()).status, 401);

    // Second login of the same IdP user: the same local user, no second one.
    const second = await login(USER);
    assert.equal(second['Local user id'], first['Local user id'], 'the same local user');
    assert.equal(second.Username, USER);
    assert.equal(second.Subject, first.Subject);
    assert.equal(second.Created, first.Created);
    await sessionCookie();
    await page.goto(`${base}/`);
    const again = await page.locator('body').innerText();
    assert.match(again, new RegExp(`Logged in as ${USER} through ${PROVIDER}\\.`));
    assert.match(again, /1 local user\(s\) in the store\./, 'no second user');
  });
}

test('saml login through the demo', { timeout: 240_000 }, (t) => samlLogin(t, 'inline'));

test('saml login through the demo, the IdP read from its metadata URL', { timeout: 240_000 },
  (t) => samlLogin(t, 'metadata_url'));
