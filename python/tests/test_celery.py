"""The package's Celery settings and retry rules, on a real Celery app (its
eager mode runs the task here, against the real binary). The end-to-end runs,
with Redis and prefork workers, are in tests/integration/local.rs."""

import pytest

celery = pytest.importorskip("celery")

import bootforge  # noqa: E402
import bootforge.celery  # noqa: E402

pytestmark = pytest.mark.usefixtures("binary")


def app() -> "celery.Celery":
    made = celery.Celery("tests", broker="memory://", backend="cache+memory://")
    made.conf.task_always_eager = True
    return made


def test_configure_adds_one_beat_entry_and_keeps_celerys_visibility_timeout() -> None:
    made = app()
    done = made.signature("tests.done")
    bootforge.celery.configure(made, "traffic-sign-gpu", on_end=done, every=5)
    assert made.conf.task_acks_late and made.conf.task_reject_on_worker_lost
    assert "visibility_timeout" not in (made.conf.broker_transport_options or {})
    (entry,) = made.conf.beat_schedule.values()
    assert entry["task"] == bootforge.celery.ADVANCE_TASK and entry["schedule"] == 5
    assert entry["kwargs"]["profile"] == "traffic-sign-gpu"
    assert entry["kwargs"]["on_end"]["task"] == "tests.done"
    assert entry["options"]["expires"] == 5
    assert bootforge.celery.ADVANCE_TASK in made.tasks
    # The task carries no hours of work: no task of bootforge's holds a worker.
    bootforge.celery.gpu_task(made, "traffic-sign-gpu")
    assert "visibility_timeout" not in (made.conf.broker_transport_options or {})


def test_a_task_that_waits_raises_the_visibility_timeout_over_every_attempt() -> None:
    made = app()
    bootforge.celery.configure(made, "traffic-sign-gpu")
    bootforge.celery.gpu_task(made, "traffic-sign-gpu", wait=True)
    # 120 min of timeout and 10 of grace, one attempt, and half an hour more.
    assert made.conf.broker_transport_options["visibility_timeout"] == 130 * 60 + 30 * 60
    spot = app()
    bootforge.celery.gpu_task(spot, "traffic-sign-gpu-spot", name="spot", wait=True)
    # Three attempts of 130 min each.
    assert spot.conf.broker_transport_options["visibility_timeout"] == 3 * 130 * 60 + 30 * 60
    # configure never lowers it.
    bootforge.celery.configure(spot, "traffic-sign-gpu-spot", visibility_timeout=5)
    assert spot.conf.broker_transport_options["visibility_timeout"] == 3 * 130 * 60 + 30 * 60


def test_a_usage_error_is_never_retried() -> None:
    made = app()
    task = bootforge.celery.gpu_task(made, "traffic-sign-gpu")
    result = task.apply(args=("bad id!",))
    assert result.state == "FAILURE"
    assert isinstance(result.result, bootforge.UsageError)
    assert result.result.code == "bad-set"


def test_an_unknown_profile_fails_at_configure_time() -> None:
    with pytest.raises(bootforge.UsageError):
        bootforge.celery.configure(app(), "no-such-profile")


def test_a_pass_that_fails_waits_for_the_next_and_a_wrong_one_is_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = app()
    # EC2 does not answer: the pass says so in the log, the next one tries again.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert bootforge.celery.follow(made, "traffic-sign-gpu", sets={"job.host_log_dir": "/nonexistent"}) == 0
    with pytest.raises(bootforge.UsageError):
        bootforge.celery.follow(made, "traffic-sign-gpu", sets={"job.timeout": "forever"})
