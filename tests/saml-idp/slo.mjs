// SAML Single Logout as a samlify (npm) identity provider does it, for tests/saml_slo.rs.
//
// Reads one JSON object on stdin and writes one JSON object on stdout:
//
//   in:  { idp: { entity_id, sso_url, slo_url, private_key_pem, certificate_pem },
//          sp_metadata: "<md:EntityDescriptor ...>",   // the SP's metadata (its SLO service)
//          jobs: [ job, ... ] }
//   out: { idp_metadata: "<EntityDescriptor ...>", results: [ result | { error }, ... ] }
//
// Jobs (samlify does the parsing, the signing and the signature checks):
//   { kind: "parse_logout_request", request_url, status?, response_binding? }
//        the SP's LogoutRequest (HTTP-Redirect URL): samlify parses it and verifies its
//        signature with the SP metadata's certificate, then answers a signed LogoutResponse
//        (Success, or `status`) to the SP's SLO service by HTTP-Redirect, or by HTTP-POST
//        (XML-signed) with `response_binding: "post"`.
//        -> { request_id, issuer, name_id, session_index, signed, relay_state,
//             response_url | saml_response }
//   { kind: "create_logout_request", binding: "redirect"|"post", name_id, session_index?,
//     sign?: true, relay_state?, overrides?: { issuer, destination, id,
//     not_on_or_after_offset_s, issue_instant_offset_s } }
//        an IdP-initiated LogoutRequest to the SP's SLO service, signed unless `sign: false`.
//        -> { request_id, url } (redirect) | { request_id, endpoint, saml_request, relay_state }
//   { kind: "parse_logout_response", response_url } | { ..., saml_response } (post)
//        the SP's LogoutResponse: samlify verifies its signature, issuer and status.
//        -> { in_response_to, issuer, status }

import * as samlify from 'samlify';

const { SamlLib } = samlify.default ?? samlify;

const NS = {
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  postBinding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
  redirectBinding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
  success: 'urn:oasis:names:tc:SAML:2.0:status:Success',
  rsaSha256: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
};

samlify.setSchemaValidator({ validate: async () => 'skipped' });

function pemBody(pem) {
  return pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
}

function escapeXml(value) {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

function makeIdp(config) {
  return samlify.IdentityProvider({
    entityID: config.entity_id,
    privateKey: config.private_key_pem,
    signingCert: pemBody(config.certificate_pem),
    nameIDFormat: [NS.persistent],
    singleSignOnService: [{ Binding: NS.redirectBinding, Location: config.sso_url }],
    singleLogoutService: [
      { Binding: NS.redirectBinding, Location: config.slo_url },
      { Binding: NS.postBinding, Location: config.slo_url },
    ],
    requestSignatureAlgorithm: NS.rsaSha256,
    // What the SP sends must be signed.
    wantLogoutRequestSigned: true,
    wantLogoutResponseSigned: true,
  });
}

// samlify signs what goes to an entity whose settings want it signed.
function makeSp(metadata, sign) {
  return samlify.ServiceProvider({
    metadata,
    wantLogoutRequestSigned: sign,
    wantLogoutResponseSigned: sign,
  });
}

// The query as samlify's redirect flow takes it, and the raw octets the signature covers
// (SAML bindings 3.4.4.1), as an HTTP server sees them.
function redirectRequest(urlText, message) {
  const url = new URL(urlText);
  const query = Object.fromEntries(url.searchParams.entries());
  const raw = url.search.slice(1).split('&');
  const octetString = [message, 'RelayState', 'SigAlg']
    .map((name) => raw.find((pair) => pair.startsWith(`${name}=`)))
    .filter(Boolean)
    .join('&');
  return { query, octetString };
}

async function parseLogoutRequest(input, idp, job) {
  const sp = makeSp(input.sp_metadata, true);
  const request = redirectRequest(job.request_url, 'SAMLRequest');
  const parsed = await idp.parseLogoutRequest(sp, 'redirect', request);
  const extract = parsed.extract;
  const relayState = request.query.RelayState ?? '';
  const status = job.status ?? NS.success;
  const binding = job.response_binding ?? 'redirect';
  const response = idp.createLogoutResponse(sp, parsed, binding, {
    relayState,
    customTagReplacement: (template) => {
      const id = idp.entitySetting.generateID();
      return {
        id,
        context: SamlLib.replaceTagsByValue(template, {
          ID: id,
          Destination: sp.entityMeta.getSingleLogoutService(binding),
          Issuer: idp.entityMeta.getEntityID(),
          IssueInstant: new Date().toISOString(),
          InResponseTo: extract.request.id,
          StatusCode: status,
        }),
      };
    },
  });
  return {
    request_id: extract.request.id,
    issuer: extract.issuer,
    name_id: extract.nameID,
    session_index: extract.sessionIndex,
    signed: Boolean(parsed.sigAlg),
    relay_state: relayState,
    ...(binding === 'redirect'
      ? { response_url: response.context }
      : { saml_response: response.context }),
  };
}

function createLogoutRequest(input, idp, job) {
  const sign = job.sign !== false;
  const sp = makeSp(input.sp_metadata, sign);
  const binding = job.binding ?? 'redirect';
  const o = job.overrides || {};
  const now = Date.now();
  const customTagReplacement = () => {
    const id = o.id ?? idp.entitySetting.generateID();
    const destination = o.destination ?? sp.entityMeta.getSingleLogoutService(binding);
    const notOnOrAfter = o.not_on_or_after_offset_s === undefined
      ? ''
      : ` NotOnOrAfter="${new Date(now + o.not_on_or_after_offset_s * 1000).toISOString()}"`;
    const instant = new Date(now + (o.issue_instant_offset_s ?? 0) * 1000).toISOString();
    const sessionIndex = job.session_index
      ? `<samlp:SessionIndex>${escapeXml(job.session_index)}</samlp:SessionIndex>`
      : '';
    const context = '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
      + ` ID="${escapeXml(id)}" Version="2.0" IssueInstant="${instant}" Destination="${escapeXml(destination)}"${notOnOrAfter}>`
      + `<saml:Issuer>${escapeXml(o.issuer ?? input.idp.entity_id)}</saml:Issuer>`
      + `<saml:NameID Format="${NS.persistent}">${escapeXml(job.name_id)}</saml:NameID>`
      + `${sessionIndex}</samlp:LogoutRequest>`;
    return { id, context };
  };
  const relayState = job.relay_state ?? '';
  const made = idp.createLogoutRequest(
    sp,
    binding,
    { logoutNameID: job.name_id, sessionIndex: job.session_index },
    { relayState, customTagReplacement },
  );
  if (binding === 'redirect') {
    return { request_id: made.id, url: made.context };
  }
  return {
    request_id: made.id,
    endpoint: made.entityEndpoint,
    saml_request: made.context,
    relay_state: relayState,
  };
}

async function parseLogoutResponse(input, idp, job) {
  const sp = makeSp(input.sp_metadata, true);
  let parsed;
  if (job.response_url) {
    parsed = await idp.parseLogoutResponse(sp, 'redirect', redirectRequest(job.response_url, 'SAMLResponse'));
  } else {
    parsed = await idp.parseLogoutResponse(sp, 'post', { body: { SAMLResponse: job.saml_response } });
  }
  return {
    in_response_to: parsed.extract.response.inResponseTo,
    issuer: parsed.extract.issuer,
    // samlify refuses a LogoutResponse whose status is not Success (ERR_FAILED_STATUS).
    status: NS.success,
    signed: Boolean(parsed.sigAlg) || Boolean(parsed.extract.signature),
  };
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const idp = makeIdp(input.idp);
  const results = [];
  for (const job of input.jobs) {
    try {
      if (job.kind === 'parse_logout_request') {
        results.push(await parseLogoutRequest(input, idp, job));
      } else if (job.kind === 'create_logout_request') {
        results.push(createLogoutRequest(input, idp, job));
      } else if (job.kind === 'parse_logout_response') {
        results.push(await parseLogoutResponse(input, idp, job));
      } else {
        throw new Error(`unknown job kind ${job.kind}`);
      }
    } catch (error) {
      results.push({ error: String(error && error.stack ? error.stack : error) });
    }
  }
  process.stdout.write(JSON.stringify({ idp_metadata: idp.getMetadata(), results }));
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
