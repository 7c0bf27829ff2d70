"""Single sign-on with OpenID Connect (authorization-code flow with PKCE), as a UI login method.

Configured from the environment (see docs/security.md):

- ``CHUTE_OIDC_ISSUER``: the provider's issuer URL (its discovery document is at
  ``<issuer>/.well-known/openid-configuration``);
- ``CHUTE_OIDC_CLIENT_ID`` and ``CHUTE_OIDC_CLIENT_SECRET``: chute's client at the provider,
  registered with the redirect URI ``<CHUTE_BASE_URL>/login/oidc/callback``;
- ``CHUTE_OIDC_TITLE`` (button text, default "single sign-on"), ``CHUTE_OIDC_SCOPES``
  (default ``openid profile email``), ``CHUTE_OIDC_USERNAME_CLAIM`` (default
  ``preferred_username``), ``CHUTE_OIDC_AUTO_CREATE`` (default true: a person's first login
  creates their chute user, with no roles).

The flow (OpenID Connect Core 1.0 §3.1, RFC 7636): the browser goes to the provider's
authorization endpoint with ``response_type=code``, ``client_id``, ``redirect_uri``,
``scope``, ``state``, ``nonce`` and an S256 ``code_challenge``; it comes back with a
``code``, which chute exchanges at the token endpoint (``client_secret_basic``, with the
``code_verifier``) for an ID token; the ID token's signature is checked against the
provider's JWKS (asymmetric algorithms only), and its ``iss``, ``aud``, ``azp``, ``exp``,
``iat`` and ``nonce``. The person is the chute user whose ``external_id`` is the token's
``sub`` (with ``source = oidc:<key>``); a local user of the same name is never taken over.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from chute.store import User

from . import access
from .access import Identity, Policy
from .services import ServiceError
from .ui.sessions import LoginFailed, Proof

SAFE_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DISCOVERY_TTL = 3600.0


@dataclass(frozen=True)
class OIDCConfig:
    issuer: str
    client_id: str
    client_secret: str
    key: str = "oidc"
    title: str = "single sign-on"
    scopes: str = "openid profile email"
    username_claim: str = "preferred_username"
    auto_create: bool = True

    @classmethod
    def from_env(cls) -> OIDCConfig | None:
        issuer = os.environ.get("CHUTE_OIDC_ISSUER", "").strip()
        if not issuer:
            return None
        client_id = os.environ.get("CHUTE_OIDC_CLIENT_ID", "").strip()
        secret = os.environ.get("CHUTE_OIDC_CLIENT_SECRET", "")
        if not client_id or not secret:
            raise ServiceError("CHUTE_OIDC_ISSUER is set but CHUTE_OIDC_CLIENT_ID or CHUTE_OIDC_CLIENT_SECRET is "
                               "not", 500, "register chute as a client at the provider and set both")
        return cls(issuer=issuer.rstrip("/"), client_id=client_id, client_secret=secret,
                   title=os.environ.get("CHUTE_OIDC_TITLE", "single sign-on"),
                   scopes=os.environ.get("CHUTE_OIDC_SCOPES", "openid profile email"),
                   username_claim=os.environ.get("CHUTE_OIDC_USERNAME_CLAIM", "preferred_username"),
                   auto_create=os.environ.get("CHUTE_OIDC_AUTO_CREATE", "true").lower() not in ("0", "false", "no"))


def code_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OIDCLogin:
    """A :class:`~chute.server.ui.sessions.RedirectLoginMethod` for an OpenID Connect provider."""

    def __init__(self, config: OIDCConfig, *, http: httpx.Client | None = None) -> None:
        self.config = config
        self.key = config.key
        self.title = config.title
        self.source = f"oidc:{config.key}"
        self.http = http or httpx.Client(timeout=15.0, follow_redirects=False)
        self._meta: dict[str, Any] | None = None
        self._meta_at = 0.0
        self._jwks: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # -------------------------------------------------------------- provider metadata
    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._meta is not None and time.monotonic() - self._meta_at < DISCOVERY_TTL:
                return self._meta
        url = f"{self.config.issuer}/.well-known/openid-configuration"
        try:
            r = self.http.get(url)
            r.raise_for_status()
            meta = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ServiceError(f"cannot read the identity provider's configuration at {url}: {exc}", 502,
                               "check CHUTE_OIDC_ISSUER and that the server can reach it") from None
        if meta.get("issuer", "").rstrip("/") != self.config.issuer:  # OpenID Connect Discovery §4.3
            raise ServiceError(f"the provider says its issuer is {meta.get('issuer')!r}, not "
                               f"{self.config.issuer!r}", 502, "set CHUTE_OIDC_ISSUER to the provider's issuer")
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(meta.get(field), str):
                raise ServiceError(f"the provider's configuration has no {field}", 502)
        with self._lock:
            self._meta, self._meta_at, self._jwks = meta, time.monotonic(), None
        return meta

    def _signing_key(self, token: str) -> Any:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        for refresh in (False, True):  # a key the cached set does not have: the provider rotated keys
            if self._jwks is None or refresh:
                r = self.http.get(self.metadata()["jwks_uri"])
                r.raise_for_status()
                self._jwks = r.json()
            keys = jwt.PyJWKSet.from_dict(self._jwks).keys
            for k in keys:
                if kid is None or k.key_id == kid:
                    return k
        raise jwt.InvalidTokenError(f"the provider has no signing key {kid!r}")

    # -------------------------------------------------------------- the flow
    def start(self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
        meta = self.metadata()
        params = {"response_type": "code", "client_id": self.config.client_id, "redirect_uri": redirect_uri,
                  "scope": self.config.scopes, "state": state, "nonce": nonce,
                  "code_challenge": code_challenge(code_verifier), "code_challenge_method": "S256"}
        sep = "&" if "?" in meta["authorization_endpoint"] else "?"
        return meta["authorization_endpoint"] + sep + urlencode(params)

    def finish(self, s: Session, params: Mapping[str, str], *, redirect_uri: str, nonce: str,
               code_verifier: str, address: str = "") -> Proof | LoginFailed:
        if params.get("error"):
            return LoginFailed(f"the identity provider refused the login: {params.get('error')}"
                               + (f" ({params['error_description']})" if params.get("error_description") else ""))
        code = params.get("code", "")
        if not code:
            return LoginFailed("the identity provider sent no authorization code", 400)
        try:
            claims = self._exchange(code, redirect_uri, code_verifier, nonce)
        except (jwt.InvalidTokenError, ServiceError, httpx.HTTPError, ValueError, KeyError) as exc:
            message = exc.message if isinstance(exc, ServiceError) else str(exc)
            return LoginFailed(f"single sign-on failed: {message}")
        return self._user_for(s, claims, address)

    def _exchange(self, code: str, redirect_uri: str, verifier: str, nonce: str) -> dict[str, Any]:
        meta = self.metadata()
        # client_secret_basic: id and secret form-encoded, then Basic (RFC 6749 §2.3.1).
        basic = base64.b64encode(f"{quote(self.config.client_id, safe='')}:"
                                 f"{quote(self.config.client_secret, safe='')}".encode()).decode()
        r = self.http.post(meta["token_endpoint"], data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier,
        }, headers={"Authorization": f"Basic {basic}", "Accept": "application/json"})
        if r.status_code != 200:
            raise ServiceError(f"the token endpoint answered {r.status_code}: {r.text[:200]}", 502)
        body = r.json()
        if str(body.get("token_type", "")).lower() != "bearer" or not isinstance(body.get("id_token"), str):
            raise ServiceError("the token endpoint sent no bearer ID token", 502)
        token = body["id_token"]
        allowed = [a for a in meta.get("id_token_signing_alg_values_supported", ["RS256"]) if a in SAFE_ALGORITHMS]
        key = self._signing_key(token)
        claims = jwt.decode(token, key.key, algorithms=allowed or ["RS256"], audience=self.config.client_id,
                            issuer=meta["issuer"], leeway=60,
                            options={"require": ["iss", "sub", "aud", "exp", "iat"]})
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise jwt.InvalidTokenError("the ID token's nonce is not the one this login sent")
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.config.client_id:
            raise jwt.InvalidTokenError("the ID token names several audiences but another authorized party")
        return claims

    def _user_for(self, s: Session, claims: dict[str, Any], address: str) -> Proof | LoginFailed:
        sub = str(claims["sub"])
        u = s.scalars(select(User).where(User.source == self.source, User.external_id == sub)).first()
        if u is None:
            if not self.config.auto_create:
                return LoginFailed("you have no chute user yet; ask a server admin to create it")
            wanted = str(claims.get(self.config.username_claim) or "")
            try:
                name = access.check_user_name(wanted)
            except ServiceError:
                return LoginFailed(f"your {self.config.username_claim} {wanted!r} cannot be a chute user name; "
                                   "ask a server admin")
            if access.get_user(s, name) is not None:  # never take over a local (or another provider's) user
                return LoginFailed(f"a chute user named {name!r} already exists and is not linked to this sign-on; "
                                   "ask a server admin")
            u = access.create_user(s, name, actor=f"server ({self.source})", source=self.source, external_id=sub,
                                   display_name=str(claims.get("name") or "")[:200],
                                   email=str(claims.get("email") or "")[:300])
        if u.disabled_at is not None:
            return LoginFailed("your chute user is disabled")
        access.record_login(s, user=u, method=self.source, via="ui", ok=True, address=address)
        return Proof(u.name, sub)

    def identity(self, s: Session, proof: Proof, policy: Policy) -> Identity | None:
        u = access.get_user(s, proof.user)
        if u is None or u.source != self.source or u.external_id != proof.ref:
            return None
        return access.identity_for(s, u, access.ALL_USER_SCOPES, policy)
