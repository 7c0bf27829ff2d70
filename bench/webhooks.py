"""How long chute's webhook drivers take per request: verify + parse of the sample payloads.

Run: .venv/bin/python bench/webhooks.py
"""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path

from chute.server.webhooks import DRIVERS, WebhookError

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "webhooks"
SECRET = "bench-secret"
GITHUB_EVENTS = {"push": "push", "pull": "pull_request", "issue": "issue_comment", "ping": "ping"}


def headers_for(kind: str, path: Path, body: bytes) -> dict[str, str]:
    if kind == "github":
        event = next(v for k, v in GITHUB_EVENTS.items() if path.stem.startswith(k))
        sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return {"X-GitHub-Event": event, "X-GitHub-Delivery": "d", "X-Hub-Signature-256": sig}
    if kind == "gitlab":
        return {"X-Gitlab-Token": SECRET, "X-Gitlab-Event-UUID": "u"}
    return {"X-Chute-Token": SECRET, "Authorization": f"Bearer {SECRET}"}


def main(rounds: int = 2000) -> None:
    print(f"{'driver':8} {'payload':36} {'bytes':>6} {'verify+parse µs':>16}")
    for path in sorted(FIXTURES.glob("*/*.json")):
        kind = path.parent.name
        body = path.read_bytes()
        headers = headers_for(kind, path, body)
        driver = DRIVERS[kind]
        start = time.perf_counter()
        for _ in range(rounds):
            assert driver.verify(headers, body, SECRET)
            try:
                driver.parse(headers, body)
            except WebhookError:
                pass
        per_call = (time.perf_counter() - start) / rounds * 1e6
        print(f"{kind:8} {path.stem:36} {len(body):6d} {per_call:16.1f}")


if __name__ == "__main__":
    main()
