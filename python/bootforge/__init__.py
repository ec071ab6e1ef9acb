"""bootforge from Python: launch a job's GPU instance, follow it, read its
status and log, compile its payload.

    import bootforge

    job = bootforge.launch("traffic-sign-gpu", "job-42")   # waits for the end
    if job.outcome != "succeeded":
        print(bootforge.logs("job-42", "traffic-sign-gpu"))

Each function runs the bootforge binary installed with this package (or the
one ``BOOTFORGE`` names) and returns its JSON document as typed values.
"""

from ._find import find_bootforge
from .api import compile, launch, logs, status
from .documents import (
    Attempt,
    Environment,
    Failure,
    Finished,
    Gpu,
    Job,
    JobStatus,
    Notice,
    RunStatus,
    StateReason,
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
    "JobStatus",
    "LaunchFailed",
    "NoStatus",
    "Notice",
    "RunStatus",
    "StateReason",
    "TryLater",
    "UsageError",
    "compile",
    "find_bootforge",
    "launch",
    "logs",
    "status",
]
