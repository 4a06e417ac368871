// A real, certified OpenID Provider (the `oidc-provider` npm package) for jit-provision's
// interop test (tests/interop_oidc_provider.rs). It is driven over HTTP like a browser drives
// it: the built-in development login and consent pages (devInteractions) stay on.
//
//   node tests/interop/oidc-provider.mjs [PORT]
//
// Configuration, from the environment:
//   OP_PORT            port to listen on when no argument is given (default 0: any free port)
//   OP_CLIENT_ID       the one client's id (required)
//   OP_CLIENT_SECRET   its secret (required; client_secret_basic)
//   OP_REDIRECT_URIS   its redirect URIs, separated by spaces or commas (required)
//   OP_ACCOUNTS_FILE   JSON file `{ "<login>": { claims... } }` (required), read again at every
//                      account lookup so a test can change a user's claims between two logins
//   OP_POST_LOGOUT_REDIRECT_URIS  the client's post_logout_redirect_uris (RP-Initiated Logout),
//                      separated by spaces or commas (optional)
//   OP_BACKCHANNEL_LOGOUT_URI     the client's backchannel_logout_uri (optional; registered with
//                      backchannel_logout_session_required, so logout tokens carry `sid`)
//
// RP-Initiated Logout (end_session_endpoint `/session/end`, with its confirmation page) and
// Back-Channel Logout are enabled: confirming a logout posts a logout token to the
// backchannel_logout_uri of every client the session logged in to.
//
// The account's `sub` is its login name (stable per login); its other claims come from the
// file. Scopes `email`, `profile` and `groups` release `email`/`email_verified`,
// `name`/`preferred_username` and `groups`, and they are put in the ID token itself
// (`conformIdTokenClaims: false`), not only at userinfo.
//
// It listens on 127.0.0.1 only, with issuer `http://127.0.0.1:<port>`, prints `READY <port>`
// on stdout once listening, and exits when its standard input closes or on SIGTERM/SIGINT, so
// a test that dies leaves no process behind.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const HOST = '127.0.0.1';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`oidc-provider.mjs: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const portText = process.argv[2] ?? process.env.OP_PORT ?? '0';
const port = Number.parseInt(portText, 10);
if (!Number.isInteger(port) || port < 0 || port > 65535 || String(port) !== portText.trim()) {
  console.error(`oidc-provider.mjs: bad port ${JSON.stringify(portText)}`);
  process.exit(2);
}
const clientId = required('OP_CLIENT_ID');
const clientSecret = required('OP_CLIENT_SECRET');
const redirectUris = required('OP_REDIRECT_URIS').split(/[\s,]+/).filter(Boolean);
const accountsFile = required('OP_ACCOUNTS_FILE');
const postLogoutRedirectUris = (process.env.OP_POST_LOGOUT_REDIRECT_URIS ?? '')
  .split(/[\s,]+/).filter(Boolean);
const backchannelLogoutUri = process.env.OP_BACKCHANNEL_LOGOUT_URI || undefined;

// Exit with the parent: on SIGTERM/SIGINT, and when stdin reaches its end (the test holds
// the write side open for as long as it wants us alive).
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

/** The accounts, read afresh at every call. */
function readAccounts() {
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

async function findAccount(ctx, id) {
  const accounts = readAccounts();
  if (!Object.hasOwn(accounts, id)) {
    return undefined;
  }
  return {
    accountId: id,
    async claims() {
      // Read again: the claims are those of the file at the time the token is made.
      const current = readAccounts()[id] ?? {};
      return { ...current, sub: id };
    },
  };
}

// A fresh signing key and cookie key per run: nothing secret is committed, and no
// development-default key warning.
const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 })
  .privateKey.export({ format: 'jwk' });

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
      post_logout_redirect_uris: postLogoutRedirectUris,
      ...(backchannelLogoutUri
        ? { backchannel_logout_uri: backchannelLogoutUri, backchannel_logout_session_required: true }
        : {}),
    },
  ],
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // Claims of the granted scopes go into the ID token, not only to userinfo.
  conformIdTokenClaims: false,
  // PKCE for every client, confidential ones included (oidc-provider only supports S256).
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    userinfo: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
  },
  jwks: { keys: [{ ...signingKey, use: 'sig', alg: 'RS256' }] },
  // Logout tokens go to the test's app on 127.0.0.1, an address oidc-provider's SSRF guard
  // refuses (it hands fetch a dispatcher that drops connections to special-use addresses):
  // this test-only provider fetches without that dispatcher.
  fetch: (url, options) => {
    const { dispatcher: _ssrfGuard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
};

// Refresh tokens, when OP_ACCESS_TOKEN_TTL (seconds) is set: the client may use the
// refresh_token grant, every code exchange issues a refresh token, refresh tokens rotate (a
// used one is refused, and using it again revokes the grant), and access tokens live that
// many seconds. Every refresh request is printed on stdout (`REFRESH ok` / `REFRESH error`)
// so a test can count the refreshes the provider saw.
const accessTokenTtl = Number.parseInt(process.env.OP_ACCESS_TOKEN_TTL ?? '', 10);
if (Number.isInteger(accessTokenTtl) && accessTokenTtl > 0) {
  configuration.clients[0].grant_types.push('refresh_token');
  configuration.issueRefreshToken = async (_ctx, client) => client.grantTypeAllowed('refresh_token');
  configuration.rotateRefreshToken = true;
  configuration.ttl = { AccessToken: accessTokenTtl };
}

// Listen first (so port 0 can be used), then make the provider with the real issuer.
const server = createServer();
server.on('error', (err) => {
  console.error(`oidc-provider.mjs: ${err.message}`);
  process.exit(1);
});
server.listen(port, HOST, () => {
  const { port: actual } = server.address();
  const issuer = `http://${HOST}:${actual}`;
  const provider = new Provider(issuer, configuration);
  for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error',
    'end_session.error']) {
    provider.on(event, (_ctx, err) => {
      console.error(`oidc-provider ${event}: ${err?.name}: ${err?.message}`
        + (err?.error_description ? ` (${err.error_description})` : ''));
    });
  }
  // Each delivered or failed logout token, for the test's log.
  provider.on('backchannel.success', (_ctx, client, accountId) => {
    console.error(`oidc-provider backchannel.success: ${client.clientId} ${accountId}`);
  });
  provider.on('backchannel.error', (_ctx, err, client) => {
    console.error(`oidc-provider backchannel.error: ${client.clientId}: ${err?.message}`);
  });
  server.on('request', provider.callback());
  console.log(`READY ${actual}`);
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') console.log('REFRESH ok');
  });
  provider.on('grant.error', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') console.log('REFRESH error');
  });
});
