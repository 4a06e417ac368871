#!/usr/bin/env python3
"""A pysaml2 SAML 2.0 identity provider for jit-provision's interop tests (tests/saml_pysaml2.rs).

TEST-ONLY: it logs in one fixed user, whoever asks; never run it anywhere but a test.

    python3 tests/pysaml2-idp/idp.py SETTINGS.json

SETTINGS.json (written by the test):
    key_file, cert_file     the IdP's signing key and certificate (PEM files, made by the test)
    sp_metadata_url         where to fetch the service provider's metadata, at the first SSO
                            request (the SP is up by then, and has read this IdP's metadata)
    xmlsec1                 path of the xmlsec1 binary pysaml2 signs and encrypts with
    want_authn_requests_signed
                            pysaml2's own check of the HTTP-Redirect signature of AuthnRequests
    response                sign_alg / digest_alg (XML-DSig URIs, null for pysaml2's defaults,
                            RSA-SHA1 and SHA-1), sign_response, sign_assertion,
                            encrypt_assertion (pysaml2 encrypts with 3DES, tripledes-cbc)
    user                    name_id (persistent) and attributes ({name: [values]})

It binds 127.0.0.1 on a free port, prints `READY <port>` on stdout, and serves:
    GET /metadata           the IdP's metadata (WantAuthnRequestsSigned as configured)
    GET /sso                HTTP-Redirect SSO: parses and checks the AuthnRequest (signature
                            included) and answers an auto-submitting HTTP-POST form carrying
                            the Response to the AssertionConsumerServiceURL; a request pysaml2
                            refuses is a 400 whose body is the error's class and message.
"""

import json
import sys
import traceback
import urllib.parse
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.authn_context import PASSWORD
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        sys.stderr.write("pysaml2-idp: " + (format % args) + "\n")


def idp_config(settings, base, sp_metadata=None):
    config = {
        "entityid": f"{base}/metadata",
        "xmlsec_binary": settings["xmlsec1"],
        "key_file": settings["key_file"],
        "cert_file": settings["cert_file"],
        "accepted_time_diff": 60,
        "service": {
            "idp": {
                "name": "jit-provision test IdP (pysaml2)",
                "endpoints": {
                    "single_sign_on_service": [(f"{base}/sso", BINDING_HTTP_REDIRECT)],
                },
                "want_authn_requests_signed": settings["want_authn_requests_signed"],
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                "policy": {"default": {"lifetime": {"minutes": 5}}},
            }
        },
        "metadata": {"inline": [sp_metadata]} if sp_metadata else {},
    }
    conf = IdPConfig()
    conf.load(config)
    return conf


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        settings = json.load(f)
    state = {"server": None}

    def server(base):
        # Built at the first SSO request: the SP metadata is fetched then.
        if state["server"] is None:
            with urllib.request.urlopen(settings["sp_metadata_url"], timeout=10) as r:
                sp_metadata = r.read().decode("utf-8")
            state["server"] = Server(config=idp_config(settings, base, sp_metadata))
        return state["server"]

    def sso(idp, query):
        args = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
        request = idp.parse_authn_request(
            args["SAMLRequest"],
            BINDING_HTTP_REDIRECT,
            relay_state=args.get("RelayState"),
            sigalg=args.get("SigAlg"),
            signature=args.get("Signature"),
        )
        message = request.message
        sp_entity_id = message.issuer.text
        acs = message.assertion_consumer_service_url
        user = settings["user"]
        options = settings["response"]
        identity = {name: values for name, values in user["attributes"].items()}
        name_id = NameID(
            format=NAMEID_FORMAT_PERSISTENT,
            text=user["name_id"],
            name_qualifier=idp.config.entityid,
            sp_name_qualifier=sp_entity_id,
        )
        kwargs = {}
        if options.get("encrypt_assertion"):
            kwargs["encrypt_assertion"] = True
            kwargs["encrypt_assertion_self_contained"] = True
            kwargs["encrypt_cert_assertion"] = None  # from the SP metadata
        response = idp.create_authn_response(
            identity,
            in_response_to=message.id,
            destination=acs,
            sp_entity_id=sp_entity_id,
            name_id=name_id,
            authn={"class_ref": PASSWORD},
            sign_response=options.get("sign_response", False),
            sign_assertion=options.get("sign_assertion", True),
            sign_alg=options.get("sign_alg"),
            digest_alg=options.get("digest_alg"),
            **kwargs,
        )
        return idp.apply_binding(
            BINDING_HTTP_POST,
            str(response),
            destination=acs,
            relay_state=args.get("RelayState", ""),
            response=True,
        )

    def app(environ, start_response):
        base = f"http://{environ['HTTP_HOST']}"
        path = environ.get("PATH_INFO", "")
        try:
            if path == "/metadata":
                body = create_metadata_string(None, config=idp_config(settings, base))
                start_response("200 OK", [("Content-Type", "application/samlmetadata+xml")])
                return [body if isinstance(body, bytes) else body.encode("utf-8")]
            if path == "/sso":
                http_args = sso(server(base), environ.get("QUERY_STRING", ""))
                start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
                return [http_args["data"].encode("utf-8")]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        except Exception as e:  # the test reads what pysaml2 refused
            traceback.print_exc()
            start_response("400 Bad Request", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"{type(e).__name__}: {e}".encode("utf-8")]

    httpd = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    print(f"READY {httpd.server_port}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
