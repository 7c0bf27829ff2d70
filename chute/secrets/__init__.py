"""Secrets of projects and environments: encrypted at rest, given only to trusted runs, masked.

What others may import:

* :class:`Masker`, :data:`MASK` (``chute.secrets.masking``): hide values and their common
  encodings in text and in result documents. Used by the runner and the agent; needs
  nothing but the standard library.
* :class:`SecretStore` (``chute.secrets.store``): set / list / delete / read values in SQL,
  with ledger events; :class:`SecretInputError` for bad names and values.
* :func:`load_keyring`, :func:`new_key`, :class:`SecretKeyError` (``chute.secrets.crypto``):
  the AES-GCM keys from ``CHUTE_SECRET_KEY`` or ``$CHUTE_HOME/secret.key``.
* :func:`credentials_of` (``chute.secrets.delivery``): which secrets a pipeline's steps
  ask for, read from the (trusted) config.

The store and the crypto modules are imported on first use, so that the runner can mask
without loading SQLAlchemy or ``cryptography``. See docs/security.md, "Secrets".
"""

from __future__ import annotations

from typing import Any

from .masking import MASK, MIN_LENGTH, Masker

_LAZY = {
    "SecretStore": "store", "SecretInfo": "store", "SecretInputError": "store",
    "load_keyring": "crypto", "new_key": "crypto", "SecretKeyError": "crypto", "Keyring": "crypto",
    "credentials_of": "delivery", "Credential": "delivery",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'chute.secrets' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


__all__ = ["MASK", "MIN_LENGTH", "Credential", "Keyring", "Masker", "SecretInfo", "SecretInputError",
           "SecretKeyError", "SecretStore", "credentials_of", "load_keyring", "new_key"]
