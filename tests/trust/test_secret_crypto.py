"""Keys from the environment or a 0600 key file, AES-GCM bound to the row, rotation; masking of values."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chute.secrets import MASK, Masker
from chute.secrets.crypto import KEY_ENV, Keyring, SecretKeyError, load_keyring, new_key


def test_the_key_file_is_created_0600_on_first_use_and_reused(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match="no secret key: set CHUTE_SECRET_KEY or create"):
        load_keyring(tmp_path, {})
    ring = load_keyring(tmp_path, {}, create=True)
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(tmp_path, {}).keys == ring.keys  # the same key the next time
    token = ring.encrypt("hunter2-hunter2", "ctx")
    assert "hunter2" not in token and token.startswith(f"v1:{ring.current_id}:")
    assert load_keyring(tmp_path, {}).decrypt(token, "ctx") == "hunter2-hunter2"


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_keyring(tmp_path, {}, create=True)
    (tmp_path / "secret.key").chmod(0o644)
    with pytest.raises(SecretKeyError, match=r"can be read by others \(mode 644\); run `chmod 600"):
        load_keyring(tmp_path, {})


def test_the_environment_wins_and_a_bad_key_says_how_to_make_one(tmp_path: Path) -> None:
    key = new_key()
    ring = load_keyring(tmp_path, {KEY_ENV: key})
    assert ring.source == KEY_ENV and not (tmp_path / "secret.key").exists()
    with pytest.raises(SecretKeyError, match=r"32 bytes in URL-safe base64.*chute secret new-key"):
        load_keyring(tmp_path, {KEY_ENV: "too-short"})


def test_a_ciphertext_only_decrypts_for_its_own_row_and_not_when_altered(tmp_path: Path) -> None:
    ring = Keyring((base64.urlsafe_b64decode(new_key()),), "test")
    token = ring.encrypt("value-of-project-1", "chute-secret:v1:1::TOKEN")
    with pytest.raises(SecretKeyError, match="does not decrypt for the row"):
        ring.decrypt(token, "chute-secret:v1:2::TOKEN")  # copied into another project's row
    version, kid, body = token.split(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(SecretKeyError, match="altered"):
        ring.decrypt(f"{version}:{kid}:{base64.b64encode(bytes(raw)).decode()}", "chute-secret:v1:1::TOKEN")


def test_rotation_new_key_first_old_keys_still_decrypt(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    token = load_keyring(tmp_path, {KEY_ENV: old}).encrypt("rotate-me-please", "c")
    both = load_keyring(tmp_path, {KEY_ENV: f"{new},{old}"})
    assert both.decrypt(token, "c") == "rotate-me-please" and both.needs_rotation(token)
    again = both.encrypt("rotate-me-please", "c")
    assert not both.needs_rotation(again)
    with pytest.raises(SecretKeyError, match=r"not among the keys of CHUTE_SECRET_KEY .*add that key after"):
        load_keyring(tmp_path, {KEY_ENV: new}).decrypt(token, "c")


def test_masking_hides_the_value_and_its_common_encodings() -> None:
    value = "Sup3r/Secret+Value=1&x"
    pem = "-----BEGIN KEY-----\nMIIBVgIBADANBgkqhkiG\n9w0BAQEFAASCAUAwggE8\n-----END KEY-----"
    m = Masker([value, pem])
    forms = [value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
             base64.b64encode(value.encode()).decode(), base64.b64encode(value.encode() + b"\n").decode(),
             base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")]
    for form in forms:
        assert m.mask(f"before {form} after") == f"before {MASK} after", form
    # A multi-line value: whole, and line by line (a tool may print it re-wrapped).
    assert m.mask(pem) == MASK
    assert m.mask("key line: MIIBVgIBADANBgkqhkiG") == f"key line: {MASK}"
    doc = {"stages": [{"error": f"bad {value}", "exports": {"output": forms[4]}}], value: 1}
    assert m.mask_doc(doc) == {"stages": [{"error": f"bad {MASK}", "exports": {"output": MASK}}], MASK: 1}
    assert Masker([]).mask(value) == value and not Masker([])


def test_a_value_that_contains_the_mask_cannot_reappear_around_it() -> None:
    value = "a***b***"
    assert value not in Masker([value]).mask("a***ba***b******")


@settings(max_examples=150, deadline=None)
@given(value=st.text(min_size=8, max_size=40).filter(lambda v: "\0" not in v),
       before=st.text(max_size=20), after=st.text(max_size=20))
def test_fuzz_a_masked_text_never_contains_the_value_or_its_base64(value: str, before: str, after: str) -> None:
    m = Masker([value])
    b64 = base64.b64encode(value.encode()).decode()
    for text in (before + value + after, before + b64 + after):
        out = m.mask(text)
        assert value not in out and b64 not in out


def test_the_cli_makes_keys_and_rotates_the_stored_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`chute secret new-key` and `chute secret rotate`, which the key errors and the docs tell people to run."""
    from typer.testing import CliRunner

    from chute.cli import app
    from chute.secrets import SecretStore
    from chute.store import Project, Secret
    from chute.store.db import Database

    made = CliRunner().invoke(app, ["secret", "new-key"])
    assert made.exit_code == 0, made.output
    old, new = made.output.strip(), new_key()
    assert len(base64.urlsafe_b64decode(old)) == 32
    monkeypatch.setenv("CHUTE_HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    db = Database(f"sqlite:///{tmp_path / 'chute.db'}")
    db.migrate()
    with db.session() as s:
        p = Project(name="svc", repo_url="file:///nowhere", default_branch="main", webhook_secret="w")
        s.add(p)
        s.flush()
        SecretStore(tmp_path, {KEY_ENV: old}).set(s, p, "API_TOKEN", "a-long-secret", actor="ada")
    monkeypatch.setenv(KEY_ENV, f"{new},{old}")
    rotated = CliRunner().invoke(app, ["secret", "rotate"])
    assert rotated.exit_code == 0, rotated.output
    assert "1 secret re-encrypted" in rotated.output
    with db.session() as s:
        p = s.query(Project).one()
        assert SecretStore(tmp_path, {KEY_ENV: new}).values(s, p, ["API_TOKEN"]) == {"API_TOKEN": "a-long-secret"}
        assert s.query(Secret).one().key_id == SecretStore(tmp_path, {KEY_ENV: new}).keyring().current_id
    monkeypatch.setenv(KEY_ENV, new_key())  # a key that decrypts nothing stored: said, and nothing changes
    failed = CliRunner().invoke(app, ["secret", "rotate"])
    assert failed.exit_code == 1 and "not among the keys" in failed.output
