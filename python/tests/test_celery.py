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


def test_configure_sets_what_a_job_of_hours_needs() -> None:
    made = app()
    bootforge.celery.configure(made, "traffic-sign-gpu")
    assert made.conf.task_acks_late and made.conf.task_reject_on_worker_lost
    assert made.conf.worker_prefetch_multiplier == 1
    # 120 min of timeout and 10 of grace, one attempt, and half an hour more.
    assert made.conf.broker_transport_options["visibility_timeout"] == 130 * 60 + 30 * 60


def test_the_visibility_timeout_covers_every_attempt_of_a_retry_policy() -> None:
    made = app()
    bootforge.celery.configure(made, "traffic-sign-gpu-spot")
    # Three attempts of 130 min each.
    assert made.conf.broker_transport_options["visibility_timeout"] == 3 * 130 * 60 + 30 * 60
    given = app()
    bootforge.celery.configure(given, "traffic-sign-gpu", visibility_timeout=5)
    assert given.conf.broker_transport_options["visibility_timeout"] == 5


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
