"""Celery, done once: a short task that launches one GPU job, and a beat entry
that follows every job without holding a worker.

    from celery import Celery
    import bootforge.celery

    app = Celery("gpu_jobs", broker="redis://localhost:6379/0", backend="redis://localhost:6379/0")
    bootforge.celery.configure(app, "traffic-sign-gpu", on_end=app.signature("tasks.job_done"))
    run_gpu_job = bootforge.celery.gpu_task(app, "traffic-sign-gpu")

    @app.task(name="tasks.job_done")
    def job_done(report):            # idempotent on (report["job_id"], report["run"])
        ...

    run_gpu_job.delay("job-42")      # returns once the job is launched (or queued)

Run one worker with ``-B`` (or one ``celery beat`` beside the workers): every
``every`` seconds its beat entry makes one pass of ``bootforge advance`` over
every job, and sends ``on_end`` once per job that ended. A job's state lives
in its claim on the EFS and in EC2's tags, never in Celery: a restarted
worker, or another host, loses nothing.
"""

import dataclasses
import json
import logging
import math
from typing import Any, Optional

from celery import Celery, Task, signature

from . import _process
from .api import Sets, acknowledge, advance, launch, set_args
from .api import compile as compile_payload
from .documents import Job
from .errors import (
    BootforgeError,
    Interrupted,
    JobEnded,
    LaunchFailed,
    TryLater,
    UsageError,
    failure,
)

log = logging.getLogger("bootforge.celery")

#: The task that makes one pass of ``bootforge advance``.
ADVANCE_TASK = "bootforge.advance"

#: Added to the longest wait before Redis hands a waiting task (``wait=True``)
#: still running to another worker.
VISIBILITY_MARGIN_S = 30 * 60

#: Outcomes after which a job of a profile without a retry policy of its own
#: gets a new run (``reruns`` of them at most): what the infrastructure did,
#: not the pipeline.
RERUN_ON = ("interrupted", "launch_failed")


def longest_wait(profile: str, sets: Sets = None) -> float:
    """The longest a ``launch --wait`` of ``profile`` can take, in seconds:
    every attempt of its retry policy at its budget (timeout + grace)."""
    code, out, err = _process.run(["cost", profile, "--json", *set_args(sets)])
    if code != 0:
        raise failure(err, code)
    cost = json.loads(out)
    # budget_hours is seconds / 3600 as a float: back to whole seconds first.
    return round(float(cost["budget_hours"]) * 3600) * int(cost.get("attempts", 1))


def _raise_visibility(app: Celery, seconds: float) -> None:
    """Redis's ``visibility_timeout`` at least ``seconds`` (never lowered)."""
    options = dict(app.conf.broker_transport_options or {})
    options["visibility_timeout"] = max(math.ceil(seconds), int(options.get("visibility_timeout", 0)))
    app.conf.update(broker_transport_options=options, result_backend_transport_options=options)


def configure(
    app: Celery,
    profile: str,
    *,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    on_end: Any = None,
    every: float = 30,
    reruns: int = 2,
    visibility_timeout: Optional[float] = None,
) -> None:
    """Sets up ``app`` to follow every job of ``profile``'s jobs folder:

    - a beat entry that runs the task ``bootforge.advance`` every ``every``
      seconds: one pass of ``bootforge advance`` (one DescribeInstances for
      every job, statuses from the EFS, retry policies continued, queued jobs
      started, deadlines reaped). For each job that ended it sends ``on_end``
      (a signature; the job's report as a dict, ``result_of``'s, is its first
      argument) and then acknowledges the end. A crash in between sends it
      again from the next pass: ``on_end`` must be idempotent on (job, run).
      A job ``interrupted`` or ``launch_failed`` whose profile has no retry
      policy of its own gets a new run instead, ``reruns`` times at most.
    - late acks and reject-on-worker-lost, so that a launch task whose worker
      died is delivered again (the job's claim makes that safe).

    Celery's visibility timeout stays as it is: no task of bootforge's runs
    longer than a pass. (``gpu_task(wait=True)`` raises it, for its tasks of
    hours; ``visibility_timeout`` sets it.)
    """
    every = float(every)
    if every < 1:
        raise UsageError(f"every={every}: passes need an interval of a second or more", code="usage")
    # A wrong profile or --set is told here, not at every pass.
    compile_payload(profile, sets=sets, format="base64")
    if visibility_timeout is not None:
        _raise_visibility(app, visibility_timeout)
    app.conf.update(task_acks_late=True, task_reject_on_worker_lost=True)
    _advance_task(app)
    schedule = dict(app.conf.beat_schedule or {})
    schedule[f"{ADVANCE_TASK}:{profile}"] = {
        "task": ADVANCE_TASK,
        "schedule": every,
        "kwargs": {
            "profile": profile,
            "sets": dict(sets or {}),
            "local": local,
            "efs": efs,
            "on_end": None if on_end is None else dict(signature(on_end)),
            "every": every,
            "reruns": reruns,
        },
        # A pass that could not run in time is dropped: the next one does
        # its work.
        "options": {"expires": every},
    }
    app.conf.beat_schedule = schedule


def _advance_task(app: Celery) -> Task:
    """The task of one pass, registered once on ``app``."""
    if ADVANCE_TASK in app.tasks:
        return app.tasks[ADVANCE_TASK]

    @app.task(
        name=ADVANCE_TASK,
        ignore_result=True,
        # Periodic and idempotent: a lost pass is made again by the next.
        acks_late=False,
        soft_time_limit=150,
        time_limit=180,
    )
    def advance_jobs(
        profile: str,
        sets: Sets = None,
        local: bool = False,
        efs: Optional[str] = None,
        on_end: Optional[dict[str, Any]] = None,
        every: Optional[float] = None,
        reruns: int = 2,
    ) -> int:
        return follow(
            app, profile, sets=sets, local=local, efs=efs, on_end=on_end, every=every, reruns=reruns
        )

    return advance_jobs


def follow(
    app: Celery,
    profile: str,
    *,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    on_end: Any = None,
    every: Optional[float] = None,
    reruns: int = 2,
) -> int:
    """One pass (what the beat entry's task does): each job that ended is
    sent to ``on_end`` (or, interrupted without a retry policy of its own,
    run again) and then acknowledged. Returns how many ended."""
    try:
        ended = advance(profile, sets=sets, local=local, efs=efs, every=every)
    except UsageError:
        raise
    except BootforgeError as e:
        # The next pass tries again; nothing is lost meanwhile.
        log.warning("bootforge advance failed, the next pass tries again: %s", e)
        return 0
    callback = None if on_end is None else signature(on_end, app=app)
    for job in ended:
        if job.outcome in RERUN_ON and job.max_attempts == 1 and job.run <= reruns:
            log.info("job %s run %d ended %s: starting run %d", job.job, job.run, job.outcome, job.run + 1)
            launch(profile, job.job, wait=False, rerun=True, sets=sets, local=local, efs=efs)
        elif callback is not None:
            callback.delay(result_of(job))
        acknowledge(job, sets=sets, local=local, efs=efs)
    return len(ended)


def result_of(job: Job) -> dict[str, Any]:
    """A job's report as a JSON-friendly dict: what ``on_end`` receives (and a
    task with ``wait=True`` returns)."""
    status = job.wait.status if job.wait else None
    return {
        "job_id": job.job,
        "profile": job.profile,
        "run": job.run,
        "attempt": job.attempt,
        "instance": job.instance_id,
        "state": job.state,
        "outcome": job.outcome,
        "exit_code": job.exit_code if job.ended else None,
        "cost_usd": job.cost_usd,
        "attempts": [dataclasses.asdict(a) for a in job.attempts],
        "retry": job.retry,
        "status": None if status is None else dataclasses.asdict(status),
    }


def started_of(job: Job) -> dict[str, Any]:
    """What the launch task returns: the job's id, run and instance, and
    ``launched`` (or ``queued``, with its place; ``ended`` with the outcome
    when the run had ended already)."""
    state = "ended" if job.ended else "queued" if job.queued else "launched"
    return {
        "job_id": job.job,
        "run": job.run,
        "attempt": job.attempt,
        "instance": job.instance_id,
        "state": state,
        "place": job.queued.place if job.queued else None,
        "outcome": job.outcome,
    }


def run_job(
    task: Task,
    job_id: str,
    profile: str,
    *,
    rerun: bool = False,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    backoff_s: float = 60,
    wait: bool = False,
) -> dict[str, Any]:
    """What the task does, for a task of your own (``bind=True``): launches or
    attaches to the job and returns (``started_of``); with ``wait``, waits for
    its end (``result_of``). What is worth it is retried:

    - ``UsageError`` (a wrong profile, ``--set`` or job id): never retried.
    - ``TryLater`` (a quota): retried, backing off from 5 minutes.
    - ``BootforgeError`` (the network, AWS, the machine): retried, backing
      off from ``backoff_s``.
    - with ``wait``, ``Interrupted`` or ``LaunchFailed``: a new run
      (``rerun``), but only for a profile without a retry policy of its own;
      with one, bootforge has spent the attempts its cost guard priced.
    """
    retries = task.request.retries
    try:
        job = launch(profile, job_id, wait=wait, rerun=rerun, sets=sets, local=local, efs=efs)
    except UsageError:
        raise
    except TryLater as e:
        raise task.retry(exc=e, countdown=min(300 * 2**retries, 3600)) from e
    except (Interrupted, LaunchFailed) as e:
        if wait and e.job.max_attempts == 1:
            again = {**(task.request.kwargs or {}), "job_id": job_id, "rerun": True}
            raise task.retry(exc=e, args=(), kwargs=again, countdown=backoff_s) from e
        return result_of(e.job) if wait else started_of(e.job)
    except JobEnded as e:
        return result_of(e.job) if wait else started_of(e.job)
    except BootforgeError as e:
        raise task.retry(exc=e, countdown=min(backoff_s * 2**retries, 900)) from e
    return result_of(job) if wait else started_of(job)


def gpu_task(
    app: Celery,
    profile: str,
    *,
    name: str = "bootforge.run_gpu_job",
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    max_retries: int = 6,
    wait: bool = False,
) -> Task:
    """Registers on ``app`` the task ``name(job_id, rerun=False)`` that
    launches one job of ``profile`` and returns once its claim records the
    instance (or the job as queued): ``started_of``'s dict. The beat entry of
    ``configure`` follows the job and sends its ``on_end``.

    ``wait=True`` is the old way: the task waits for the job's end and
    returns ``result_of``'s dict, **holding a worker process for the whole
    job** (hours; two jobs at a time on a 2-process worker; a deploy waits
    for them). Registering it raises Redis's visibility timeout to the
    profile's longest wait, or Redis would deliver such a task twice.
    """
    if wait:
        _raise_visibility(app, longest_wait(profile, sets) + VISIBILITY_MARGIN_S)

    @app.task(bind=True, name=name, max_retries=max_retries, acks_late=True, reject_on_worker_lost=True)
    def run_gpu_job(self: Task, job_id: str, rerun: bool = False) -> dict[str, Any]:
        return run_job(self, job_id, profile, rerun=rerun, sets=sets, local=local, efs=efs, wait=wait)

    return run_gpu_job
