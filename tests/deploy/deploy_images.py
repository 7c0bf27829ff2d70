"""Tiny HTTP service images for the deploy tests and bench (busybox httpd, no registry).

Every variant serves ``/`` (its version text), a static ``/healthz`` and a CGI
health endpoint ``/cgi-bin/healthz``:

* ``v1``, ``v2``: healthy;
* ``bad``: the CGI answers 500;
* ``flaky``: the CGI answers 200 for its first ``FLAKY_OK`` calls, then 500
  (healthy at first, unhealthy once it serves);
* ``crash``: exits after a second;
* ``hcfail``: serves fine, but its image HEALTHCHECK always fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = "localhost/chute-test-web"
HEALTH = "/cgi-bin/healthz"
FLAKY_OK = 3

_ENTRY = '["/bin/sh","-c","trap \'exit 0\' TERM; httpd -f -p $PORT -h /www & wait"]'
_OK = "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'\n"
_BAD = (
    "#!/bin/sh\nprintf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nbad\\n'\n"
)
_FLAKY = (
    "#!/bin/sh\n"
    "n=$(cat /tmp/hits 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/hits\n"
    f"if [ $n -le {FLAKY_OK} ]; then printf 'Content-Type: text/plain\\r\\n\\r\\nok\\n'; "
    "else printf 'Status: 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n\\r\\nbad\\n'; fi\n"
)


def _variant(name: str) -> tuple[str, str]:
    """(cgi script, entrypoint) of a variant."""
    if name == "bad":
        return _BAD, _ENTRY
    if name == "flaky":
        return _FLAKY, _ENTRY
    if name == "crash":
        return _OK, '["/bin/sh","-c","sleep 1; exit 3"]'
    return _OK, _ENTRY


def build(variant: str, *, port: int = 8080, podman: str = "podman") -> str:
    """Build (once per content) ``REPO:<variant>`` and return the reference."""
    cgi, entry = _variant(variant)
    containerfile = (
        "FROM localhost/busybox:stable\n"
        f"ENV PORT={port} VERSION={variant}\n"
        "COPY www /www\n"
        'LABEL chute.test="1"\n'
        f"ENTRYPOINT {entry}\n"
    )
    if variant == "hcfail":
        containerfile += "HEALTHCHECK --interval=5s --retries=1 CMD test -f /tmp/never-there\n"
    key = hashlib.sha256((containerfile + cgi + variant).encode()).hexdigest()[:10]
    ref = f"{REPO}:{variant}-{key}"
    if subprocess.run([podman, "image", "exists", ref], check=False).returncode == 0:
        return ref
    ctx = Path(tempfile.mkdtemp(prefix="chute-img-"))
    try:
        (ctx / "www" / "cgi-bin").mkdir(parents=True)
        (ctx / "www" / "index.html").write_text(f"{variant}\n")
        (ctx / "www" / "healthz").write_text("ok\n")
        script = ctx / "www" / "cgi-bin" / "healthz"
        script.write_text(cgi)
        script.chmod(0o755)
        (ctx / "Containerfile").write_text(containerfile)
        subprocess.run(
            [podman, "build", "-q", "--format", "docker", "-t", ref, str(ctx)],
            check=True,
            capture_output=True,
            env={**os.environ},
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    return ref


class Load:
    """A constant request rate against a URL on a thread; counts answers other than 200.

    Each request opens a new connection (as most health-checked clients and
    load balancers do), so a request fails only if nothing serves it.
    """

    def __init__(self, url: str, rate: float = 50.0) -> None:
        import threading
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
        self.interval = 1.0 / rate
        self.sent = 0
        self.failed = 0
        self.errors: list[str] = []
        self.bodies: dict[str, int] = {}
        self.timeline: list[tuple[float, str]] = []  # (time.time(), body or error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import http.client
        import time

        next_at = time.monotonic()
        while not self._stop.is_set():
            self.sent += 1
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read().decode(errors="replace").strip()
                conn.close()
                if resp.status != 200:
                    self.failed += 1
                    self.errors.append(f"{resp.status}")
                    self.timeline.append((time.time(), f"HTTP {resp.status}"))
                else:
                    self.bodies[body] = self.bodies.get(body, 0) + 1
                    self.timeline.append((time.time(), body))
            except OSError as exc:
                self.failed += 1
                self.errors.append(type(exc).__name__)
                self.timeline.append((time.time(), type(exc).__name__))
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
