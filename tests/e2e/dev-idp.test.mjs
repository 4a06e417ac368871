// End to end, in a real headless Chromium: the demo (examples/demo.rs) with its built-in
// development IdP. A first login provisions alice, the profile page shows her and where she
// came from, logout ends the session for real (and, RP-initiated, at the IdP too), a second
// login with a changed email and name updates the same local user, and a logout at the IdP
// (back-channel) logs her out of the demo.
//
//   node --test tests/e2e/        (after `npm ci --prefix tests/e2e`; needs /usr/bin/chromium)

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  copyInto, freePort, launchBrowser, loopbackCookies, newContext, recordRequests, scratchDir,
  screenshot, startDemo, tableRows, tomlString, withDiagnostics,
} from './harness.mjs';

const SESSION_COOKIE = 'jit_session'; // no __Host- prefix: `[session] secure = false`
const PENDING_PREFIX = 'jit_login_';

let scratch;
let demo;
let browser;
let context;
let page;

before(async () => {
  scratch = scratchDir('dev-idp');
  const port = await freePort();
  const config = `
# The demo on plain-http loopback, its development IdP as provider \`dev\`, a fresh database.
public_url = "http://127.0.0.1:${port}"

[session]
secure = false

[demo]
listen = "127.0.0.1:${port}"
database_url = ${tomlString(`sqlite://${scratch.path('users.db')}`)}
dev_idp = true
`;
  demo = await startDemo({ name: 'demo (dev IdP)', port, config, dir: scratch.dir });
  assert.match(demo.devIdp ?? '', /^http:\/\/127\.0\.0\.1:\d+$/, `the demo prints its dev IdP\n${demo.proc.describe()}`);
  browser = await launchBrowser();
  context = await newContext(browser);
  page = await context.newPage();
}, { timeout: 25 * 60_000 });

after(async () => {
  await browser?.close().catch(() => {});
  if (demo) {
    await demo.stop();
    demo.proc.saveLog('e2e-demo-dev-idp.log');
  }
  scratch?.cleanup();
}, { timeout: 30_000 });

const check = (label, body) => withDiagnostics(label, page, [demo?.proc], body);

/** The one pending-login cookie, checked the way the layer sets it on plain http. */
async function pendingCookie(provider) {
  const pending = (await loopbackCookies(context)).filter((c) => c.name.startsWith(PENDING_PREFIX));
  assert.equal(pending.length, 1, `one pending-login cookie: ${JSON.stringify(pending)}`);
  const [cookie] = pending;
  assert.equal(cookie.path, `/auth/${provider}/`, 'scoped to the provider\'s endpoints');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, false, 'plain-http loopback: `[session] secure = false`');
  assert.equal(cookie.sameSite, 'Lax', 'Lax on plain http (loopback ports are same-site)');
  const now = Date.now() / 1000;
  assert.ok(cookie.expires > now && cookie.expires <= now + 600 + 5, `10-minute cookie: ${cookie.expires}`);
  return cookie;
}

async function sessionCookie() {
  const cookies = await loopbackCookies(context);
  assert.deepEqual(cookies.filter((c) => c.name.startsWith(PENDING_PREFIX)), [],
    'the pending-login cookie is single use: cleared by the callback');
  const session = cookies.filter((c) => c.name === SESSION_COOKIE);
  assert.equal(session.length, 1, `one session cookie: ${JSON.stringify(cookies)}`);
  const [cookie] = session;
  assert.equal(cookie.path, '/');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, false);
  assert.equal(cookie.sameSite, 'Lax');
  return cookie;
}

/** From the home page to the development IdP's login page, through the demo's login link. */
async function startLogin() {
  const home = await page.goto(`${demo.base}/`);
  assert.equal(home.status(), 200);
  const text = await page.locator('body').innerText();
  assert.match(text, /Nobody is logged in\./);
  assert.match(text, /Log in with the development IdP/);
  const link = page.getByRole('link', { name: 'Log in' });
  assert.equal(await link.getAttribute('href'), '/auth/dev/login?return_to=/profile');
  await link.click();
  await page.waitForURL((url) => url.href.startsWith(`${demo.devIdp}/authorize?`));
  assert.equal(await page.locator('h1').innerText(), 'Development identity provider');
  await pendingCookie('dev');
  return text;
}

/** After the IdP's form was submitted: the callback's 303 to /profile, and the page itself. */
async function finishLogin(callbacks) {
  await page.waitForURL(`${demo.base}/profile`);
  assert.equal(callbacks.length, 1, 'one callback');
  const [callback] = callbacks;
  assert.equal(callback.method(), 'GET', 'the dev IdP answers in the query');
  const response = await callback.response();
  assert.equal(response.status(), 303);
  assert.equal(response.headers().location, '/profile');
  assert.equal(await page.locator('h1').innerText(), 'Profile');
  return tableRows(page);
}

/** `GET /me` from a script of the page (same origin, cookies included): status and error. */
const fetchMe = () => page.evaluate(async () => {
  const res = await fetch('/me', { headers: { accept: 'application/json' } });
  const body = await res.json();
  return { status: res.status, error: body.error };
});

const groupsOf = (text) => text.split(',').map((g) => g.trim()).sort();

let firstLogin; // the rows of the profile page after alice's first login

test('dev IdP: the first login provisions alice and shows her profile', { timeout: 120_000 }, () =>
  check('dev-idp-first-login', async () => {
    const home = await startLogin();
    assert.match(home, /0 local user\(s\) in the store\./, 'a fresh database');
    assert.equal(await page.locator('button[data-user]').count(), 2, 'presets alice and bob');

    const callbacks = recordRequests(page, `${demo.base}/auth/dev/callback`);
    await page.locator('button[data-user="alice"]').click();
    const rows = await finishLogin(callbacks);

    assert.match(rows['Local user id'], /\S/);
    assert.equal(rows.Username, 'alice');
    assert.equal(rows.Email, 'alice@example.com');
    assert.equal(rows['Display name'], 'Alice');
    assert.deepEqual(groupsOf(rows.Groups), ['admins', 'staff']);
    // Where it came from.
    assert.equal(rows.Provider, 'dev');
    assert.equal(rows.Subject, '1001');
    assert.equal(rows.Credential, 'session cookie (interactive login)');
    assert.match(rows['Logged in'], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    assert.ok(rows.Expires > rows['Logged in'], `expires after login: ${JSON.stringify(rows)}`);
    // store_tokens: the session holds the IdP's access token (IdpAccessToken), never shown.
    assert.match(rows['IdP access token'], /^held, valid until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);
    await sessionCookie();
    firstLogin = rows;
    // The session store lists this browser's session, with the button ending them all.
    assert.equal(await page.locator('#sessions li').count(), 1);
    assert.match(await page.locator('#sessions li').innerText(), /through dev$/);
    assert.equal(await page.getByRole('button', { name: 'Sign out everywhere' }).count(), 1);

    const shot = await screenshot(page, 'profile-dev-idp.png');
    // The README's picture is refreshed only on request, so test runs leave the tree clean.
    if (process.env.JIT_E2E_UPDATE_SCREENSHOT === '1') copyInto(shot, 'docs/screenshot-profile.png');

    // The JSON view of the same session.
    const me = await page.goto(`${demo.base}/me`);
    assert.equal(me.status(), 200);
    const body = JSON.parse(await page.locator('body').innerText());
    assert.equal(body.user.username, 'alice');
    assert.equal(body.user.email, 'alice@example.com');
    assert.equal(body.auth.provider, 'dev');
    assert.equal(body.auth.subject, '1001');

    // She is in the local `admins` group: the demo's admin router lets her test the dev
    // provider's mapping in the browser (a dry run: the store still holds one user below).
    await page.goto(`${demo.base}/profile`);
    await page.locator('a[href="/admin/jit-test"]').click();
    await page.waitForURL(`${demo.base}/admin/jit-test`);
    await page.locator('textarea[name="claims"]').fill(JSON.stringify({
      sub: 'e2e-dry-run', preferred_username: 'carol', email: 'carol@example.com',
      email_verified: true, name: 'Carol', groups: ['staff'],
      realm_access: { roles: ['offline_access'] }, resource_access: { demo: { roles: ['editor'] } },
    }));
    await page.locator('form button').click();
    await page.locator('#trace').waitFor();
    assert.match(await page.locator('#action').innerText(), /^create a user/);
    const profile = JSON.parse(await page.locator('#profile').innerText());
    assert.equal(profile.username, 'carol');
    assert.deepEqual(profile.roles, ['editor'], 'the client role of resource_access.demo.roles');
    const trace = await page.locator('#trace').innerText();
    assert.match(trace, /admission/, 'the admission rules are in the trace');
    assert.match(trace, /roles\.rules\[\d+\]/, 'so are the role rules');
    assert.doesNotMatch(trace, /carol@example\.com/, 'the trace names claim paths, never values');

    // Home now greets her, and the store holds one user.
    await page.goto(`${demo.base}/`);
    const greeting = await page.locator('body').innerText();
    assert.match(greeting, /Logged in as Alice through dev\./);
    assert.match(greeting, /1 local user\(s\) in the store\./);
  }));

test('dev IdP: logout ends the session (/me answers 401, the old cookie is revoked)', { timeout: 60_000 }, () =>
  check('dev-idp-logout', async () => {
    assert.ok(firstLogin, 'needs the first login');
    await page.goto(`${demo.base}/profile`);
    const before = await sessionCookie();

    // RP-initiated logout: through the IdP's end-session endpoint and back to /logout/done.
    const endSessions = recordRequests(page, `${demo.devIdp}/end_session`);
    const returns = recordRequests(page, `${demo.base}/auth/logout/done`);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${demo.base}/`);
    assert.equal(endSessions.length, 1, 'the browser went to the IdP\'s end_session_endpoint');
    const endSession = new URL(endSessions[0].url());
    assert.equal(endSession.searchParams.get('client_id'), 'demo');
    assert.equal(endSession.searchParams.get('post_logout_redirect_uri'), `${demo.base}/auth/logout/done`);
    assert.equal(endSession.searchParams.get('id_token_hint')?.split('.').length, 3, 'the ID token hint');
    assert.equal(returns.length, 1, 'and came back to /auth/logout/done');
    assert.equal(new URL(returns[0].url()).searchParams.get('state'), endSession.searchParams.get('state'));
    assert.match(await page.locator('body').innerText(), /Nobody is logged in\./);
    assert.deepEqual((await loopbackCookies(context)).filter((c) => c.name === SESSION_COOKIE), [],
      'the session cookie is deleted');

    // A navigation (Accept: text/html) gets the layer's HTML error page...
    const me = await page.goto(`${demo.base}/me`);
    assert.equal(me.status(), 401);
    assert.match(await page.locator('body').innerText(), /login_required/);
    const profile = await page.goto(`${demo.base}/profile`);
    assert.equal(profile.status(), 401);
    // ...and a script's fetch the JSON one.
    assert.deepEqual(await fetchMe(), { status: 401, error: 'login_required' });

    // The session itself is over, not only the cookie: replaying the old one gets nobody in.
    await context.addCookies([before]);
    assert.deepEqual(await fetchMe(), { status: 401, error: 'login_required' },
      'a logged-out session cookie is refused');
    const replay = await page.goto(`${demo.base}/me`);
    assert.equal(replay.status(), 401);
    await context.clearCookies();
  }));

test('dev IdP: a typed login with a new email and name updates the same local user', { timeout: 120_000 }, () =>
  check('dev-idp-update', async () => {
    assert.ok(firstLogin, 'needs the first login');
    await startLogin();

    const form = page.locator('form#custom');
    await form.locator('input[name="sub"]').fill('1001');
    await form.locator('input[name="preferred_username"]').fill('alice');
    await form.locator('input[name="email"]').fill('alice.liddell@example.org');
    await form.locator('input[name="name"]').fill('Alice Liddell');
    await form.locator('input[name="groups"]').fill('staff, admins');
    await form.locator('input[name="email_verified"]').check();
    const callbacks = recordRequests(page, `${demo.base}/auth/dev/callback`);
    await form.getByRole('button', { name: 'Log in' }).click();
    const rows = await finishLogin(callbacks);

    assert.equal(rows['Local user id'], firstLogin['Local user id'], 'the same local user');
    assert.equal(rows.Username, 'alice', 'the username is fixed at creation');
    assert.equal(rows.Email, 'alice.liddell@example.org');
    assert.equal(rows['Display name'], 'Alice Liddell');
    assert.deepEqual(groupsOf(rows.Groups), ['admins', 'staff']);
    assert.equal(rows.Provider, 'dev');
    assert.equal(rows.Subject, '1001');
    assert.equal(rows.Created, firstLogin.Created);
    assert.ok(rows.Updated >= firstLogin.Updated, `updated again: ${JSON.stringify(rows)}`);
    await sessionCookie();

    await page.goto(`${demo.base}/`);
    const home = await page.locator('body').innerText();
    assert.match(home, /Logged in as Alice Liddell through dev\./);
    assert.match(home, /1 local user\(s\) in the store\./, 'no second user');
  }));

test('dev IdP: a logout at the IdP (back-channel) logs alice out of the demo', { timeout: 60_000 }, () =>
  check('dev-idp-backchannel-logout', async () => {
    assert.ok(firstLogin, 'needs the first login');
    await page.goto(`${demo.base}/`);
    assert.match(await page.locator('body').innerText(), /Logged in as Alice Liddell through dev\./);
    assert.equal((await fetchMe()).status, 200);
    assert.match(demo.proc.stdout, /back-channel logout URI http:\/\/127\.0\.0\.1:\d+\/auth\/dev\/backchannel-logout/,
      'the banner prints the URI to register');

    // The IdP's administrator logs alice (sub 1001) out: it posts a logout token to the demo.
    const res = await fetch(`${demo.devIdp}/admin/logout`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ sub: '1001' }),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { delivered: 1 }, 'the demo accepted the logout token');

    // The same browser, with its cookie still in place, is logged out.
    assert.equal((await loopbackCookies(context)).filter((c) => c.name === SESSION_COOKIE).length, 1,
      'the cookie is still there: the server ended the session');
    await page.goto(`${demo.base}/`);
    assert.match(await page.locator('body').innerText(), /Nobody is logged in\./);
    assert.deepEqual(await fetchMe(), { status: 401, error: 'login_required' });
  }));
