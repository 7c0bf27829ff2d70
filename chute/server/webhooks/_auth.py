"""Constant-time checks of webhook secrets and signatures.

Every comparison goes through :func:`hmac.compare_digest` on bytes, so the time taken does
not reveal how much of a guess was right, and odd input (non-ASCII, lone surrogates) returns
False instead of raising.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from ._payload import header


def _bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def same_secret(given: str | None, secret: str) -> bool:
    """Whether ``given`` equals the configured secret. An empty secret never matches."""
    if not secret or given is None:
        return False
    return hmac.compare_digest(_bytes(given), _bytes(secret))


def sign(body: bytes, secret: str) -> str:
    """The ``sha256=<hex>`` HMAC-SHA256 signature of ``body`` (GitHub's X-Hub-Signature-256 form)."""
    return "sha256=" + hmac.new(_bytes(secret), body, hashlib.sha256).hexdigest()


def valid_signature(given: str | None, body: bytes, secret: str) -> bool:
    """Whether ``given`` is the ``sha256=<hex>`` HMAC of the exact body bytes under ``secret``."""
    if not secret or given is None:
        return False
    return hmac.compare_digest(_bytes(given.strip().lower()), _bytes(sign(body, secret)))


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    value = header(headers, "Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
