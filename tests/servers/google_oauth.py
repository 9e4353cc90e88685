"""A Google OAuth2 token endpoint for service accounts, for the tests (127.0.0.1 only).

It does what https://oauth2.googleapis.com/token does for the JWT-bearer grant
(https://developers.google.com/identity/protocols/oauth2/service-account#httprest):
takes `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT` as a form
POST, verifies the JWT's RS256 signature with the service account's public key, checks
`iss`, `aud` (this endpoint's URL), `scope`, `iat`/`exp`, and answers
`{"access_token", "expires_in", "token_type": "Bearer"}`; a bad assertion gets 400
`{"error": "invalid_grant", "error_description": ...}` as Google answers it.

Every request is appended to the log file as one JSON line, so tests can assert on them.

Run alone:  python3 google_oauth.py --port N --public-key pub.pem --email SA --scope S --log F
"""

import argparse
import base64
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_PATH = "/token"
TOKEN_LIFETIME = 3600


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenIssuer:
    """Checks assertions and remembers the tokens it issued (for APIs that check them)."""

    def __init__(self, public_key_pem, email, scopes, url):
        self.public_key = serialization.load_pem_public_key(public_key_pem)
        self.email = email
        self.scopes = set(scopes)
        self.url = url
        self.issued = set()
        self.lock = threading.Lock()

    def exchange(self, form):
        """(status, JSON body) for a token request's form fields."""
        if form.get("grant_type") != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type",
                         "error_description": "Invalid grant_type: " + form.get("grant_type", "")}
        try:
            claims = self.verify(form.get("assertion", ""))
        except ValueError as e:
            return 400, {"error": "invalid_grant", "error_description": str(e)}
        token = "ya29.test-" + secrets.token_urlsafe(16)
        with self.lock:
            self.issued.add(token)
        return 200, {"access_token": token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer",
                     "scope": claims["scope"]}

    def verify(self, assertion):
        parts = assertion.split(".")
        if len(parts) != 3:
            raise ValueError("Invalid JWT: not three parts")
        header = json.loads(b64url_decode(parts[0]))
        if header.get("alg") != "RS256":
            raise ValueError("Invalid JWT: alg must be RS256")
        try:
            self.public_key.verify(b64url_decode(parts[2]), f"{parts[0]}.{parts[1]}".encode(),
                                   padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise ValueError("Invalid JWT Signature.")
        claims = json.loads(b64url_decode(parts[1]))
        now = time.time()
        if claims.get("iss") != self.email:
            raise ValueError("Invalid JWT: iss is not the service account")
        if claims.get("aud") != self.url:
            raise ValueError(f"Invalid JWT: aud must be {self.url}")
        if not set(str(claims.get("scope", "")).split()) & self.scopes:
            raise ValueError("Invalid JWT: no permitted scope")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise ValueError("Invalid JWT: iat and exp must be integers")
        if iat > now + 60 or exp <= now or exp - iat > 3600:
            raise ValueError("Invalid JWT: Token must be a short-lived token (60 minutes) "
                             "and in a reasonable timeframe.")
        return claims

    def valid(self, authorization):
        """Whether an Authorization header carries a token issued here."""
        if not authorization or not authorization.startswith("Bearer "):
            return False
        with self.lock:
            return authorization[len("Bearer "):] in self.issued


class Recorder:
    """Appends one JSON line per request to the log file."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def record(self, entry):
        with self.lock, open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    """Serves the token endpoint; subclasses add their API's routes."""

    protocol_version = "HTTP/1.1"
    issuer = None
    recorder = None

    def log_message(self, *args):
        pass

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def record(self, body, **extra):
        url = urllib.parse.urlsplit(self.path)
        entry = {
            "method": self.command,
            "path": url.path,
            "query": dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_length": len(body),
        }
        entry.update(extra)
        self.recorder.record(entry)

    def reply(self, status, body=b"", headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if urllib.parse.urlsplit(self.path).path != TOKEN_PATH:
            return self.api("POST")
        body = self.read_body()
        form = dict(urllib.parse.parse_qsl(body.decode()))
        status, answer = self.issuer.exchange(form)
        self.record(body, form={k: v for k, v in form.items() if k != "assertion"},
                    token_status=status)
        self.reply(status, answer)

    def do_GET(self):
        self.api("GET")

    def do_PUT(self):
        self.api("PUT")

    def do_DELETE(self):
        self.api("DELETE")

    def do_PATCH(self):
        self.api("PATCH")

    def api(self, method):
        body = self.read_body()
        self.record(body)
        self.reply(404, {"error": {"code": 404, "message": "Not Found"}})


def arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--public-key", required=True, help="the service account's public key (PEM)")
    parser.add_argument("--email", required=True, help="the service account's client_email")
    parser.add_argument("--scope", action="append", required=True, help="a scope to permit")
    parser.add_argument("--log", required=True, help="where to record the requests (JSON lines)")
    return parser


def serve(handler, args):
    """Binds 127.0.0.1:port and serves with `handler` (a Handler subclass) until killed."""
    with open(args.public_key, "rb") as f:
        pem = f.read()
    url = f"http://127.0.0.1:{args.port}{TOKEN_PATH}"
    handler.issuer = TokenIssuer(pem, args.email, args.scope, url)
    handler.recorder = Recorder(args.log)
    ThreadingHTTPServer(("127.0.0.1", args.port), handler).serve_forever()


if __name__ == "__main__":
    serve(Handler, arguments(__doc__.splitlines()[0]).parse_args())
