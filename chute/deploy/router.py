"""The podman target's stand-in for a Kubernetes Service: a tiny TCP proxy.

``podman kube play`` ignores Services and ``--replace`` stops the old pod
before it starts the new one, so one port cannot change hands without a gap.
Each revision therefore runs on its own side port, and this proxy owns the
environment's public port (127.0.0.1:<port>). Switching revisions rewrites a
small JSON file and sends SIGHUP: new connections go to the new revision at
once, connections already open finish on the old one. The proxy is a detached
process, so it keeps serving when chute itself restarts.

Run as ``python -m chute.deploy.router --listen 127.0.0.1:18181 --state FILE``.
The state file holds ``{"upstream": "127.0.0.1:18350", "generation": 3}``;
after applying it the router writes the generation to ``FILE.applied``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path


class Router:
    def __init__(self, listen: str, state: Path) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.state = state
        self.upstream: tuple[str, int] | None = None
        self.generation = -1

    def reload(self) -> None:
        try:
            data = json.loads(self.state.read_text())
        except (OSError, ValueError) as exc:
            print(f"router: cannot read {self.state}: {exc}", file=sys.stderr, flush=True)
            return
        upstream = data.get("upstream")
        if upstream:
            host, _, port = str(upstream).rpartition(":")
            self.upstream = (host, int(port))
        else:
            self.upstream = None
        self.generation = int(data.get("generation", 0))
        applied = self.state.with_name(self.state.name + ".applied")
        tmp = applied.with_name(applied.name + ".tmp")
        tmp.write_text(str(self.generation))
        os.replace(tmp, applied)
        print(f"router: generation {self.generation} -> {upstream}", file=sys.stderr, flush=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = self.upstream  # chosen once per connection: a switch never splits a connection
        if upstream is None:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.reload()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        server = await asyncio.start_server(
            self.handle, self.host, self.port, reuse_address=True, backlog=512
        )
        ready = self.state.with_name(self.state.name + ".ready")
        ready.write_text(str(os.getpid()))
        async with server:
            await stop.wait()
        with contextlib.suppress(OSError):
            ready.unlink()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m chute.deploy.router")
    ap.add_argument("--listen", required=True, help="HOST:PORT to serve on, e.g. 127.0.0.1:18181")
    ap.add_argument("--state", required=True, help="JSON file naming the upstream; reread on SIGHUP")
    args = ap.parse_args(argv)
    asyncio.run(Router(args.listen, Path(args.state)).serve())


if __name__ == "__main__":
    main()
