"""Resident memory of ``chute serve`` (with its embedded agent) while pipelines run and a huge log streams.

Goal (issue "chute serve"): under 250 MB resident while 4 pipelines run; a 1 GB log must not
grow the process (logs are streamed to storage, never held whole).

A real ``chute serve`` with its embedded agent serves a fresh SQLite database (or PostgreSQL
with ``--db postgres``); one local git project is registered. Its pipelines run real podman
containers built from ``localhost/debian:bookworm`` (Blubber, ``copies: [local]``):

* ``p1`` .. ``p4``: one stage each that prints 20,000 lines (2 MB) over about 2 s. All four are
  queued by one trigger; the embedded agent claims one job at a time, so they run one after
  the other.
* ``wide``: four such stages in parallel (an execution graph of four one-stage arcs), so four
  containers stream into the process at once.
* ``big``: one stage whose container prints ``--log-mb`` MB (``yes`` of a 100-byte line piped
  through ``head -c``); with several sizes, one run each, smallest first.
* ``flat`` (only with ``--flat-mb``): the same without a single newline (``head -c`` of
  ``/dev/zero`` through ``tr``), the case of a progress bar redrawn with carriage returns.

Every 0.1 s a thread samples the resident set of the server process (``/proc/PID/status``) plus
that of any descendant that is a Python process (podman, conmon and the containers are not
counted: they are not chute's memory). Printed: the peak per phase, the log bytes stored for
each big run (summed in the database) and how long it took.

    .venv/bin/python bench/server_memory.py                          # 1 GB log
    .venv/bin/python bench/server_memory.py --log-mb 100 --log-mb 1000
    .venv/bin/python bench/server_memory.py --logs-only --log-mb 10 --flat-mb 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_common import ChuteServer, database, machine, rss_kib

BLUBBER = """version: v4
base: localhost/debian:bookworm
lives: {in: /srv/app}
variants:
  test:
    copies: [local]
    entrypoint: [sh, test.sh]
  big:
    copies: [local]
    entrypoint: [sh, big.sh]
  flat:
    copies: [local]
    entrypoint: [sh, flat.sh]
"""
TEST_SH = ('i=0; while [ $i -lt 20 ]; do seq -f "line %g of a test that prints a hundred bytes or so, '
           'padded out with words to ninety-nine" $((i*1000)) $((i*1000+999)); i=$((i+1)); sleep 0.1; done\n')
LINE = "x" * 99  # 100 bytes with the newline
DONE = ("success", "failure", "error", "cancelled")


def config(sizes: list[int], flat: list[int]) -> str:
    one = "    blubberfile: blubber.yaml\n    stages:\n      - name: test\n"
    out = "pipelines:\n" + "".join(f"  p{i}:\n{one}" for i in range(1, 5))
    out += ("  wide:\n    blubberfile: blubber.yaml\n    stages:\n"
            + "".join(f"      - {{name: s{i}, build: test, run: true}}\n" for i in range(1, 5))
            + "    execution: [[s1], [s2], [s3], [s4]]\n")
    for mb in sizes:
        out += (f"  big{mb}:\n    blubberfile: blubber.yaml\n    stages:\n      - name: big\n"
                f"        build: big\n        run:\n          env: {{LOG_BYTES: '{mb * 1_000_000}'}}\n")
    for mb in flat:
        out += (f"  flat{mb}:\n    blubberfile: blubber.yaml\n    stages:\n      - name: flat\n"
                f"        build: flat\n        run:\n          env: {{LOG_BYTES: '{mb * 1_000_000}'}}\n")
    return out


def python_descendants(pid: int) -> list[int]:
    """Descendants of ``pid`` whose command is Python (chute's own helpers, if any)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            comm, argv0 = Path(f"/proc/{p}/comm").read_text(), Path(f"/proc/{p}/cmdline").read_bytes()[:200]
            if "python" in comm or b"python" in argv0:
                out.append(p)
        except OSError:
            pass
    return out


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.phase = pid, every, "start"
        self.peaks: dict[str, int] = {}
        self.last = 0
        self.halt = threading.Event()
        self.extra = 0  # peak KiB of Python descendants seen

    def run(self) -> None:
        while not self.halt.wait(self.every):
            try:
                total = rss_kib(self.pid)
                kids = sum(rss_kib(p) for p in python_descendants(self.pid))
            except OSError:
                continue
            self.extra = max(self.extra, kids)
            self.last = total + kids
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.last)


def wait_runs(srv: ChuteServer, ids: list[int], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        runs = [srv.http.get(f"/api/v1/runs/{i}").json() for i in ids]
        if all(r["status"] in DONE for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"runs not finished within {timeout} s: {[(r['id'], r['status']) for r in runs]}")
        time.sleep(0.5)


def trigger(srv: ChuteServer, project: str, pipelines: list[str]) -> list[int]:
    r = srv.http.post(f"/api/v1/projects/{project}/trigger", json={"pipelines": pipelines})
    assert r.status_code in (200, 201, 202), r.text
    return [run["id"] for run in r.json()]


def stored_log_bytes(url: str, run_id: int) -> tuple[int, int]:
    from sqlalchemy import func, select

    from chute.store import Database, LogChunk

    db = Database(url)
    with db.session() as s:
        n, size = s.execute(select(func.count(LogChunk.id), func.coalesce(func.sum(func.length(LogChunk.text)), 0))
                            .where(LogChunk.run_id == run_id)).one()
    db.dispose()
    return int(n), int(size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--log-mb", type=int, action="append", help="size of the big log in MB (repeatable; default 1000)")
    ap.add_argument("--flat-mb", type=int, action="append", default=[],
                    help="also a log of this many MB without a single newline (repeatable)")
    ap.add_argument("--logs-only", action="store_true", help="skip the 4-pipeline phases")
    args = ap.parse_args()
    sizes = sorted(args.log_mb or [1000])
    mib = 1024
    with tempfile.TemporaryDirectory(prefix="chute-memory-") as tmp, database(args.db, Path(tmp)) as url:
        from server_common import make_repo

        repo = make_repo(Path(tmp) / "svc", {
            ".pipeline/blubber.yaml": BLUBBER, ".pipeline/config.yaml": config(sizes, args.flat_mb), "test.sh": TEST_SH,
            "big.sh": f'yes "{LINE}" | head -c "$LOG_BYTES"\n',
            "flat.sh": 'head -c "$LOG_BYTES" /dev/zero | tr "\\\\0" x\n'})
        with ChuteServer(Path(tmp) / "home", url, agent=True) as srv:
            sampler = Sampler(srv.pid)
            sampler.start()
            r = srv.http.post("/api/v1/projects", json={"repo": str(repo)})
            assert r.status_code in (200, 201), r.text
            project = r.json()["name"]
            time.sleep(3)
            sampler.phase = "idle"
            time.sleep(5)
            report: list[str] = []

            def phase(name: str, pipelines: list[str], timeout: float) -> list[dict]:
                sampler.phase = name
                t0 = time.perf_counter()
                runs = wait_runs(srv, trigger(srv, project, pipelines), timeout)
                took = time.perf_counter() - t0
                sampler.phase = f"after {name}"
                bad = [(x["pipeline"], x["status"], x["reason"][:200]) for x in runs if x["status"] != "success"]
                report.append(f"{name}: {len(runs)} run(s) in {took:.1f} s" + (f"; NOT SUCCESS: {bad}" if bad else ""))
                time.sleep(3)
                return runs

            if not args.logs_only:
                phase("warm-up (builds the images)", ["p1"], 900)
                phase("4 pipelines queued together (run one after the other)", ["p1", "p2", "p3", "p4"], 900)
                phase("4 stages in parallel (wide)", ["wide"], 900)
            for mb, pipeline, label in [(mb, f"big{mb}", f"{mb} MB log") for mb in sizes] + [
                    (mb, f"flat{mb}", f"{mb} MB log without newlines") for mb in args.flat_mb]:
                t0 = time.perf_counter()
                (run,) = phase(label, [pipeline], 7200)
                took = time.perf_counter() - t0 - 3
                chunks, size = stored_log_bytes(url, run["id"])
                report.append(f"  {label}: {size:,} bytes stored in {chunks:,} chunks ({size / mb / 1e6:.3f} of "
                              f"the bytes printed), {size / took / 1e6:.1f} MB/s end to end")
            sampler.phase = "end"
            time.sleep(5)
            sampler.halt.set()
            sampler.join()
    print(f"# {args.db}; chute serve with its embedded agent; {machine()}")
    for line in report:
        print(line)
    print(f"{'phase':<58} {'peak RSS MiB':>12} {'MB':>7}")
    for name, peak in sampler.peaks.items():
        flag = "" if peak * 1024 <= 250e6 else "  > 250 MB"
        print(f"{name:<58} {peak / mib:>12.1f} {peak * 1024 / 1e6:>7.1f}{flag}")
    print(f"(Python descendants counted: peak {sampler.extra / mib:.1f} MiB)")


if __name__ == "__main__":
    main()
