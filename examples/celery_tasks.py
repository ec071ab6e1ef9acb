"""The Celery tasks of a host that runs GPU jobs through bootforge's package:
one short task launches a job, a beat entry follows every job, and
``job_done`` gets each job's report once it has ended.

Run one worker with beat: ``celery -A celery_tasks worker -B``.

Settings come from the environment:
  CELERY_BROKER_URL, CELERY_RESULT_BACKEND   the broker and the result backend
  BOOTFORGE_PROFILE                          the profile (traffic-sign-gpu)
  BOOTFORGE_SETS                             --set values for every job, as a JSON object
  BOOTFORGE_EVERY                            seconds between two passes over the jobs (30)
  BOOTFORGE_LOCAL_EFS                        a folder: rehearse every job in a local
                                             container with it as the EFS, no AWS needed
  JOB_DONE_LOG                               a file where job_done appends each report
                                             it receives, one JSON line each
"""

import json
import logging
import os
from typing import Any

from celery import Celery

import bootforge.celery

app = Celery(
    "gpu_jobs",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/0"),
)
PROFILE = os.environ.get("BOOTFORGE_PROFILE", "traffic-sign-gpu")
SETS = json.loads(os.environ.get("BOOTFORGE_SETS", "{}"))
LOCAL_EFS = os.environ.get("BOOTFORGE_LOCAL_EFS")
log = logging.getLogger(__name__)


@app.task(name="gpu_jobs.job_done")
def job_done(report: dict[str, Any]) -> None:
    """A job has ended: ``report`` is its outcome, attempts and cost. Called at
    least once per (job, run), so whatever it does must be idempotent on
    them (here: a log line, and a line in JOB_DONE_LOG when set)."""
    log.info("job %s run %s: %s, $%s", report["job_id"], report["run"], report["outcome"], report["cost_usd"])
    deliveries = os.environ.get("JOB_DONE_LOG")
    if deliveries:
        with open(deliveries, "a") as f:
            f.write(json.dumps(report) + "\n")


bootforge.celery.configure(
    app,
    PROFILE,
    sets=SETS,
    local=bool(LOCAL_EFS),
    efs=LOCAL_EFS,
    on_end=job_done.s(),
    every=float(os.environ.get("BOOTFORGE_EVERY", "30")),
)
run_gpu_job = bootforge.celery.gpu_task(app, PROFILE, sets=SETS, local=bool(LOCAL_EFS), efs=LOCAL_EFS)
