// A SAML 2.0 identity provider for jit-provision's SAML tests, built on samlify (npm).
//
// Reads one JSON object on stdin and writes one JSON object on stdout:
//
//   in:  { schema_validation?: bool,
//          idp: { entity_id, sso_url, private_key_pem, signing_certificate_pem,
//                 certificates_pem: [..] /* published in the metadata */,
//                 signature_algorithm?, data_encryption?, key_encryption?,
//                 want_authn_requests_signed? /* checks the HTTP-Redirect signature */ },
//          sp_metadata: "<md:EntityDescriptor ...>"     // the SP's own metadata XML
//          jobs: [ { request_url?, name_id, name_id_format?, attributes?: [{name,
//                    friendly_name?, values: [..]}], sign_assertion, sign_response,
//                    encrypt?, now?, overrides?: {...} }, ... ] }
//   out: { idp_metadata: "<EntityDescriptor ...>",
//          results: [ { saml_response, request_id, relay_state } | { error }, ... ] }
//
// samlify does the real work: it parses (and schema-validates, with xmllint) the
// SP's AuthnRequest from the HTTP-Redirect URL, reads the SP metadata (entity ID, ACS,
// encryption certificate), signs the assertion and/or the response with xml-crypto and
// encrypts the assertion with xml-encryption. The response XML itself comes from a
// template, as in samlify; `overrides` lets a test change one value (audience, recipient,
// destination, issuer, InResponseTo, validity window) before samlify signs.

import * as samlify from 'samlify';

// XSD validation of the SP's AuthnRequest (xmllint compiled to JavaScript, with the SAML
// schemas) takes seconds to start, so a batch asks for it (`schema_validation: true`);
// otherwise samlify still parses the request, without the schema check.
async function useSchemaValidation(enabled) {
  if (enabled) {
    samlify.setSchemaValidator(await import('@authenio/samlify-node-xmllint'));
  } else {
    samlify.setSchemaValidator({ validate: async () => 'skipped' });
  }
}

const NS = {
  persistent: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent',
  postBinding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST',
  redirectBinding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect',
};

const SIGNATURE_ALGORITHMS = {
  'rsa-sha1': 'http://www.w3.org/2000/09/xmldsig#rsa-sha1',
  'rsa-sha256': 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  'rsa-sha512': 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512',
};

const DATA_ENCRYPTION = {
  'aes128-cbc': 'http://www.w3.org/2001/04/xmlenc#aes128-cbc',
  'aes256-cbc': 'http://www.w3.org/2001/04/xmlenc#aes256-cbc',
  'aes128-gcm': 'http://www.w3.org/2009/xmlenc11#aes128-gcm',
  'aes256-gcm': 'http://www.w3.org/2009/xmlenc11#aes256-gcm',
};

const KEY_ENCRYPTION = {
  'rsa-oaep-mgf1p': 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p',
  'rsa-1_5': 'http://www.w3.org/2001/04/xmlenc#rsa-1_5',
};

function escapeXml(value) {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

function pemBody(pem) {
  return pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
}

function iso(ms) {
  return new Date(ms).toISOString();
}

function attributeStatement(attributes) {
  if (!attributes || attributes.length === 0) return '';
  const items = attributes.map((a) => {
    const friendly = a.friendly_name ? ` FriendlyName="${escapeXml(a.friendly_name)}"` : '';
    const values = a.values
      .map((v) => `<saml:AttributeValue xsi:type="xs:string">${escapeXml(v)}</saml:AttributeValue>`)
      .join('');
    return `<saml:Attribute Name="${escapeXml(a.name)}"${friendly} NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:uri">${values}</saml:Attribute>`;
  });
  return `<saml:AttributeStatement>${items.join('')}</saml:AttributeStatement>`;
}

function responseXml(v) {
  const inResponseTo = v.inResponseTo ? ` InResponseTo="${escapeXml(v.inResponseTo)}"` : '';
  const destination = v.destination ? ` Destination="${escapeXml(v.destination)}"` : '';
  return '<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
    + ` ID="${v.id}" Version="2.0" IssueInstant="${v.issueInstant}"${destination}${inResponseTo}>`
    + `<saml:Issuer>${escapeXml(v.issuer)}</saml:Issuer>`
    + '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>'
    + '<saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
    + ` ID="${v.assertionId}" Version="2.0" IssueInstant="${v.issueInstant}">`
    + `<saml:Issuer>${escapeXml(v.assertionIssuer)}</saml:Issuer>`
    + `<saml:Subject><saml:NameID Format="${escapeXml(v.nameIdFormat)}">${v.nameIdXml}</saml:NameID>`
    + '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
    + `<saml:SubjectConfirmationData NotOnOrAfter="${v.scdNotOnOrAfter}" Recipient="${escapeXml(v.recipient)}"${inResponseTo ? ` InResponseTo="${escapeXml(v.scdInResponseTo)}"` : ''}/>`
    + '</saml:SubjectConfirmation></saml:Subject>'
    + `<saml:Conditions NotBefore="${v.notBefore}" NotOnOrAfter="${v.notOnOrAfter}">`
    + `<saml:AudienceRestriction><saml:Audience>${escapeXml(v.audience)}</saml:Audience></saml:AudienceRestriction>`
    + '</saml:Conditions>'
    + `<saml:AuthnStatement AuthnInstant="${v.issueInstant}" SessionIndex="${v.assertionId}">`
    + '<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext>'
    + '</saml:AuthnStatement>'
    + `${attributeStatement(v.attributes)}`
    + '</saml:Assertion></samlp:Response>';
}

// With a job: the IdP that signs, knowing only its signing certificate. Without: the IdP
// whose metadata is published, with every certificate (a rollover publishes two).
function makeIdp(config, job) {
  const certificates = job
    ? [config.signing_certificate_pem ?? config.certificates_pem[0]]
    : config.certificates_pem;
  return samlify.IdentityProvider({
    entityID: config.entity_id,
    privateKey: config.private_key_pem,
    signingCert: certificates.length === 1 ? pemBody(certificates[0]) : certificates.map(pemBody),
    nameIDFormat: [NS.persistent],
    singleSignOnService: [{ Binding: NS.redirectBinding, Location: config.sso_url }],
    requestSignatureAlgorithm:
      SIGNATURE_ALGORITHMS[(job && job.signature_algorithm) || config.signature_algorithm || 'rsa-sha256'],
    isAssertionEncrypted: Boolean(job && job.encrypt),
    dataEncryptionAlgorithm: DATA_ENCRYPTION[(job && job.data_encryption) || 'aes256-gcm'],
    keyEncryptionAlgorithm: KEY_ENCRYPTION[(job && job.key_encryption) || 'rsa-oaep-mgf1p'],
    wantAuthnRequestsSigned: Boolean(config.want_authn_requests_signed),
  });
}

function makeSp(metadata, job) {
  // samlify signs the assertion when the SP metadata says WantAssertionsSigned, and the
  // response when the SP wants signed messages (or does not want signed assertions).
  const want = job.sign_assertion ? 'true' : 'false';
  const xml = metadata.replace(/WantAssertionsSigned="(true|false)"/, `WantAssertionsSigned="${want}"`);
  return samlify.ServiceProvider({ metadata: xml, wantMessageSigned: Boolean(job.sign_response) });
}

async function runJob(input, job) {
  const idp = makeIdp(input.idp, job);
  const sp = makeSp(input.sp_metadata, job);
  if (!job.sign_assertion && !job.sign_response) {
    throw new Error('a job signs the assertion, the response, or both');
  }
  let requestId = null;
  let relayState = null;
  if (job.request_url) {
    const url = new URL(job.request_url);
    const query = Object.fromEntries(url.searchParams.entries());
    // What the Redirect binding signs (SAML bindings 3.4.4.1): the raw
    // `SAMLRequest=..&RelayState=..&SigAlg=..` octets of the URL, as an HTTP server sees them.
    const raw = url.search.slice(1).split('&');
    const octetString = ['SAMLRequest', 'RelayState', 'SigAlg']
      .map((name) => raw.find((pair) => pair.startsWith(`${name}=`)))
      .filter(Boolean)
      .join('&');
    const parsed = await idp.parseLoginRequest(sp, 'redirect', { query, octetString });
    requestId = parsed.extract.request.id;
    relayState = query.RelayState ?? null;
    const acs = parsed.extract.request.assertionConsumerServiceUrl;
    if (acs && acs !== sp.entityMeta.getAssertionConsumerService('post')) {
      throw new Error(`the AuthnRequest names another ACS: ${acs}`);
    }
  }
  const now = job.now_ms ?? Date.now();
  const o = job.overrides || {};
  const acs = sp.entityMeta.getAssertionConsumerService('post');
  const values = {
    id: idp.entitySetting.generateID(),
    assertionId: o.assertion_id ?? idp.entitySetting.generateID(),
    issueInstant: iso(now + (o.issue_instant_offset_s ?? 0) * 1000),
    destination: o.destination === undefined ? acs : o.destination,
    inResponseTo: o.in_response_to === undefined ? requestId : o.in_response_to,
    scdInResponseTo: o.scd_in_response_to ?? (o.in_response_to === undefined ? requestId : o.in_response_to),
    issuer: o.issuer ?? input.idp.entity_id,
    assertionIssuer: o.assertion_issuer ?? o.issuer ?? input.idp.entity_id,
    nameIdFormat: job.name_id_format ?? NS.persistent,
    nameIdXml: job.name_id_xml ?? escapeXml(job.name_id),
    recipient: o.recipient ?? acs,
    audience: o.audience ?? sp.entityMeta.getEntityID(),
    notBefore: iso(now + (o.not_before_offset_s ?? -30) * 1000),
    notOnOrAfter: iso(now + (o.not_on_or_after_offset_s ?? 300) * 1000),
    scdNotOnOrAfter: iso(now + (o.scd_not_on_or_after_offset_s ?? 300) * 1000),
    attributes: job.attributes || [],
  };
  const response = await idp.createLoginResponse(
    sp,
    requestId ? { extract: { request: { id: requestId } } } : {},
    'post',
    {},
    {
      customTagReplacement: () => ({ id: values.id, context: responseXml(values) }),
      encryptThenSign: Boolean(job.encrypt && job.sign_response),
      relayState: relayState ?? undefined,
    },
  );
  return { saml_response: response.context, request_id: requestId, relay_state: relayState };
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  await useSchemaValidation(Boolean(input.schema_validation));
  const results = [];
  for (const job of input.jobs) {
    try {
      results.push(await runJob(input, job));
    } catch (error) {
      results.push({ error: String(error && error.stack ? error.stack : error) });
    }
  }
  const idpMetadata = makeIdp(input.idp, null).getMetadata();
  process.stdout.write(JSON.stringify({ idp_metadata: idpMetadata, results }));
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
