"""Running the binary: one child per call, which never outlives its caller."""

import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Optional

from ._find import find_bootforge

log = logging.getLogger("bootforge")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # Failures as one JSON line on stderr, told apart by their code.
    env["BOOTFORGE_ERRORS"] = "json"
    # On Linux the child asks for SIGTERM when this process dies (SIGKILL, an
    # OOM kill): no waiter is left behind. The instance keeps its own
    # deadline, and a later call attaches to it.
    env["BOOTFORGE_PARENT_PID"] = str(os.getpid())
    return env


def _start(args: Sequence[str]) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [find_bootforge(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_environment(),
    )


def _end(child: "subprocess.Popen[bytes]") -> None:
    """Ends the child when the caller stops waiting (an exception, a Celery
    time limit): SIGTERM, then SIGKILL."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _drain(stream: "IO[bytes]", keep: list[str]) -> None:
    """Keeps stderr's lines and logs them as they come (bootforge's progress)."""
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        keep.append(line)
        if not line.startswith("{"):
            log.info("%s", line)


@contextlib.contextmanager
def _running(args: Sequence[str]) -> Iterator[tuple["subprocess.Popen[bytes]", list[str]]]:
    """bootforge with ``args``, its stderr's lines kept as they come; ended
    when the caller leaves (an exception, a Celery time limit, a generator
    closed early)."""
    child = _start(args)
    assert child.stdout is not None and child.stderr is not None
    errors: list[str] = []
    reader = threading.Thread(target=_drain, args=(child.stderr, errors), daemon=True)
    reader.start()
    try:
        yield child, errors
    finally:
        _end(child)
        reader.join(timeout=10)
        child.stdout.close()
        child.stderr.close()


def run(args: Sequence[str]) -> tuple[int, bytes, str]:
    """Runs bootforge with ``args``: its exit code, stdout and stderr."""
    with _running(args) as (child, errors):
        assert child.stdout is not None
        out = child.stdout.read()
        code = child.wait()
    return code, out, "\n".join(errors)


def lines(args: Sequence[str], done: list[Optional[tuple[int, str]]]) -> Iterator[str]:
    """Runs bootforge with ``args``, yielding stdout's lines as they come; at
    the end ``done[0]`` holds its exit code and stderr."""
    with _running(args) as (child, errors):
        assert child.stdout is not None
        for raw in child.stdout:
            yield raw.decode("utf-8", "replace")
        code = child.wait()
    done[0] = (code, "\n".join(errors))
