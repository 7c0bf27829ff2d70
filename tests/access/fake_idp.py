"""A small OpenID Connect provider for tests: a real HTTP server on 127.0.0.1 that checks every
request against the shapes of OpenID Connect Core 1.0 §3.1 (authorization-code flow), OpenID
Connect Discovery 1.0 and RFC 7636 (PKCE), and signs ID tokens with an RSA key (RS256).

It "logs in" whoever the test says (``next_user``), and can be told to misbehave (``mode``:
a wrong nonce, audience, issuer, an expired token, a token signed by another key) to check
that chute refuses what it must. Every request that breaks the protocol is kept in
``errors`` (and answered 400), so a test can assert chute made none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class FakeIdP:
    client_id: str = "chute-test"
    client_secret: str = "s3cret:with/odd&chars"
    redirect_uri: str = ""
    next_user: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1001", "preferred_username": "erin",
                                                                "email": "erin@example.org", "name": "Erin"})
    mode: str = ""  # "", wrong-nonce, wrong-aud, wrong-iss, expired, other-key
    errors: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict[str, Any]] = {}
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                idp.handle(self, "GET")

            def do_POST(self) -> None:
                idp.handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -------------------------------------------------------------- answers
    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any = None,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if body is not None:
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _bad(self, h: BaseHTTPRequestHandler, why: str) -> None:
        self.errors.append(why)
        self._send(h, 400, {"error": "invalid_request", "error_description": why})

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        self.requests.append((method, url.path))
        if method == "GET" and url.path == "/.well-known/openid-configuration":
            return self._send(h, 200, {
                "issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "code_challenge_methods_supported": ["S256"]})
        if method == "GET" and url.path == "/jwks":
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
            return self._send(h, 200, {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]})
        if method == "GET" and url.path == "/authorize":
            return self.authorize(h, {k: v[0] for k, v in parse_qs(url.query).items()})
        if method == "POST" and url.path == "/token":
            return self.token(h)
        return self._bad(h, f"unexpected {method} {url.path}")

    def authorize(self, h: BaseHTTPRequestHandler, q: dict[str, str]) -> None:
        # OIDC Core §3.1.2.1: required and recommended parameters.
        for name, want in (("response_type", "code"), ("client_id", self.client_id),
                           ("redirect_uri", self.redirect_uri), ("code_challenge_method", "S256")):
            if q.get(name) != want:
                return self._bad(h, f"authorize: {name}={q.get(name)!r}, expected {want!r}")
        if "openid" not in q.get("scope", "").split():
            return self._bad(h, "authorize: scope lacks openid")
        for name in ("state", "nonce", "code_challenge"):
            if len(q.get(name, "")) < 16:
                return self._bad(h, f"authorize: {name} missing or too short")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"], "redirect_uri": q["redirect_uri"],
                            "user": dict(self.next_user)}
        location = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
        self._send(h, 302, headers={"Location": location})

    def token(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", "0"))
        if not h.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self._bad(h, "token: not a form post")
        form = {k: v[0] for k, v in parse_qs(h.rfile.read(length).decode()).items()}
        # client_secret_basic (RFC 6749 §2.3.1): form-encoded id and secret, then Basic.
        from urllib.parse import quote

        basic = base64.b64encode(f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}".encode())
        if h.headers.get("Authorization") != f"Basic {basic.decode()}":
            return self._bad(h, f"token: client authentication {h.headers.get('Authorization')!r}")
        if form.get("grant_type") != "authorization_code":
            return self._bad(h, f"token: grant_type {form.get('grant_type')!r}")
        issued = self.codes.pop(form.get("code", ""), None)  # a code works once
        if issued is None:
            return self._bad(h, "token: unknown or reused code")
        if form.get("redirect_uri") != issued["redirect_uri"]:
            return self._bad(h, "token: redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != issued["challenge"]:
            return self._bad(h, "token: code_verifier does not match code_challenge")
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                  "nonce": issued["nonce"], **issued["user"]}
        if self.mode == "wrong-nonce":
            claims["nonce"] = "not-the-nonce"
        elif self.mode == "wrong-aud":
            claims["aud"] = "someone-else"
        elif self.mode == "wrong-iss":
            claims["iss"] = "http://evil.example"
        elif self.mode == "expired":
            claims["iat"], claims["exp"] = now - 4000, now - 3600
        key = self.other_key if self.mode == "other-key" else self.key
        id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        self._send(h, 200, {"access_token": secrets.token_urlsafe(16), "token_type": "Bearer", "expires_in": 300,
                            "id_token": id_token}, headers={"Cache-Control": "no-store"})
