"""Celery, done once: the task that runs one GPU job per call, and the
settings a job of hours needs.

    from celery import Celery
    import bootforge.celery

    app = Celery("gpu_jobs", broker="redis://localhost:6379/0", backend="redis://localhost:6379/0")
    bootforge.celery.configure(app, "traffic-sign-gpu")
    run_gpu_job = bootforge.celery.gpu_task(app, "traffic-sign-gpu")

    run_gpu_job.delay("job-42")

A retried or redelivered task attaches to the run its first try started, or
reads its outcome: never a second GPU for one job.
"""

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any, Optional

from celery import Celery, Task

from . import _process
from .api import Sets, launch, set_args
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

#: Added to the longest wait before Redis hands a task still running to
#: another worker.
VISIBILITY_MARGIN_S = 30 * 60


def longest_wait(profile: str, sets: Sets = None) -> float:
    """The longest a ``launch --wait`` of ``profile`` can take, in seconds:
    every attempt of its retry policy at its budget (timeout + grace)."""
    code, out, err = _process.run(["cost", profile, "--json", *set_args(sets)])
    if code != 0:
        raise failure(err, code)
    cost = json.loads(out)
    # budget_hours is seconds / 3600 as a float: back to whole seconds first.
    return round(float(cost["budget_hours"]) * 3600) * int(cost.get("attempts", 1))


def configure(
    app: Celery, profile: str, *, sets: Sets = None, visibility_timeout: Optional[float] = None
) -> None:
    """Sets what a job of hours needs on ``app``:

    - late acks, and reject on a lost worker: a task is acknowledged once it
      has ended, so a worker that dies mid-wait (SIGKILL, an OOM kill, a host
      restart) leaves it to be delivered again; the new delivery attaches to
      the job's instance instead of launching another;
    - one task at a time per worker process (no prefetching of hours of work);
    - Redis's ``visibility_timeout``: Redis delivers an unacknowledged task
      again after it, *even while its first worker still waits*. With
      bootforge that is harmless (the second delivery attaches to the same
      instance and reports the same outcome), but it is a second waiter, so
      the default is the profile's longest wait (every attempt at its
      budget, from ``bootforge cost``) plus half an hour. A shorter one makes
      a dead worker's task come back sooner, at the price of duplicate waiters
      on long jobs.
    """
    if visibility_timeout is None:
        visibility_timeout = longest_wait(profile, sets) + VISIBILITY_MARGIN_S
    options = dict(app.conf.broker_transport_options or {})
    options["visibility_timeout"] = math.ceil(visibility_timeout)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options=options,
        result_backend_transport_options=options,
    )


def result_of(job: Job) -> dict[str, Any]:
    """A job's report as the task's JSON-friendly result."""
    status = job.wait.status if job.wait else None
    return {
        "job_id": job.job,
        "run": job.run,
        "attempt": job.attempt,
        "instance": job.instance_id,
        "outcome": job.outcome,
        "exit_code": job.exit_code,
        "cost_usd": job.cost_usd,
        "status": None if status is None else dataclasses.asdict(status),
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
) -> dict[str, Any]:
    """What the task does, for a task of your own (``bind=True``): launches or
    attaches to the job, waits for its end, and retries what is worth it.

    - ``UsageError`` (a wrong profile, ``--set`` or job id): never retried.
    - ``TryLater`` (a quota): retried, backing off from 5 minutes.
    - ``BootforgeError`` (the network, AWS, the machine): retried, backing
      off from ``backoff_s``.
    - ``Interrupted`` or ``LaunchFailed``: a new run (``rerun``), but only for
      a profile without a retry policy of its own; with one, bootforge has
      spent the attempts its cost guard priced, and the task reports.
    - Any other ending (succeeded, failed, timed out, no status) is the
      task's result.
    """
    retries = task.request.retries
    try:
        job = launch(profile, job_id, wait=True, rerun=rerun, sets=sets, local=local, efs=efs)
    except UsageError:
        raise
    except TryLater as e:
        raise task.retry(exc=e, countdown=min(300 * 2**retries, 3600)) from e
    except (Interrupted, LaunchFailed) as e:
        if e.job.max_attempts == 1:
            again: Mapping[str, Any] = {**(task.request.kwargs or {}), "job_id": job_id, "rerun": True}
            raise task.retry(exc=e, args=(), kwargs=again, countdown=backoff_s) from e
        return result_of(e.job)
    except JobEnded as e:
        return result_of(e.job)
    except BootforgeError as e:
        raise task.retry(exc=e, countdown=min(backoff_s * 2**retries, 900)) from e
    return result_of(job)


def gpu_task(
    app: Celery,
    profile: str,
    *,
    name: str = "bootforge.run_gpu_job",
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    max_retries: int = 6,
) -> Task:
    """Registers on ``app`` the task ``name(job_id, rerun=False)`` that runs
    one job of ``profile`` (see ``run_job``), and returns it."""

    @app.task(bind=True, name=name, max_retries=max_retries, acks_late=True, reject_on_worker_lost=True)
    def run_gpu_job(self: Task, job_id: str, rerun: bool = False) -> dict[str, Any]:
        return run_job(self, job_id, profile, rerun=rerun, sets=sets, local=local, efs=efs)

    return run_gpu_job
