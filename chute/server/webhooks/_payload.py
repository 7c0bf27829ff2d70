"""Reading untrusted webhook JSON: every failure becomes a 400 WebhookError naming the field.

Drivers never index into a payload directly; they go through :class:`Payload`, which checks
types (``True`` is not a number, ``"12"`` is one only where a system is known to send
numbers as strings) so that no input can raise anything but :class:`WebhookError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from .events import WebhookError

SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
MAX_INT = 2**53  # JSON numbers beyond this are not ids any review system issues


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value by case-insensitive name (works for dicts and Starlette Headers)."""
    value = headers.get(name)
    if value is None:
        lname = name.lower()
        for key, val in headers.items():
            if isinstance(key, str) and key.lower() == lname:
                value = val
                break
    return value if isinstance(value, str) else None


def load_json(source: str, body: bytes) -> dict[str, Any]:
    """Parse a JSON object body, or raise a 400 that says what is wrong with it."""
    if not body or not body.strip():
        raise WebhookError(400, f"{source} webhook: the request body is empty; expected a JSON object")
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise WebhookError(400, f"{source} webhook: the body is not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise WebhookError(
            400,
            f"{source} webhook: the body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise WebhookError(400, f"{source} webhook: the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookError(
            400, f"{source} webhook: the body is a JSON {type(data).__name__}, expected an object"
        )
    return data


def load_form_payload(source: str, body: bytes) -> dict[str, Any]:
    """A ``application/x-www-form-urlencoded`` body whose ``payload`` field holds the JSON."""
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(400, f"{source} webhook: the form body cannot be decoded: {exc}") from None
    values = fields.get("payload")
    if not values:
        raise WebhookError(400, f"{source} webhook: the form body has no 'payload' field")
    return load_json(source, values[0].encode("utf-8", "surrogatepass"))


class Payload:
    """Typed, path-reporting access to one JSON object of a payload."""

    def __init__(self, source: str, data: Mapping[str, Any], path: str = "") -> None:
        self.source = source
        self.data = data
        self.path = path

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, key: str, problem: str) -> WebhookError:
        return WebhookError(400, f"{self.source} webhook: field {self._where(key)} {problem}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def obj(self, key: str, required: bool = True) -> Payload | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._fail(key, "is missing")
            return None
        if not isinstance(value, dict):
            raise self._fail(key, f"must be an object, got {_kind(value)}")
        return Payload(self.source, value, self._where(key))

    def req_obj(self, key: str) -> Payload:
        value = self.obj(key, required=True)
        assert value is not None
        return value

    def string(self, key: str, required: bool = True, allow_empty: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._fail(key, "is missing")
            return None
        if not isinstance(value, str):
            raise self._fail(key, f"must be a string, got {_kind(value)}")
        if not value and not allow_empty:
            if required:
                raise self._fail(key, "is empty")
            return None
        return value

    def req_str(self, key: str) -> str:
        value = self.string(key, required=True)
        assert value is not None
        return value

    def integer(self, key: str, required: bool = True, numeric_string: bool = False) -> int | None:
        """An integer id; ``numeric_string`` accepts ``"123"`` (old Gerrit versions send those)."""
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._fail(key, "is missing")
            return None
        if numeric_string and isinstance(value, str) and value.isascii() and value.isdigit():
            if len(value) > 16:
                raise self._fail(key, "is not a plausible id (too long)")
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be an integer, got {_kind(value)}")
        if not 0 <= value <= MAX_INT:
            raise self._fail(key, f"must be a positive integer, got {value}")
        return value

    def req_int(self, key: str, numeric_string: bool = False) -> int:
        value = self.integer(key, required=True, numeric_string=numeric_string)
        assert value is not None
        return value

    def sha(self, key: str, required: bool = True) -> str | None:
        value = self.string(key, required=required)
        if value is None:
            return None
        if not SHA_RE.match(value):
            raise self._fail(key, f"must be a 40- or 64-digit lowercase hex commit id, got {value[:80]!r}")
        return value

    def req_sha(self, key: str) -> str:
        value = self.sha(key, required=True)
        assert value is not None
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def person(p: Payload | None, *keys: str) -> str | None:
    """The first non-empty string among ``keys`` of an account object (username, login, name…)."""
    if p is None:
        return None
    for key in keys:
        value = p.data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def short_branch(ref: str) -> str | None:
    return ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else None


def check_ref(source: str, ref: str, where: str) -> str:
    """Refs go into git commands later; refuse anything git itself would refuse."""
    if (
        not ref.startswith("refs/")
        or len(ref) > 1024
        or ".." in ref
        or "//" in ref
        or ref.endswith(("/", ".lock", "."))
        or "@{" in ref
        or any(c in ref for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 0x20 for c in ref)
    ):
        raise WebhookError(400, f"{source} webhook: field {where} is not a valid git ref: {ref[:200]!r}")
    return ref
