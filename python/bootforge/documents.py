"""The JSON documents bootforge prints, as typed values.

Each dataclass mirrors one definition of ``bootforge schema DOCUMENT``
(``launch``, ``advance``, ``status``, ``run-status``, ``error``): the same
field names, types and nullability, which a test holds to the binary's
schema. Fields the binary may leave out have defaults; keys a newer binary
adds are ignored. A run's ``status.json`` is written by whichever runner the
instance booted with, an earlier one or a later one: every field of
``RunStatus`` but its ``instance_id`` may be missing, and is then ``None``.
"""

import dataclasses
from typing import Any, Optional, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Gpu:
    """The GPU ``nvidia-smi`` named (empty before the ``gpu`` phase ran)."""

    name: str
    driver: str


@dataclasses.dataclass(frozen=True)
class Notice:
    """A spot interruption notice, as the instance read it from IMDS."""

    action: str
    action_epoch: int
    noticed_at: str
    time: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Environment:
    """How the requirements' environment was had (``installed``, ``restored``
    from the EFS cache, ``rebuilt`` over a damaged entry, ``failed``), its
    size, and the seconds it took (the ``deps`` phase, to the millisecond)."""

    how: str
    files: Optional[int] = None
    bytes: Optional[int] = None
    seconds: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class RunStatus:
    """A run's ``status.json``, as the runner writes it on the EFS. Written by
    the runner of the payload the instance booted with, which may be earlier
    or later than this package: only ``instance_id`` is sure to be there."""

    instance_id: str
    schema_version: Optional[int] = None
    job_id: Optional[str] = None
    profile: Optional[str] = None
    boot_id: Optional[str] = None
    instance_type: Optional[str] = None
    outcome: Optional[str] = None
    exit_code: Optional[int] = None
    message: Optional[str] = None
    phases: Optional[dict[str, int]] = None
    started_at: Optional[str] = None
    final: Optional[bool] = None
    log: Optional[str] = None
    run: Optional[int] = None
    gpu: Optional[Gpu] = None
    notice: Optional[Notice] = None
    ended_at: Optional[str] = None
    attempt: Optional[int] = None
    market: Optional[str] = None
    price_per_hour: Optional[float] = None
    environment: Optional[Environment] = None


@dataclasses.dataclass(frozen=True)
class StateReason:
    """Why EC2 ended an instance."""

    code: str
    message: str


@dataclasses.dataclass(frozen=True)
class Attempt:
    """An attempt of the run that has ended: its market, price and cost."""

    attempt: int
    instance_id: str
    instance_type: str
    market: str
    launched_at: int
    ended_at: int
    outcome: str
    price_per_hour: Optional[float] = None
    state_reason: Optional[str] = None
    cost_usd: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Finished:
    """How a waited-for job ended."""

    state: str
    source: str
    outcome: str
    exit_code: int
    terminated_by_bootforge: bool
    status: Optional[RunStatus] = None
    state_reason: Optional[StateReason] = None
    ended_on_purpose: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Queued:
    """Why a job waits for its turn (its profile's ``max_running``, or the
    account's quota), and its place among its profile's queued jobs."""

    place: int
    since: str
    reason: str
    retry_at: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Job:
    """What ``launch`` did and, once the job has ended, how it ended (also
    what ``advance`` reports of each job that ended)."""

    launched: bool
    run: int
    attempt: int
    max_attempts: int
    state: str
    instance_type: str
    profile: str
    job: str
    payload_sha256: str
    no_capacity: list[str]
    claim: str
    claim_shared: bool
    attempts: list[Attempt]
    instance_id: Optional[str] = None
    queued: Optional[Queued] = None
    market: Optional[str] = None
    subnet: Optional[str] = None
    private_ip: Optional[str] = None
    price_per_hour: Optional[float] = None
    cost_at_timeout: Optional[float] = None
    deadline: Optional[str] = None
    client_token: Optional[str] = None
    wait: Optional[Finished] = None
    cost_usd: Optional[float] = None
    retry: Optional[str] = None

    @property
    def outcome(self) -> Optional[str]:
        """``succeeded``, ``failed``, ``timed_out``… once the job has ended."""
        return self.wait.outcome if self.wait else None

    @property
    def exit_code(self) -> int:
        """The job's exit code as ``launch`` gives it (0 while it runs)."""
        return self.wait.exit_code if self.wait else 0

    @property
    def status(self) -> Optional[RunStatus]:
        """The run's ``status.json``, when it wrote one."""
        return self.wait.status if self.wait else None

    @property
    def succeeded(self) -> bool:
        return self.outcome == "succeeded"

    @property
    def ended(self) -> bool:
        """Whether the job has ended (its outcome is known)."""
        return self.wait is not None


@dataclasses.dataclass(frozen=True)
class JobStatus:
    """A job now, as ``status`` tells it: its run and attempts, the instance
    and its state, the phase and how long it has lasted, the cost so far.

    ``phase`` is ``launched`` until the runner's log reaches the EFS (the
    instance boots and mounts it), then the runner's phase (``deps``,
    ``gpu``, ``run``, ``finalizing``), ``interrupted`` once a spot notice's
    interim status is written, ``ended`` once the status is final;
    ``queued`` while the job waits for its turn."""

    job: str
    profile: str
    job_dir: str
    run: int
    attempt: int
    max_attempts: int
    launched_at: str
    phase: str
    seconds: int
    earlier: list[Attempt]
    instance_id: Optional[str] = None
    instance_state: Optional[str] = None
    market: Optional[str] = None
    price_per_hour: Optional[float] = None
    phase_seconds: Optional[int] = None
    log_written_at: Optional[str] = None
    queued: Optional[Queued] = None
    note: Optional[str] = None
    cost_so_far: Optional[float] = None
    run_cost_so_far: Optional[float] = None
    outcome: Optional[str] = None
    exit_code: Optional[int] = None
    status: Optional[RunStatus] = None

    @property
    def ended(self) -> bool:
        return self.phase == "ended"


@dataclasses.dataclass(frozen=True)
class JobRow:
    """One job in ``jobs``' list: where it stands (``queued``, ``live``,
    ``ended``), its outcome as ``launch`` reports it, its attempts with their
    markets, and what it cost (summed over its attempts; so far while it
    runs) and what spot saved."""

    job: str
    profile: str
    run: int
    state: str
    started_at: str
    seconds: int
    attempts: list[Attempt]
    phase: Optional[str] = None
    outcome: Optional[str] = None
    exit_code: Optional[int] = None
    ended_at: Optional[str] = None
    instance_id: Optional[str] = None
    instance_type: Optional[str] = None
    market: Optional[str] = None
    cost_usd: Optional[float] = None
    spot_saving_usd: Optional[float] = None
    message: Optional[str] = None
    queued: Optional[Queued] = None


@dataclasses.dataclass(frozen=True)
class Totals:
    """Totals over every job of a window (not only the rows shown)."""

    jobs: int
    by_outcome: dict[str, int]
    gpu_hours: float
    cost_usd: float
    spot_saving_usd: float
    unpriced: int


@dataclasses.dataclass(frozen=True)
class JobList:
    """What ``jobs`` returns: the rows shown, newest first, how many jobs the
    window holds, their totals, and a note when nothing follows the jobs."""

    since: str
    rows: list[JobRow]
    matched: int
    totals: Totals
    note: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class LogChunk:
    """Whole lines of a job's log from a byte offset (``next`` is where the
    following chunk starts); ``ended`` once nothing more comes."""

    path: str
    offset: int
    next: int
    size: int
    text: str
    ended: bool


@dataclasses.dataclass(frozen=True)
class Failure:
    """A failed command's one line on stderr (``BOOTFORGE_ERRORS=json``)."""

    code: str
    message: str
    exit_code: int
    help: Optional[str] = None
    file: Optional[str] = None
    line: Optional[int] = None
    column: Optional[int] = None
    path: Optional[str] = None


def decode(cls: type[T], data: Any) -> T:
    """``data`` (parsed JSON) as ``cls``, checked against its annotations."""
    return _value(cls, data, cls.__name__)


def _value(kind: Any, data: Any, where: str) -> Any:
    origin = get_origin(kind)
    if origin is Union:
        options = [a for a in get_args(kind) if a is not type(None)]
        if data is None:
            return None
        return _value(options[0], data, where)
    if origin is list:
        (item,) = get_args(kind)
        _expect(isinstance(data, list), "a list", data, where)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        _, item = get_args(kind)
        _expect(isinstance(data, dict), "an object", data, where)
        return {k: _value(item, v, f"{where}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(kind):
        _expect(isinstance(data, dict), "an object", data, where)
        hints = get_type_hints(kind)
        given = {
            f.name: _value(hints[f.name], data[f.name], f"{where}.{f.name}")
            for f in dataclasses.fields(kind)
            if f.name in data
        }
        try:
            return kind(**given)
        except TypeError as e:
            raise ValueError(f"{where}: {e}") from None
    if kind is float:
        _expect(isinstance(data, (int, float)) and not isinstance(data, bool), "a number", data, where)
        return float(data)
    if kind is int:
        _expect(isinstance(data, int) and not isinstance(data, bool), "an integer", data, where)
        return data
    if kind in (str, bool):
        _expect(isinstance(data, kind), kind.__name__, data, where)
        return data
    return data


def _expect(ok: bool, what: str, data: Any, where: str) -> None:
    if not ok:
        raise ValueError(f"{where}: expected {what}, got {data!r}")
