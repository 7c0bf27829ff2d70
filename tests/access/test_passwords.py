"""Passwords (argon2id, never stored plain, timing-safe), user names, the failed-login throttle,
token text and scopes, on a real database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from chute.server import access
from chute.server.auth import check_token, create_token, find_token, revoke_token
from chute.server.services import ServiceError
from chute.store import Database, Event, Token, User


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    d = Database(db_url)
    d.migrate()
    yield d
    d.dispose()


def test_passwords_are_argon2id_hashes_never_the_text(db: Database) -> None:
    with db.session() as s:
        a = access.create_user(s, "Ada", password="same password here", actor="test")
        b = access.create_user(s, "bob", password="same password here", actor="test")
        assert a.name == "ada"  # names are case-insensitive: kept in lower case
        assert a.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert "same password here" not in a.password_hash
        assert a.password_hash != b.password_hash  # salted
    with db.session() as s:
        assert access.verify_login(s, "ADA", "same password here").name == "ada"
        assert access.verify_login(s, "ada", "same password here ") is None
        assert access.verify_login(s, "ada", "") is None
        assert access.verify_login(s, "nobody", "same password here") is None
        # Nothing in the database holds the password.
        for row in s.scalars(select(Event)):
            assert "same password here" not in str(row.data)


def test_an_unknown_user_costs_as_much_as_a_wrong_password(tmp_path: Path) -> None:
    """No timing difference tells whether a user exists: both run one argon2 verification.
    (SQLite only: the network round trips of PostgreSQL would only add noise.)"""
    db = Database(f"sqlite:///{tmp_path / 'timing.db'}")
    db.migrate()
    with db.session() as s:
        access.create_user(s, "timed", password="the right password", actor="test")

    def seconds(name: str) -> float:
        with db.session() as s:
            start = time.perf_counter()
            assert access.verify_login(s, name, "a wrong password") is None
            return time.perf_counter() - start

    seconds("nobody")  # the first call makes the dummy hash
    known, unknown = [], []
    for _ in range(7):  # interleaved, and the fastest of each: the machine's load is noise, not cost
        known.append(seconds("timed"))
        unknown.append(seconds("nobody-at-all"))
    assert min(known) > 0.005  # argon2 did run (19 MiB, 2 passes)
    assert min(unknown) > min(known) * 0.6, (known, unknown)
    db.dispose()


def test_weaker_old_hashes_are_upgraded_at_login(db: Database) -> None:
    with db.session() as s:
        u = access.create_user(s, "old", password="an old password", actor="test")
        u.password_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("an old password")
    with db.session() as s:
        assert access.verify_login(s, "old", "an old password") is not None
    with db.session() as s:
        u = s.scalars(select(User).where(User.name == "old")).one()
        assert u.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_password_and_name_rules(db: Database) -> None:
    with db.session() as s:
        with pytest.raises(ServiceError, match="too short"):
            access.create_user(s, "carl", password="short", actor="t")
        with pytest.raises(ServiceError, match="must not be the user name"):
            access.create_user(s, "carlcarl", password="CarlCarl", actor="t")
        for bad in ("anonymous", "me", "server", "a b", "x(token y)", "", "-lead", "a:b"):
            with pytest.raises(ServiceError):
                access.check_user_name(bad)
        access.create_user(s, "carl", actor="t")  # no password: SSO or tokens only
        with pytest.raises(ServiceError, match="already exists"):
            access.create_user(s, "CARL", actor="t")
    with db.session() as s:
        assert access.verify_login(s, "carl", "") is None


def test_throttle_doubles_the_wait_and_keeps_bounded_memory() -> None:
    now = [1000.0]
    t = access.LoginThrottle(free=3, free_per_address=1000, max_delay=60, window=600, max_entries=100,
                             clock=lambda: now[0])
    for _ in range(3):
        assert t.wait("ann", "1.2.3.4") == 0
        t.failed("ann", "1.2.3.4")
    assert t.wait("ann", "1.2.3.4") == 1  # 2**0 after the third failure
    assert t.wait("ann", "5.6.7.8") == 0 and t.wait("bob", "1.2.3.4") == 0  # other address, other user
    for expected in (2, 4, 8, 16, 32, 60, 60):
        t.failed("ann", "1.2.3.4")
        assert t.wait("ann", "1.2.3.4") == expected
    now[0] += 601  # a quiet window forgets
    assert t.wait("ann", "1.2.3.4") == 0
    t.failed("ann", "1.2.3.4")
    t.succeeded("ann", "1.2.3.4")
    assert t.wait("ann", "1.2.3.4") == 0
    for i in range(5000):  # a spray of names and addresses
        t.failed(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t) <= 100
    # The address limit holds whatever names are tried.
    t2 = access.LoginThrottle(free=3, free_per_address=10, clock=lambda: now[0])
    for i in range(10):
        t2.failed(f"name{i}", "9.9.9.9")
    assert t2.wait("a-new-name", "9.9.9.9") == 1


def test_tokens_are_hashed_scoped_expiring_and_revocable(db: Database) -> None:
    with db.session() as s:
        access.create_user(s, "tina", actor="t")
        tok, text = create_token(s, "laptop", user="tina", scopes=["run", "read"], expires_at=access.expiry("1d"),
                                 actor="t")
        assert tok.scopes == ["read", "run"] and text.startswith(f"chute_{tok.prefix}_")
        assert text.split("_", 2)[2] not in tok.hash
        with pytest.raises(ServiceError, match="unknown token scope sudo"):
            create_token(s, "x", user="tina", scopes=["sudo"], expires_at=None, actor="t")
        with pytest.raises(ServiceError, match="at least one scope"):
            create_token(s, "x", user="tina", scopes=[], expires_at=None, actor="t")
        with pytest.raises(ServiceError, match="the agent scope works only"):
            create_token(s, "x", user="tina", scopes=["agent"], expires_at=None, actor="t")
        with pytest.raises(ServiceError, match="cannot be a token name"):
            create_token(s, "evil (token admin)", user="tina", scopes=["read"], expires_at=None, actor="t")
        with pytest.raises(ServiceError, match="not a duration"):
            access.expiry("soon")
    with db.session() as s:
        who = check_token(s, text)
        assert who is not None and who.actor == "tina (token laptop)" and who.scopes == ("read", "run")
        assert check_token(s, text[:-1] + ("A" if text[-1] != "A" else "B")) is None
        assert find_token(s, f"chute_{text.split('_')[1]}_…").id == who.token_id
        revoke_token(s, s.get(Token, who.token_id), actor="t")
    with db.session() as s:
        assert check_token(s, text) is None
        kinds = [e.kind for e in s.scalars(select(Event).where(Event.kind.like("token.%")).order_by(Event.id))]
        assert kinds == ["token.created", "token.revoked"]


def test_the_admin_token_file_and_bootstrap_admin(tmp_path: Path, db: Database) -> None:
    from chute.server.auth import ensure_admin_token

    text = ensure_admin_token(db, tmp_path)
    assert ensure_admin_token(db, tmp_path) == text  # kept across restarts
    with db.session() as s:
        who = check_token(s, text)
        assert who is not None and who.server_admin and who.scopes == ("admin", "agent")
        assert who.actor == "admin (token bootstrap)"
        revoke_token(s, s.get(Token, who.token_id), actor="t")
    again = ensure_admin_token(db, tmp_path)  # a revoked one is replaced at the next start
    assert again != text and (tmp_path / "admin-token").read_text().strip() == again
