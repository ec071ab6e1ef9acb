"""The Celery task that runs one GPU job per call, through bootforge's package.

Settings come from the environment:
  CELERY_BROKER_URL, CELERY_RESULT_BACKEND   the broker and the result backend
  BOOTFORGE_PROFILE                          the profile (traffic-sign-gpu)
  BOOTFORGE_LOCAL_EFS                        a folder: rehearse every job in a local
                                             container with it as the EFS, no AWS needed
  CELERY_VISIBILITY_TIMEOUT                  seconds; by default the profile's longest
                                             wait plus half an hour (see configure)
"""

import os

from celery import Celery

import bootforge.celery

app = Celery(
    "gpu_jobs",
    broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://localhost:6379/0"),
)
PROFILE = os.environ.get("BOOTFORGE_PROFILE", "traffic-sign-gpu")
LOCAL_EFS = os.environ.get("BOOTFORGE_LOCAL_EFS")
VISIBILITY = os.environ.get("CELERY_VISIBILITY_TIMEOUT")

bootforge.celery.configure(app, PROFILE, visibility_timeout=float(VISIBILITY) if VISIBILITY else None)
run_gpu_job = bootforge.celery.gpu_task(app, PROFILE, local=bool(LOCAL_EFS), efs=LOCAL_EFS)
