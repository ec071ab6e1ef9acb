"""The Python API: bootforge's commands as functions over its JSON documents."""

import json
from collections.abc import Iterator, Mapping
from typing import Literal, Optional, Union, overload

from . import _process
from .documents import Job, JobList, JobStatus, LogChunk, decode
from .errors import BootforgeError, UsageError, ended, failure

Sets = Optional[Mapping[str, Union[str, int, float, bool]]]

FORMATS = ("payload", "cloud-config", "mime", "base64")


def set_args(sets: Sets) -> list[str]:
    args: list[str] = []
    for key, value in (sets or {}).items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += ["--set", f"{key}={value}"]
    return args


def _local(local: bool, efs: Optional[str]) -> list[str]:
    if efs and not local:
        raise UsageError("efs= goes with local=True: it is a local rehearsal's EFS folder", code="usage")
    return (["--local"] + (["--efs", str(efs)] if efs else [])) if local else []


def _place(profile: Optional[str], sets: Sets, local: bool, efs: Optional[str]) -> list[str]:
    return (["--profile", profile] if profile else []) + set_args(sets) + _local(local, efs)


def _document(out: bytes, what: str) -> object:
    try:
        return json.loads(out)
    except ValueError as e:
        raise BootforgeError(f"bootforge printed no {what} document ({e})", code="environment") from None


def launch(
    profile: str,
    job_id: str,
    *,
    wait: bool = True,
    rerun: bool = False,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
) -> Job:
    """Launches the job's instance (or attaches to the one it has, or queues
    the job behind its profile's ``max_running`` or the account's quota).
    With ``wait`` (the default), follows the job to its end, holding this
    process all along; with ``wait=False``, returns once the job's claim
    records its instance, or the job as queued, and ``advance`` follows it.

    A job that ran and failed is a ``Job`` whose ``outcome`` says so. Raises
    ``UsageError`` for a wrong call, ``TryLater`` on a quota,
    ``BootforgeError`` for the machine, network or AWS, and ``NoStatus``,
    ``Interrupted`` or ``LaunchFailed`` (each carrying the ``Job``) when the
    instance ended without the job's own outcome.
    """
    args = ["launch", profile, "--set", f"job_id={job_id}", "--json", *set_args(sets), *_local(local, efs)]
    if wait:
        args.append("--wait")
    if rerun:
        args.append("--rerun")
    code, out, err = _process.run(args)
    if not out.strip():
        raise failure(err, code)
    job = decode(Job, _document(out, "launch"))
    problem = ended(job)
    if problem is not None:
        raise problem
    return job


def status(
    job_id: str,
    profile: Optional[str] = None,
    *,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
) -> JobStatus:
    """The job now: its run and attempts, the instance and its state, the
    phase and how long it has lasted, the cost so far, and the outcome once
    it has ended. ``profile`` defaults to bootforge's default profile."""
    code, out, err = _process.run(["status", job_id, "--json", *_place(profile, sets, local, efs)])
    if code != 0 or not out.strip():
        raise failure(err, code)
    return decode(JobStatus, _document(out, "status"))


@overload
def logs(
    job_id: str,
    profile: Optional[str] = ...,
    *,
    follow: "Literal[False]" = ...,
    run: Optional[int] = ...,
    sets: Sets = ...,
    local: bool = ...,
    efs: Optional[str] = ...,
) -> str: ...


@overload
def logs(
    job_id: str,
    profile: Optional[str] = ...,
    *,
    follow: "Literal[True]",
    run: Optional[int] = ...,
    sets: Sets = ...,
    local: bool = ...,
    efs: Optional[str] = ...,
) -> Iterator[str]: ...


def logs(
    job_id: str,
    profile: Optional[str] = None,
    *,
    follow: bool = False,
    run: Optional[int] = None,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
) -> Union[str, Iterator[str]]:
    """The run's ``job.log`` (``run=N``: an earlier run's). With ``follow``, an
    iterator of its lines as they are written, until the run's final status."""
    args = ["logs", job_id, *_place(profile, sets, local, efs)]
    if run is not None:
        args += ["--run", str(run)]
    if follow:
        return _follow([*args, "--follow"])
    code, out, err = _process.run(args)
    if code != 0:
        raise failure(err, code)
    return out.decode("utf-8", "replace")


def log_chunk(
    job_id: str,
    profile: Optional[str] = None,
    *,
    offset: Optional[int] = None,
    tail: Optional[int] = None,
    run: Optional[int] = None,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
) -> LogChunk:
    """Whole lines of the run's log from byte ``offset`` (or its last ``tail``
    bytes): what a page streams, and resumes from ``next``."""
    args = ["logs", job_id, "--json", *_place(profile, sets, local, efs)]
    if offset is not None:
        args += ["--offset", str(offset)]
    if tail is not None:
        args += ["--tail", str(tail)]
    if run is not None:
        args += ["--run", str(run)]
    code, out, err = _process.run(args)
    if code != 0 or not out.strip():
        raise failure(err, code)
    return decode(LogChunk, _document(out, "log"))


def jobs(
    profile: Optional[str] = None,
    *,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    since: str = "7d",
    state: str = "all",
    limit: Optional[int] = None,
) -> JobList:
    """Every job of the profile's jobs folder live or ended ``since`` ago
    (``7d``, ``36h``, ``all``), newest first, ``limit`` of them, with totals
    over all of them. ``state``: ``live``, ``ended`` or ``all``."""
    args = ["jobs", "--json", "--since", since, "--state", state, *_place(profile, sets, local, efs)]
    if limit is not None:
        args += ["--limit", str(limit)]
    code, out, err = _process.run(args)
    if code != 0 or not out.strip():
        raise failure(err, code)
    return decode(JobList, _document(out, "jobs"))


def _follow(args: list[str]) -> Iterator[str]:
    done: list[Optional[tuple[int, str]]] = [None]
    yield from _process.lines(args, done)
    result = done[0]
    if result is not None and result[0] != 0:
        raise failure(result[1], result[0])


def advance(
    profile: Optional[str] = None,
    *,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    every: Optional[float] = None,
) -> list[Job]:
    """One pass over every live job of the profile's jobs folder: their
    instances asked once, statuses read, retry policies continued, queued
    jobs started, deadlines reaped. Returns every job that has ended and
    whose end was not acknowledged yet, as ``launch(wait=True)`` would report
    it; ``acknowledge`` each once delivered, or the next pass returns it
    again. ``every``: how often passes come, in seconds (recorded, so that
    ``status`` can tell when they stop)."""
    args = ["advance", "--json", *_place(profile, sets, local, efs)]
    if every is not None:
        args += ["--every", str(every)]
    code, out, err = _process.run(args)
    if code != 0:
        raise failure(err, code)
    return [decode(Job, _document(line, "advance")) for line in out.splitlines() if line.strip()]


def acknowledge(job: Job, *, sets: Sets = None, local: bool = False, efs: Optional[str] = None) -> None:
    """Says that the end of ``job`` (a ``Job`` that ``advance`` returned) was
    delivered: no later pass returns it. Idempotent."""
    args = ["advance", "--ack", f"{job.job}:{job.run}", *_place(job.profile, sets, local, efs)]
    code, _, err = _process.run(args)
    if code != 0:
        raise failure(err, code)


def terminate(job_id: str, *, sets: Sets = None, local: bool = False) -> list[str]:
    """Ends the job's instance on purpose (it is never retried, and reports
    ``terminated``): the ids of the instances terminated. ``sets`` are the
    ``--set`` values the job was launched with, which say where its claim
    is."""
    args = ["terminate", "--job", job_id, "--json", *set_args(sets), *(["--local"] if local else [])]
    code, out, err = _process.run(args)
    if not out.strip():
        raise failure(err, code)
    document = _document(out, "terminate")
    if not isinstance(document, dict):
        raise BootforgeError("bootforge printed no terminate document", code="environment")
    refused = document.get("refused") or []
    if code != 0 or refused:
        raise BootforgeError(f"bootforge could not terminate every instance of {job_id}: {refused}")
    return [str(i) for i in document.get("terminated", [])]


def compile(profile: Optional[str] = None, sets: Sets = None, format: str = "payload") -> bytes:
    """The profile's payload: the bytes EC2 receives (``payload``), or the
    readable ``cloud-config``, the ``mime`` multipart, or ``base64``."""
    if format not in FORMATS:
        raise UsageError(f"format={format!r} is not one of {', '.join(FORMATS)}", code="usage")
    args = ["compile", *([profile] if profile else []), *set_args(sets), "--format", format]
    code, out, err = _process.run(args)
    if code != 0:
        raise failure(err, code)
    return out
