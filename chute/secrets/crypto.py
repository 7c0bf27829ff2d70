"""Encryption at rest: AES-256-GCM with keys from the environment or a key file.

Where the keys come from (first match wins):

1. ``CHUTE_SECRET_KEY``: one key, or several separated by commas;
2. ``CHUTE_SECRET_KEY_FILE``, else ``$CHUTE_HOME/secret.key``: one key per line
   (``#`` comments allowed). When no key exists anywhere, this file is created
   with a new random key, mode 0600, the first time a secret is stored.

A key is 32 random bytes written as URL-safe base64 (``chute secret new-key``
prints one). The **first** key encrypts; every key listed decrypts. Rotating is
therefore: put a new key first, keep the old one after it, run
``chute secret rotate`` (re-encrypts every stored value with the first key),
then drop the old key.

Each stored value is ``v1:<key id>:<base64(nonce + ciphertext)>``. The key id
(8 hex digits of SHA-256 of the key) says which key to use without trying
them all. The *associated data* binds a ciphertext to its project, scope and
name, so a value copied into another row (another project's secret) fails to
decrypt instead of leaking into the wrong project's runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "CHUTE_SECRET_KEY"
KEY_FILE_ENV = "CHUTE_SECRET_KEY_FILE"
KEY_FILE_NAME = "secret.key"
VERSION = "v1"


class SecretKeyError(Exception):
    """The keys cannot be loaded or do not fit the stored values; the message says what to do."""


def new_key() -> str:
    """A fresh key as text (32 random bytes, URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _decode_key(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretKeyError(f"{where}: a key must be 32 bytes in URL-safe base64 (44 characters), "
                             f"got {len(text)} characters; make one with `chute secret new-key`")
    return raw


def key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:8]


@dataclass(frozen=True)
class Keyring:
    """The keys: ``keys[0]`` encrypts, all of them decrypt."""

    keys: tuple[bytes, ...]
    source: str  # where they came from, for messages

    def __post_init__(self) -> None:
        if not self.keys:
            raise SecretKeyError(f"{self.source}: no key found")

    @property
    def current_id(self) -> str:
        return key_id(self.keys[0])

    def ids(self) -> list[str]:
        return [key_id(k) for k in self.keys]

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.keys[0]).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}:{self.current_id}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, context: str) -> str:
        version, _, rest = token.partition(":")
        kid, _, body = rest.partition(":")
        if version != VERSION or not body:
            raise SecretKeyError(f"a stored value is not in a format this chute knows ({version!r})")
        key = next((k for k in self.keys if key_id(k) == kid), None)
        if key is None:
            raise SecretKeyError(
                f"a stored value was encrypted with key {kid}, which is not among the keys of {self.source} "
                f"({', '.join(self.ids())}); add that key after the current one")
        try:
            data = base64.b64decode(body)
            return AESGCM(key).decrypt(data[:12], data[12:], context.encode()).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretKeyError("a stored value does not decrypt for the row it is in (it was altered or "
                                 "copied from another row)") from None

    def needs_rotation(self, token: str) -> bool:
        return token.split(":", 2)[1:2] != [self.current_id]


def key_file(home: Path, environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env[KEY_FILE_ENV]) if env.get(KEY_FILE_ENV) else home / KEY_FILE_NAME


def load_keyring(home: Path, environ: dict[str, str] | None = None, *, create: bool = False) -> Keyring:
    """The keys from ``CHUTE_SECRET_KEY`` or the key file; ``create`` makes the file when there is none."""
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV, "").strip():
        parts = [p for p in env[KEY_ENV].split(",") if p.strip()]
        return Keyring(tuple(_decode_key(p, KEY_ENV) for p in parts), KEY_ENV)
    path = key_file(home, dict(env))
    if not path.exists():
        if not create:
            raise SecretKeyError(f"no secret key: set {KEY_ENV} or create {path}")
        _create_key_file(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise SecretKeyError(f"cannot read the secret key file {path}: {err.strerror}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SecretKeyError(f"the secret key file {path} can be read by others (mode {mode:o}); "
                             f"run `chmod 600 {path}`")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return Keyring(tuple(_decode_key(ln, f"{path}:{i + 1}") for i, ln in enumerate(lines)), str(path))


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together never overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as fh:
        fh.write("# chute secret key: the first key encrypts, every key here decrypts (docs/security.md)\n")
        fh.write(new_key() + "\n")
