// A SAML 2.0 identity provider as an HTTP server, built on samlify (npm), for the browser
// tests (tests/e2e/saml.test.mjs): the service provider sends the browser here by
// HTTP-Redirect, a login page asks who you are, and an auto-submitting HTML form POSTs the
// signed response to the SP's assertion consumer service (HTTP-POST binding).
//
//   node sso-server.mjs [PORT]            (PORT, else $SSO_PORT, else 0: any free port)
//
// Prints `READY <port>` on stdout once it listens on 127.0.0.1. Exits on SIGTERM, SIGINT,
// and when its stdin closes (so a dying parent takes it along).
//
// Environment:
//   SP_METADATA_URL        where to read the service provider's metadata (entity ID, ACS,
//                          WantAssertionsSigned); read again for every login, so the SP may
//                          start after this server. Required.
//   IDP_ENTITY_ID          this IdP's entity ID. Default: http://127.0.0.1:<port>/metadata.
//   SSO_SCHEMA_VALIDATION  `0` skips the XSD validation of AuthnRequests (xmllint). Default:
//                          on (it takes a few seconds to load, before READY).
//
// Endpoints:
//   GET  /metadata                 the IdP metadata (samlify's), with its signing certificate
//   GET  /sso?SAMLRequest=&RelayState=
//                                  parses the AuthnRequest (samlify, redirect binding, checked
//                                  against the SP metadata) and answers the login page
//   POST /sso/login                user=<name> (and request=<the page's token>): answers the
//                                  auto-submitting form POSTing SAMLResponse + RelayState to
//                                  the SP's ACS
//
// Users: any name of letters, digits, `.`, `_`, `-` logs in, without a password. The
// assertion is signed (and the whole response too when the SP metadata does not ask for
// signed assertions), with:
//   NameID     persistent: `p-` + the first 24 hex digits of sha256("sso-server:" + user)
//   mail       urn:oid:0.9.2342.19200300.100.1.3 (FriendlyName mail): <user>@example.com
//   isMemberOf urn:oid:1.3.6.1.4.1.5923.1.5.1.1 (FriendlyName isMemberOf): the groups typed
//              on the login page (comma-separated; default `staff, admins`)
//
// Keys: a fresh RSA-2048 key per run (node:crypto) and a self-signed certificate for it, made
// by the openssl CLI (node:crypto cannot issue X.509 certificates); the certificate is
// published in /metadata.

import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as samlify from 'samlify';

// samlify is CommonJS; Node's ESM view of it misses the exports defined by getters.
const { SamlLib } = samlify.default ?? samlify;

const NS = {
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  postBinding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
  redirectBinding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
  uriFormat: 'urn:oasis:names:tc:SAML:2.0:attrname-format:uri',
  success: 'urn:oasis:names:tc:SAML:2.0:status:Success',
  passwordProtected: 'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport',
  rsaSha256: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
};

const ATTRIBUTES = {
  mail: 'urn:oid:0.9.2342.19200300.100.1.3',
  isMemberOf: 'urn:oid:1.3.6.1.4.1.5923.1.5.1.1',
};

const LOGIN_TTL_MS = 10 * 60_000;
const FETCH_TIMEOUT_MS = 5_000;
const USER_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_FORM_BYTES = 64 * 1024;

const log = (...parts) => process.stderr.write(`[sso-server] ${parts.join(' ')}\n`);

/** The persistent NameID of a user: opaque, stable, derived from the name. */
function nameIdOf(user) {
  return `p-${createHash('sha256').update(`sso-server:${user}`).digest('hex').slice(0, 24)}`;
}

function escapeHtml(value) {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

function pemBody(pem) {
  return pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
}

/** A fresh RSA key (node:crypto) and a self-signed certificate for it (openssl), PEM. */
function makeKeys(commonName) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  const dir = mkdtempSync(join(tmpdir(), 'sso-server-keys-'));
  try {
    const key = join(dir, 'key.pem');
    writeFileSync(key, keyPem, { mode: 0o600 });
    const certPem = execFileSync('openssl', [
      'req', '-x509', '-new', '-key', key, '-sha256', '-days', '2', '-subj', `/CN=${commonName}`,
    ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
    return { keyPem, certPem };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(body);
}

function page(title, body) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>`
    + '<style>body{font-family:sans-serif;max-width:36rem;margin:2rem auto}'
    + 'label{display:block;margin:.6rem 0}input[type=text]{width:100%}</style></head>'
    + `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

function readForm(req) {
  return new Promise((resolveForm, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_FORM_BYTES) {
        reject(new Error('form too large'));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolveForm(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

async function main() {
  const port = Number(process.argv[2] ?? process.env.SSO_PORT ?? 0);
  const spMetadataUrl = process.env.SP_METADATA_URL;
  if (!spMetadataUrl) throw new Error('SP_METADATA_URL is required');

  if (process.env.SSO_SCHEMA_VALIDATION === '0') {
    samlify.setSchemaValidator({ validate: async () => 'skipped' });
  } else {
    samlify.setSchemaValidator(await import('@authenio/samlify-node-xmllint'));
  }

  const server = createServer();
  await new Promise((r, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', r);
  });
  const base = `http://127.0.0.1:${server.address().port}`;
  const entityId = process.env.IDP_ENTITY_ID || `${base}/metadata`;
  const keys = makeKeys(`sso-server 127.0.0.1 port ${server.address().port}`);

  const idp = samlify.IdentityProvider({
    entityID: entityId,
    privateKey: keys.keyPem,
    signingCert: pemBody(keys.certPem),
    nameIDFormat: [NS.persistent],
    singleSignOnService: [{ Binding: NS.redirectBinding, Location: `${base}/sso` }],
    requestSignatureAlgorithm: NS.rsaSha256,
    wantAuthnRequestsSigned: false,
  });

  /** The SP, from its metadata as it is now. */
  async function serviceProvider() {
    let xml;
    try {
      const res = await fetch(spMetadataUrl, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
      xml = await res.text();
      if (!res.ok) throw new Error(`status ${res.status}`);
    } catch (err) {
      throw new Error(`cannot read the SP metadata at ${spMetadataUrl}: ${err?.cause?.message ?? err?.message ?? err}`);
    }
    return samlify.ServiceProvider({ metadata: xml });
  }

  // Logins between the login page and its submission, by a random token of the page.
  const pending = new Map();
  const forget = () => {
    const now = Date.now();
    for (const [token, p] of pending) if (p.expires < now) pending.delete(token);
  };

  async function sso(req, res, url) {
    const query = Object.fromEntries(url.searchParams.entries());
    if (!query.SAMLRequest) {
      send(res, 400, 'text/plain; charset=utf-8', 'no SAMLRequest\n');
      return;
    }
    const sp = await serviceProvider();
    let parsed;
    try {
      parsed = await idp.parseLoginRequest(sp, 'redirect', { query });
    } catch (err) {
      log('AuthnRequest refused:', err?.message ?? err);
      send(res, 400, 'text/plain; charset=utf-8', `AuthnRequest refused: ${err?.message ?? err}\n`);
      return;
    }
    const request = parsed.extract.request ?? {};
    const issuer = parsed.extract.issuer;
    const acs = sp.entityMeta.getAssertionConsumerService('post');
    const problems = [];
    if (issuer !== sp.entityMeta.getEntityID()) problems.push(`issuer ${issuer} is not the SP ${sp.entityMeta.getEntityID()}`);
    if (request.destination && request.destination !== `${base}/sso`) problems.push(`destination ${request.destination}`);
    if (request.assertionConsumerServiceUrl && request.assertionConsumerServiceUrl !== acs) {
      problems.push(`ACS ${request.assertionConsumerServiceUrl} is not the metadata's ${acs}`);
    }
    if (!request.id) problems.push('no request ID');
    if (problems.length) {
      log('AuthnRequest refused:', problems.join('; '));
      send(res, 400, 'text/plain; charset=utf-8', `AuthnRequest refused: ${problems.join('; ')}\n`);
      return;
    }
    forget();
    const token = randomBytes(18).toString('base64url');
    pending.set(token, {
      requestId: request.id,
      relayState: query.RelayState,
      expires: Date.now() + LOGIN_TTL_MS,
    });
    log(`AuthnRequest ${request.id} from ${issuer}, RelayState ${query.RelayState ? 'present' : 'absent'}`);
    send(res, 200, 'text/html; charset=utf-8', page('SSO test identity provider', `
<p>Service provider <code id="sp">${escapeHtml(issuer)}</code> asks who you are.</p>
<form method="post" action="/sso/login">
  <input type="hidden" name="request" value="${escapeHtml(token)}">
  <label>User <input type="text" name="user" autocomplete="username" required pattern="[A-Za-z0-9._\\-]{1,64}"></label>
  <label>Groups (comma-separated) <input type="text" name="groups" value="staff, admins"></label>
  <button type="submit">Sign in</button>
</form>`));
  }

  async function login(req, res) {
    const form = await readForm(req);
    const token = form.get('request') ?? '';
    const user = (form.get('user') ?? '').trim();
    const login = pending.get(token);
    pending.delete(token); // single use, whatever happens
    if (!login || login.expires < Date.now()) {
      send(res, 400, 'text/html; charset=utf-8', page('Login expired', '<p>No such login in progress.</p>'));
      return;
    }
    if (!USER_PATTERN.test(user)) {
      send(res, 400, 'text/html; charset=utf-8', page('Bad user', '<p>Letters, digits, ., _ and - only.</p>'));
      return;
    }
    const groups = (form.get('groups') ?? '').split(',').map((g) => g.trim()).filter(Boolean);
    const sp = await serviceProvider();
    const acs = sp.entityMeta.getAssertionConsumerService('post');
    const now = new Date();
    const later = new Date(now.getTime() + 5 * 60_000).toISOString();
    const assertionId = idp.entitySetting.generateID();

    // samlify's own response template; the authentication and attribute statements are put
    // in with placeholders, so that samlify fills in (and escapes) every value.
    const groupValues = groups
      .map((_, i) => `<saml:AttributeValue xsi:type="xs:string">{AttrGroup${i}}</saml:AttributeValue>`)
      .join('');
    const authnStatement = `<saml:AuthnStatement AuthnInstant="{IssueInstant}" SessionIndex="{AssertionID}">`
      + `<saml:AuthnContext><saml:AuthnContextClassRef>${NS.passwordProtected}</saml:AuthnContextClassRef>`
      + '</saml:AuthnContext></saml:AuthnStatement>';
    const attributeStatement = '<saml:AttributeStatement>'
      + `<saml:Attribute Name="${ATTRIBUTES.mail}" FriendlyName="mail" NameFormat="${NS.uriFormat}">`
      + '<saml:AttributeValue xsi:type="xs:string">{AttrMail}</saml:AttributeValue></saml:Attribute>'
      + (groups.length
        ? `<saml:Attribute Name="${ATTRIBUTES.isMemberOf}" FriendlyName="isMemberOf" NameFormat="${NS.uriFormat}">${groupValues}</saml:Attribute>`
        : '')
      + '</saml:AttributeStatement>';
    const tags = {
      ID: idp.entitySetting.generateID(),
      AssertionID: assertionId,
      Destination: acs,
      Audience: sp.entityMeta.getEntityID(),
      SubjectRecipient: acs,
      Issuer: idp.entityMeta.getEntityID(),
      IssueInstant: now.toISOString(),
      StatusCode: NS.success,
      ConditionsNotBefore: new Date(now.getTime() - 30_000).toISOString(),
      ConditionsNotOnOrAfter: later,
      SubjectConfirmationDataNotOnOrAfter: later,
      NameIDFormat: NS.persistent,
      NameID: nameIdOf(user),
      InResponseTo: login.requestId,
      AttrMail: `${user}@example.com`,
      ...Object.fromEntries(groups.map((g, i) => [`AttrGroup${i}`, g])),
    };
    const response = await idp.createLoginResponse(
      sp,
      { extract: { request: { id: login.requestId } } },
      'post',
      {},
      {
        relayState: login.relayState,
        customTagReplacement: (template) => ({
          id: tags.ID,
          context: SamlLib.replaceTagsByValue(
            template
              .replace('{AuthnStatement}', authnStatement)
              .replace('{AttributeStatement}', attributeStatement),
            tags,
          ),
        }),
      },
    );
    const target = response.entityEndpoint || acs;
    log(`response ${tags.ID} for ${user} (NameID ${tags.NameID}) to ${target}`);
    const relay = response.relayState ?? login.relayState;
    // The HTTP-POST binding's form (saml-bindings §3.5.4): posted by script, or by hand.
    send(res, 200, 'text/html; charset=utf-8', page('Signing you in', `
<form id="saml-post" method="post" action="${escapeHtml(target)}">
  <input type="hidden" name="SAMLResponse" value="${escapeHtml(response.context)}">
  ${relay ? `<input type="hidden" name="RelayState" value="${escapeHtml(relay)}">` : ''}
  <noscript><button type="submit">Continue</button></noscript>
</form>
<script>document.getElementById('saml-post').submit();</script>`));
  }

  server.on('request', (req, res) => {
    const url = new URL(req.url, base);
    const route = `${req.method} ${url.pathname}`;
    const handle = async () => {
      if (route === 'GET /metadata') {
        send(res, 200, 'application/samlmetadata+xml', idp.getMetadata());
      } else if (route === 'GET /sso') {
        await sso(req, res, url);
      } else if (route === 'POST /sso/login') {
        await login(req, res);
      } else {
        send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      }
    };
    handle().catch((err) => {
      log(`${route} failed:`, err?.stack ?? err);
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `${err?.message ?? err}\n`);
      else res.destroy();
    });
  });

  const stop = () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();

  process.stdout.write(`READY ${server.address().port}\n`);
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
