"""The Celery task that runs one GPU job per call through bootforge.

Settings come from the environment:
  CELERY_BROKER_URL, CELERY_RESULT_BACKEND   the broker and the result backend
  BOOTFORGE_PROFILE                          the profile (traffic-sign-gpu)
  BOOTFORGE_ARGS                             more arguments for `bootforge launch`;
                                             "--local --efs /srv/efs" rehearses every
                                             job in a local container, no AWS needed
"""
import json
import os
import shlex
import subprocess

from celery import Celery

app = Celery(
    "gpu_jobs",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/0"),
)
PROFILE = os.environ.get("BOOTFORGE_PROFILE", "traffic-sign-gpu")
EXTRA = shlex.split(os.environ.get("BOOTFORGE_ARGS", ""))


@app.task(bind=True, max_retries=6)
def run_gpu_job(self, job_id, rerun=False):
    # A retried or redelivered task attaches to the run its first try
    # started, or reads its outcome: never a second GPU for one job.
    args = ["bootforge", "launch", PROFILE, "--set", f"job_id={job_id}",
            "--json", "--wait", *EXTRA]
    proc = subprocess.run(args + (["--rerun"] if rerun else []),
                          capture_output=True, text=True)
    if proc.returncode == 2:          # usage, environment or AWS error
        raise self.retry(exc=RuntimeError(proc.stderr), countdown=60)
    if proc.returncode == 75:         # quota: try later, backing off
        raise self.retry(exc=RuntimeError(proc.stderr),
                         countdown=300 * 2 ** self.request.retries)
    result = json.loads(proc.stdout)
    # Interrupted, or failed to launch: a profile with a retry policy of its
    # own has spent it (its cost guard priced those attempts, no more);
    # without one, a new run.
    if proc.returncode in (4, 5) and result["max_attempts"] == 1:
        raise self.retry(kwargs={"job_id": job_id, "rerun": True}, countdown=60)
    return {"instance": result["instance_id"], "run": result["run"],
            "outcome": result["wait"]["outcome"],      # succeeded, failed, timed_out, …
            "status": result["wait"]["status"]}
