"""The Python API against the real binary: offline (compile, usage errors),
against the EC2 double (every exception, a waiter that dies with its
caller), and in local rehearsals (a failed job as an outcome, status and
logs during and after a run)."""

import gzip
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import bootforge

from .conftest import ROOT, Ec2, Local

pytestmark = pytest.mark.usefixtures("binary")

PROFILE = "traffic-sign-gpu"


def test_compile_gives_the_golden_bytes() -> None:
    golden = (ROOT / "golden/traffic-sign-gpu.yaml").read_bytes()
    readable = bootforge.compile(PROFILE, format="cloud-config")
    assert readable.startswith(b"#cloud-config")
    assert readable == golden
    payload = bootforge.compile(PROFILE)
    assert payload == readable or gzip.decompress(payload) == readable


def test_compile_takes_sets() -> None:
    text = bootforge.compile(PROFILE, sets={"job.timeout": "90m"}, format="cloud-config")
    assert text != bootforge.compile(PROFILE, format="cloud-config")


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: bootforge.compile("no-such-profile"), "unknown-profile"),
        (lambda: bootforge.compile(PROFILE, sets={"job.timeout": "forever"}), "bad-set"),
        (lambda: bootforge.compile(PROFILE, sets={"job.no_such_key": "1"}), "bad-set"),
        (lambda: bootforge.compile(PROFILE, format="pdf"), "usage"),
        (lambda: bootforge.launch(PROFILE, "bad id!", wait=False), "bad-set"),
        (lambda: bootforge.launch(PROFILE, "job-1", efs="/srv/efs"), "usage"),
        (lambda: bootforge.status("job-1", "no-such-profile"), "unknown-profile"),
    ],
)
def test_usage_errors_are_told_apart_by_their_code(call: Callable[[], object], code: str) -> None:
    with pytest.raises(bootforge.UsageError) as caught:
        call()
    assert caught.value.code == code, caught.value
    assert caught.value.message


def test_a_binary_that_is_not_there_is_an_environment_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BOOTFORGE", str(tmp_path / "bootforge"))
    with pytest.raises(bootforge.BootforgeError) as caught:
        bootforge.compile(PROFILE)
    assert not isinstance(caught.value, bootforge.UsageError)
    assert caught.value.code == "environment"


def sets_of(ec2: Ec2, **more: str) -> dict[str, str]:
    return {**ec2.sets, **more}


def test_an_ec2_that_does_not_answer_is_a_bootforge_error(ec2: Ec2, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(bootforge.BootforgeError) as caught:
        bootforge.launch(PROFILE, "unreachable-1", sets=ec2.sets)
    assert type(caught.value) is bootforge.BootforgeError
    assert caught.value.exit_code == 2
    assert caught.value.code in ("aws", "environment")


def test_a_quota_queues_the_job(ec2: Ec2, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", ec2.quota_endpoint)
    job = bootforge.launch(PROFILE, "quota-1", sets=ec2.sets, wait=False)
    assert (job.state, job.instance_id, job.ended) == ("queued", None, False)
    assert job.queued is not None and job.queued.place == 1
    assert "VcpuLimitExceeded" in job.queued.reason and job.queued.retry_at
    now = bootforge.status("quota-1", PROFILE, sets=ec2.sets)
    assert now.phase == "queued" and now.queued is not None


@pytest.mark.parametrize(
    ("reason", "kind", "outcome", "code"),
    [
        ("Server.InsufficientInstanceCapacity", bootforge.LaunchFailed, "launch_failed", 5),
        ("Server.SpotInstanceTermination", bootforge.Interrupted, "interrupted", 4),
        ("Client.InstanceInitiatedShutdown", bootforge.NoStatus, "no_status", 3),
    ],
)
def test_an_instance_that_ends_without_the_jobs_outcome_raises(
    ec2: Ec2, reason: str, kind: type, outcome: str, code: int
) -> None:
    job_id = f"ends-{code}"
    started = bootforge.launch(PROFILE, job_id, wait=False, sets=ec2.sets)
    assert started.launched and started.outcome is None and started.exit_code == 0
    now = bootforge.status(job_id, PROFILE, sets=ec2.sets)
    assert (now.instance_id, now.phase, now.outcome) == (started.instance_id, "launched", None)
    ec2.end(started.instance_id, reason, "ended by the test")
    with pytest.raises(kind) as caught:
        bootforge.launch(PROFILE, job_id, sets=ec2.sets)
    job = caught.value.job
    assert isinstance(caught.value, bootforge.JobEnded)
    assert (job.instance_id, job.outcome, job.exit_code) == (started.instance_id, outcome, code)
    assert job.wait is not None and job.wait.state_reason is not None
    assert job.wait.state_reason.code == reason
    assert ec2.instances_of(job_id) == [started.instance_id], "one job, one instance"


def test_the_waiter_dies_with_its_caller_and_a_later_call_attaches(ec2: Ec2, tmp_path: Path) -> None:
    job_id = "orphan-1"
    caller = textwrap.dedent(
        f"""
        import bootforge, json
        bootforge.launch({PROFILE!r}, {job_id!r}, sets=json.loads({json_sets(ec2)!r}))
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", caller], env=dict(os.environ))
    waiter = wait_for_child(parent.pid, "bootforge")
    claim = ec2.host_log_dir / job_id / "claim.json"
    assert wait_for_claim(claim), (
        f"no instance launched within 60 s: {claim.read_text() if claim.exists() else 'no claim'}"
    )
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while alive(waiter) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(waiter), "the waiter outlived its caller"
    again = bootforge.launch(PROFILE, job_id, wait=False, sets=ec2.sets)
    assert not again.launched, f"a later call attaches to the instance: {again}"
    assert ec2.instances_of(job_id) == [again.instance_id], f"{ec2.instances_of(job_id)} against {again}"


def json_sets(ec2: Ec2) -> str:
    import json

    return json.dumps(ec2.sets)


def wait_for_child(pid: int, name: str) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(pid), "-x", name], capture_output=True, text=True)
        if out.stdout.split():
            return int(out.stdout.split()[0])
        time.sleep(0.05)
    raise AssertionError(f"process {pid} started no {name}")


def wait_for_claim(path: Path) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and "launched i-" in path.read_text():
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_failed_job_is_an_outcome_not_an_exception(local: Local) -> None:
    job = bootforge.launch(PROFILE, "fail-py", local=True, efs=str(local.efs))
    assert (job.outcome, job.exit_code, job.succeeded) == ("failed", 1, False)
    assert job.status is not None and job.status.exit_code == 3
    assert job.status.instance_id == job.instance_id
    assert "failing on purpose" in bootforge.logs("fail-py", PROFILE, local=True, efs=str(local.efs))
    after = bootforge.status("fail-py", PROFILE, local=True, efs=str(local.efs))
    assert (after.phase, after.outcome, after.exit_code, after.ended) == ("ended", "failed", 3, True)
    assert local.instances_of("fail-py") == 1


def test_status_and_logs_during_and_after_a_run(local: Local) -> None:
    efs = str(local.efs)
    started = bootforge.launch(PROFILE, "slow-py", wait=False, local=True, efs=efs)
    assert started.launched and started.outcome is None
    during = bootforge.status("slow-py", PROFILE, local=True, efs=efs)
    assert (during.instance_id, during.outcome, during.ended) == (started.instance_id, None, False)
    assert during.phase == "launched"
    seen: list[str] = []
    for line in bootforge.logs("slow-py", PROFILE, follow=True, local=True, efs=efs):
        seen.append(line)
        if "step 1 of 8" in line:
            while_running = bootforge.status("slow-py", PROFILE, local=True, efs=efs)
            assert not while_running.ended and while_running.outcome is None
            assert while_running.phase == "run", while_running
            assert while_running.phase_seconds is not None and while_running.log_written_at
    text = "".join(seen)
    assert "step 8 of 8" in text, text
    done = bootforge.launch(PROFILE, "slow-py", local=True, efs=efs)
    assert (done.launched, done.instance_id, done.outcome) == (False, started.instance_id, "succeeded")
    after = bootforge.status("slow-py", PROFILE, local=True, efs=efs)
    assert (after.outcome, after.ended) == ("succeeded", True)
    assert bootforge.logs("slow-py", PROFILE, local=True, efs=efs).startswith(text[:200])
    assert local.instances_of("slow-py") == 1


def _write_status(ec2: Ec2, job_id: str, fixture: str, instance: str) -> None:
    text = (ROOT / "tests/fixtures/status" / fixture).read_text()
    (ec2.host_log_dir / job_id / "status.json").write_text(
        text.replace("INSTANCE", instance).replace("JOB", job_id)
    )


def test_a_shorter_status_and_one_of_the_previous_version_decode(ec2: Ec2) -> None:
    # An instance booted from an older payload wrote a shorter status.json.
    started = bootforge.launch(PROFILE, "short-1", wait=False, sets=ec2.sets)
    assert started.instance_id is not None
    _write_status(ec2, "short-1", "short.json", started.instance_id)
    ec2.end(started.instance_id, "Client.InstanceInitiatedShutdown")
    (job,) = [j for j in bootforge.advance(PROFILE, sets=ec2.sets) if j.job == "short-1"]
    assert job.outcome == "succeeded" and job.status is not None
    assert (job.status.instance_id, job.status.outcome, job.status.exit_code) == (
        started.instance_id,
        "succeeded",
        0,
    )
    assert job.status.phases is None and job.status.schema_version is None
    bootforge.acknowledge(job, sets=ec2.sets)
    assert [j for j in bootforge.advance(PROFILE, sets=ec2.sets) if j.job == "short-1"] == []
    # One written by the runner before status.json had a version.
    started = bootforge.launch(PROFILE, "previous-1", wait=False, sets=ec2.sets)
    assert started.instance_id is not None
    _write_status(ec2, "previous-1", "schema-1.json", started.instance_id)
    ec2.end(started.instance_id, "Client.InstanceInitiatedShutdown")
    job = bootforge.launch(PROFILE, "previous-1", sets=ec2.sets)
    assert (job.outcome, job.exit_code) == ("failed", 1)
    assert job.status is not None and job.status.environment is not None
    assert job.status.environment.files == 9671 and job.status.schema_version is None
    # Delivered to the caller that waited: no pass reports it again.
    assert [j for j in bootforge.advance(PROFILE, sets=ec2.sets) if j.job == "previous-1"] == []


def test_advance_reports_an_end_once_acknowledged_and_terminate_ends_on_purpose(ec2: Ec2) -> None:
    started = bootforge.launch(PROFILE, "ended-on-purpose", wait=False, sets=ec2.sets)
    assert started.launched and started.instance_id is not None
    assert bootforge.terminate("ended-on-purpose", sets=ec2.sets) == [started.instance_id]
    found: list[bootforge.Job] = []
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        found = [j for j in bootforge.advance(PROFILE, sets=ec2.sets) if j.job == "ended-on-purpose"]
        time.sleep(0.2)
    (job,) = found
    assert (job.outcome, job.exit_code, job.run) == ("terminated", 1, 1)
    assert job.wait is not None and job.wait.ended_on_purpose
    again = [j for j in bootforge.advance(PROFILE, sets=ec2.sets) if j.job == "ended-on-purpose"]
    assert [j.wait for j in again] == [job.wait], "reported until acknowledged, the same end"
    bootforge.acknowledge(job, sets=ec2.sets)
    bootforge.acknowledge(job, sets=ec2.sets)
    assert [j for j in bootforge.advance(PROFILE, sets=ec2.sets) if j.job == "ended-on-purpose"] == []
    assert ec2.instances_of("ended-on-purpose") == [started.instance_id]
