"""What the caller should do, as exceptions: the one place where bootforge's
exit codes and failure documents become Python.

A job that ran and failed is an outcome (``Job.outcome``), never an
exception. The exceptions are the infrastructure's answers.
"""

import json
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .documents import Job

#: The failure codes of the machine's or AWS's state, worth retrying. Every
#: other code is the caller's input (a profile, a ``--set``, a job id).
ENVIRONMENT_CODES = frozenset({"environment", "aws", "io"})
QUOTA_EXIT = 75


class BootforgeError(Exception):
    """bootforge could not do it: the machine, the network or AWS (exit code
    2). Retrying later may help; the job's claim keeps its run."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "environment",
        help: Optional[str] = None,
        exit_code: int = 2,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.help = help
        self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.message} (help: {self.help})" if self.help else self.message


class UsageError(BootforgeError):
    """The call itself is wrong (an unknown profile, a bad ``--set``, a bad job
    id, a profile over its cost ceiling): fix it; never retry it."""


class TryLater(BootforgeError):
    """The account's quota is reached (exit code 75): retry later, backing off."""


class JobEnded(BootforgeError):
    """The job's instance ended without the job's own outcome; ``job`` is
    bootforge's report."""

    def __init__(self, message: str, job: "Job", *, code: str, exit_code: int) -> None:
        super().__init__(message, code=code, exit_code=exit_code)
        self.job = job


class NoStatus(JobEnded):
    """The instance ended and never wrote a status (exit code 3): its console
    says why."""


class Interrupted(JobEnded):
    """The instance was shut down while the job ran (exit code 4): a spot
    interruption, a stop. Under a retry policy of the profile's own, its
    attempts are spent."""


class LaunchFailed(JobEnded):
    """The instance failed to start (exit code 5)."""


def failure(stderr: str, exit_code: int) -> BootforgeError:
    """The exception for a command that failed with ``exit_code`` before
    printing a document: from its last JSON line on stderr
    (``BOOTFORGE_ERRORS=json``)."""
    document: dict[str, Any] = {}
    for line in reversed(stderr.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "code" in parsed:
                document = parsed
                break
    code = str(document.get("code", "environment"))
    message = str(document.get("message") or _last_words(stderr, exit_code))
    help = document.get("help")
    kind = BootforgeError
    if exit_code == QUOTA_EXIT or code == "quota":
        kind = TryLater
    elif document and code not in ENVIRONMENT_CODES:
        kind = UsageError
    return kind(message, code=code, help=help, exit_code=exit_code)


def ended(job: "Job") -> Optional[JobEnded]:
    """The exception for a job whose instance ended without its own outcome."""
    kinds = {3: NoStatus, 4: Interrupted, 5: LaunchFailed}
    kind = kinds.get(job.exit_code)
    if kind is None:
        return None
    message = f"job {job.job} (run {job.run}, {job.instance_id}): {job.outcome}"
    return kind(message, job, code=job.outcome, exit_code=job.exit_code)


def _last_words(stderr: str, exit_code: int) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines:
        return lines[-1].strip()
    if exit_code < 0:
        return f"bootforge was ended by signal {-exit_code}"
    return f"bootforge exited with code {exit_code} and said nothing"
