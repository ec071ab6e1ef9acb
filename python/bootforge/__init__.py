"""bootforge from Python: launch a job's GPU instance, follow it, read its
status and log, compile its payload.

    import bootforge

    bootforge.launch("traffic-sign-gpu", "job-42", wait=False)   # launched (or queued)
    for job in bootforge.advance("traffic-sign-gpu"):  # one pass: the jobs that ended
        print(job.job, job.outcome, job.cost_usd)
        bootforge.acknowledge(job)

Each function runs the bootforge binary installed with this package (or the
one ``BOOTFORGE`` names) and returns its JSON document as typed values.
"""

from ._find import find_bootforge
from .api import acknowledge, advance, compile, jobs, launch, log_chunk, logs, status, terminate
from .documents import (
    Attempt,
    Environment,
    Failure,
    Finished,
    Gpu,
    Job,
    JobList,
    JobRow,
    JobStatus,
    LogChunk,
    Notice,
    Queued,
    RunStatus,
    StateReason,
    Totals,
)
from .errors import (
    BootforgeError,
    Interrupted,
    JobEnded,
    LaunchFailed,
    NoStatus,
    TryLater,
    UsageError,
)

__all__ = [
    "Attempt",
    "BootforgeError",
    "Environment",
    "Failure",
    "Finished",
    "Gpu",
    "Interrupted",
    "Job",
    "JobEnded",
    "JobList",
    "JobRow",
    "JobStatus",
    "LaunchFailed",
    "LogChunk",
    "NoStatus",
    "Notice",
    "Queued",
    "RunStatus",
    "StateReason",
    "Totals",
    "TryLater",
    "UsageError",
    "acknowledge",
    "advance",
    "compile",
    "find_bootforge",
    "jobs",
    "launch",
    "log_chunk",
    "logs",
    "status",
    "terminate",
]
