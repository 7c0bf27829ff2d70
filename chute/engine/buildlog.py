"""Following build output: which step is running, what came from the cache, what failed.

Three output dialects are understood:

* podman/buildah (also what the docker CLI prints against ``podman system service``)::

    [1/2] STEP 2/4: RUN make
    --> Using cache 4f3c...
    Error: building at STEP "RUN make": while running runtime: exit status 2

* docker's classic builder::

    Step 2/4 : RUN make
     ---> Using cache
    The command '/bin/sh -c make' returned a non-zero code: 2

* BuildKit's plain progress::

    #6 [2/4] RUN make
    #6 0.412 cc -o app main.c
    #6 ERROR: process "/bin/sh -c make" did not complete successfully: exit code: 2
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass

_PODMAN_STEP = re.compile(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: .+")
_CLASSIC_STEP = re.compile(r"^Step \d+/\d+ : .+")
_BUILDKIT_STEP = re.compile(r"^#(\d+) (\[[^\]]+\] .+)$")
_BUILDKIT_LINE = re.compile(r"^#(\d+) (?:\d+\.\d+ )?(.*)$")
_CACHE = re.compile(r"^\s*-+> Using cache\b|^#\d+ CACHED$")
_PODMAN_ERROR = re.compile(r'(?:Error: )?building at STEP "(?P<step>.+?)": (?P<reason>.*)$')
_CLASSIC_ERROR = re.compile(r"^The command '(?P<cmd>.*)' returned a non-zero code: (?P<code>\d+)")
_EXIT_STATUS = re.compile(r"exit (?:status|code):? (\d+)")

OUTPUT_LINES_KEPT = 25


@dataclass(frozen=True)
class BuildFailure:
    step: str | None  # e.g. '[2/2] STEP 3/5: RUN make' or 'Step 3/5 : RUN make'
    output: tuple[str, ...]  # the last lines that step printed
    reason: str  # the engine's own error line
    exit_code: int | None  # the exit status of a failed RUN, if there was one


class BuildLog:
    """Feed it every line of build output; ask it about steps, cache hits and the failure."""

    def __init__(self) -> None:
        self.steps = 0
        self.cached = 0
        self.current: str | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
        self._bk_steps: dict[str, str] = {}
        self._bk_output: dict[str, collections.deque[str]] = {}
        self._bk_failed: str | None = None
        self._errors: list[str] = []

    def feed(self, line: str) -> None:
        text = line.rstrip()
        if _PODMAN_STEP.match(text) or _CLASSIC_STEP.match(text):
            self.steps += 1
            self.current = text
            self._output.clear()
            return
        if _CACHE.match(text):
            self.cached += 1
            return
        m = _BUILDKIT_STEP.match(text)
        if m and m.group(1) not in self._bk_steps:
            self.steps += 1
            self._bk_steps[m.group(1)] = m.group(2)
            self._bk_output[m.group(1)] = collections.deque(maxlen=OUTPUT_LINES_KEPT)
            self.current = m.group(2)
            return
        m = _BUILDKIT_LINE.match(text)
        if m and m.group(1) in self._bk_steps:
            body = m.group(2)
            if body.startswith("ERROR:"):
                self._bk_failed = m.group(1)
                self._errors.append(body)
            elif body and not body.startswith("DONE") and body != "CACHED":
                self._bk_output[m.group(1)].append(body)
            return
        if (
            _PODMAN_ERROR.search(text)
            or _CLASSIC_ERROR.match(text)
            or text.startswith(("Error:", "ERROR:", "Error response from daemon:"))
        ):
            self._errors.append(text)
            return
        if text.startswith("--> ") or text.startswith(" ---> ") or text in ("COMMIT", ""):
            return
        self._output.append(text)

    def failure(self, fallback_tail: tuple[str, ...] = ()) -> BuildFailure:
        """What failed, from everything fed so far (call after the build exited non-zero)."""
        reason = self._errors[-1] if self._errors else (fallback_tail[-1] if fallback_tail else "")
        exit_code = None
        m = _EXIT_STATUS.search(reason)
        if m:
            exit_code = int(m.group(1))
        m2 = _CLASSIC_ERROR.match(reason)
        if m2:
            exit_code = int(m2.group("code"))
        if self._bk_failed is not None:
            return BuildFailure(
                self._bk_steps[self._bk_failed],
                tuple(self._bk_output[self._bk_failed]),
                reason,
                exit_code,
            )
        step = self.current
        pm = _PODMAN_ERROR.search(reason)
        if step is None and pm:
            step = pm.group("step")
        return BuildFailure(step, tuple(self._output), reason, exit_code)


def failure_hint(failure: BuildFailure) -> str | None:
    """A suggestion for the common kinds of build failure."""
    reason = failure.reason.lower()
    step = (failure.step or "").upper()
    if failure.exit_code is not None and " RUN " in f" {step.split(':', 1)[-1]} ":
        return f"the command of this RUN step exited with status {failure.exit_code}; see its output above"
    if "no such file or directory" in reason and ("COPY" in step or "ADD" in step):
        return "the source path is not in the build context, or a .dockerignore pattern excludes it"
    if (
        "image not known" in reason
        or "pull access denied" in reason
        or "pinging container registry" in reason
    ):
        return (
            "the base image is not in local storage and could not be pulled; "
            "build or tag it locally first (see docs/engine.md), or check the registry"
        )
    if "target stage" in reason or "no stage" in reason:
        return "the --target stage does not exist in the Dockerfile; check the variant name"
    return None
