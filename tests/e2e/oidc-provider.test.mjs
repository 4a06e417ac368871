// End to end, in a real headless Chromium: the demo (examples/demo.rs) configured, through its
// TOML file, for the certified `oidc-provider` IdP (tests/interop/oidc-provider.mjs), logged
// into through that IdP's own login and consent pages, once per response mode:
//
// - `query`: the IdP redirects the browser to the callback (a top-level GET);
// - `form_post`: the IdP's page auto-submits a form to the callback, a cross-origin POST
//   (same-site: loopback ports), which must still carry the pending-login cookie.
//
// Each mode gets its own IdP, demo, database and browser context (cookie jar). Then each logs
// out with the IdP: after the `query` login, RP-initiated (the demo's logout goes through the
// IdP's confirmation page and back, and the next login asks for the login again: the IdP
// session ended too); after the `form_post` login, back-channel (a logout confirmed at the IdP
// itself posts a logout token to the demo, whose page then shows nobody logged in).
//
//   node --test tests/e2e/        (after `npm ci --prefix tests/e2e` and
//                                  `npm ci --prefix tests/interop`; needs /usr/bin/chromium)

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  buildDemo, freePort, launchBrowser, loopbackCookies, newContext, recordRequests, scratchDir, screenshot,
  startDemo, startOidcProvider, tableRows, tomlString, withDiagnostics,
} from './harness.mjs';

const PROVIDER = 'op';
const CLIENT_ID = 'jit-e2e-app';
const CLIENT_SECRET = 'jit-e2e-secret';
const SESSION_COOKIE = 'jit_session'; // no __Host- prefix: `[session] secure = false`
const PENDING_PREFIX = 'jit_login_';

const ALICE = {
  preferred_username: 'alice',
  email: 'alice@example.com',
  email_verified: true,
  name: 'Alice Liddell',
  groups: ['staff', 'admins'],
};

let browser;

before(async () => {
  await buildDemo(); // a first build may take minutes: here, not in a test's own time limit
  browser = await launchBrowser();
}, { timeout: 25 * 60_000 });

after(async () => {
  await browser?.close().catch(() => {});
}, { timeout: 30_000 });

/** The demo's config: one provider `op` at the oidc-provider issuer, a fresh database. */
function demoConfig({ port, issuer, responseMode, database }) {
  return `
public_url = "http://127.0.0.1:${port}"

[session]
secure = false

[providers.${PROVIDER}]
issuer = ${tomlString(issuer)}
client_id = ${tomlString(CLIENT_ID)}
client_secret = ${tomlString(CLIENT_SECRET)}
scopes = ["openid", "email", "profile", "groups"]
response_mode = ${tomlString(responseMode)}
display_name = "oidc-provider"
backchannel_logout = true
rp_initiated_logout = true

[providers.${PROVIDER}.mapping.groups]
claim = "groups"

[demo]
listen = "127.0.0.1:${port}"
database_url = ${tomlString(`sqlite://${database}`)}
dev_idp = false
`;
}

for (const responseMode of ['query', 'form_post']) {
  test(`oidc-provider login through its login and consent pages, response_mode ${responseMode}`,
    { timeout: 180_000 }, async (t) => {
      const scratch = scratchDir(`op-${responseMode}`);
      t.after(() => scratch.cleanup());
      const port = await freePort();
      const base = `http://127.0.0.1:${port}`;
      const callbackUrl = `${base}/auth/${PROVIDER}/callback`;

      const idp = await startOidcProvider({
        dir: scratch.dir,
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        redirectUris: [callbackUrl],
        accounts: { alice: ALICE },
        postLogoutRedirectUris: [`${base}/auth/logout/done`],
        backchannelLogoutUri: `${base}/auth/${PROVIDER}/backchannel-logout`,
      });
      t.after(async () => {
        await idp.stop();
        idp.proc.saveLog(`e2e-oidc-provider-${responseMode}.log`);
      });
      const demo = await startDemo({
        name: `demo (oidc-provider, ${responseMode})`,
        port,
        config: demoConfig({ port, issuer: idp.issuer, responseMode, database: scratch.path('users.db') }),
        dir: scratch.dir,
      });
      t.after(async () => {
        await demo.stop();
        demo.proc.saveLog(`e2e-demo-oidc-provider-${responseMode}.log`);
      });
      const context = await newContext(browser);
      t.after(() => context.close().catch(() => {}));
      const page = await context.newPage();

      await withDiagnostics(`oidc-provider-${responseMode}`, page, [demo.proc, idp.proc], async () => {
        // The demo's home page, and its login link.
        const home = await page.goto(`${base}/`);
        assert.equal(home.status(), 200);
        const text = await page.locator('body').innerText();
        assert.match(text, /Nobody is logged in\./);
        assert.match(text, /Log in with oidc-provider/);
        assert.match(text, /0 local user\(s\) in the store\./);
        await page.getByRole('link', { name: 'Log in' }).click();

        // oidc-provider's login page (its own interaction URL), with our pending login set.
        await page.waitForURL((url) => url.href.startsWith(`${idp.issuer}/interaction/`));
        const pending = (await loopbackCookies(context)).filter((c) => c.name.startsWith(PENDING_PREFIX));
        assert.equal(pending.length, 1, `one pending-login cookie: ${JSON.stringify(pending)}`);
        assert.equal(pending[0].path, `/auth/${PROVIDER}/`);
        assert.equal(pending[0].httpOnly, true);
        assert.equal(pending[0].secure, false);
        assert.equal(pending[0].sameSite, 'Lax', 'Lax on plain http (loopback ports are same-site)');

        await page.locator('input[name="login"]').fill('alice');
        await page.locator('input[name="password"]').fill('any password');
        await page.getByRole('button', { name: 'Sign-in' }).click();

        // Its consent page: a second interaction.
        const consent = page.getByRole('button', { name: 'Continue' });
        await consent.waitFor();
        assert.match(page.url(), new RegExp(`^${idp.issuer}/interaction/`));
        assert.match(await page.locator('body').innerText(), /Authorize/i);
        const callbacks = recordRequests(page, callbackUrl);
        await consent.click();

        // Back at the demo, through the callback, logged in.
        await page.waitForURL(`${base}/profile`);
        assert.equal(callbacks.length, 1, 'one callback');
        const [callback] = callbacks;
        const sent = await callback.allHeaders();
        if (responseMode === 'form_post') {
          assert.equal(callback.method(), 'POST');
          assert.match(sent['content-type'] ?? '', /^application\/x-www-form-urlencoded/);
          assert.match(callback.postData() ?? '', /(^|&)code=/);
          assert.match(callback.postData() ?? '', /(^|&)state=/);
          assert.equal(callback.url(), callbackUrl, 'nothing in the query');
          assert.equal(sent.origin, idp.issuer, 'posted from the IdP\'s page (cross-origin)');
        } else {
          assert.equal(callback.method(), 'GET');
          assert.match(callback.url(), /[?&]code=/);
          assert.match(callback.url(), /[?&]state=/);
        }
        assert.equal(sent['sec-fetch-site'], 'same-site', 'another origin of the same site');
        assert.match(sent.cookie ?? '', new RegExp(`(^|; )${pending[0].name}=`),
          'the callback carried the pending-login cookie');
        const response = await callback.response();
        assert.equal(response.status(), 303);
        assert.equal(response.headers().location, '/profile');

        // The provisioned user, and where it came from.
        assert.equal(await page.locator('h1').innerText(), 'Profile');
        const rows = await tableRows(page);
        assert.match(rows['Local user id'], /\S/);
        assert.equal(rows.Username, 'alice');
        assert.equal(rows.Email, 'alice@example.com');
        assert.equal(rows['Display name'], 'Alice Liddell');
        assert.deepEqual(rows.Groups.split(',').map((g) => g.trim()).sort(), ['admins', 'staff']);
        assert.equal(rows.Provider, PROVIDER);
        assert.equal(rows.Subject, 'alice', 'oidc-provider.mjs: sub is the login name');
        assert.equal(rows.Credential, 'session cookie (interactive login)');
        await screenshot(page, `profile-oidc-provider-${responseMode}.png`);

        // Cookies: the pending login is over, the session is set.
        const cookies = await loopbackCookies(context);
        assert.deepEqual(cookies.filter((c) => c.name.startsWith(PENDING_PREFIX)), [],
          'the pending-login cookie is cleared by the callback');
        const session = cookies.filter((c) => c.name === SESSION_COOKIE);
        assert.equal(session.length, 1, `one session cookie: ${JSON.stringify(cookies)}`);
        assert.equal(session[0].path, '/');
        assert.equal(session[0].httpOnly, true);
        assert.equal(session[0].sameSite, 'Lax');

        // The session works for a script's fetch too, and the store has one user.
        const me = await page.evaluate(async () => {
          const res = await fetch('/me', { headers: { accept: 'application/json' } });
          return { status: res.status, body: await res.json() };
        });
        assert.equal(me.status, 200);
        assert.equal(me.body.user.username, 'alice');
        assert.equal(me.body.auth.provider, PROVIDER);
        assert.equal(me.body.auth.subject, 'alice');
        await page.goto(`${base}/`);
        const after = await page.locator('body').innerText();
        assert.match(after, /Logged in as Alice Liddell through op\./);
        assert.match(after, /1 local user\(s\) in the store\./);

        if (responseMode === 'query') {
          // RP-initiated logout: the demo's button, the IdP's confirmation, back to the demo.
          const returns = recordRequests(page, `${base}/auth/logout/done`);
          await page.goto(`${base}/profile`);
          await page.getByRole('button', { name: 'Log out' }).first().click();
          await page.waitForURL((url) => url.href.startsWith(`${idp.issuer}/session/end`));
          await page.getByRole('button', { name: 'Yes, sign me out' }).click();
          await page.waitForURL(`${base}/`);
          assert.equal(returns.length, 1, 'the IdP sent the browser back to /auth/logout/done');
          assert.match(new URL(returns[0].url()).search, /^\?state=/);
          assert.match(await page.locator('body').innerText(), /Nobody is logged in\./);
          assert.deepEqual((await loopbackCookies(context)).filter((c) => c.name === SESSION_COOKIE), []);
          // The IdP's session ended too: logging in again asks who logs in.
          await page.getByRole('link', { name: 'Log in' }).click();
          await page.waitForURL((url) => url.href.startsWith(`${idp.issuer}/interaction/`));
          await page.locator('input[name="login"]').waitFor();
        } else {
          // Back-channel logout: logged out at the IdP itself, the demo hears of it.
          await page.goto(`${idp.issuer}/session/end`);
          await page.getByRole('button', { name: 'Yes, sign me out' }).click();
          await page.waitForURL((url) => url.href.startsWith(`${idp.issuer}/session/end/success`));
          assert.equal((await loopbackCookies(context)).filter((c) => c.name === SESSION_COOKIE).length, 1,
            'the session cookie is still in the browser: the server ended the session');
          await page.goto(`${base}/`);
          assert.match(await page.locator('body').innerText(), /Nobody is logged in\./);
          const me = await page.evaluate(async () => (await fetch('/me')).status);
          assert.equal(me, 401);
        }
      });
    });
}
