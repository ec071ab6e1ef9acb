#!/usr/bin/python3
"""bootforge-status NAME=VALUE...: the run's status.json document, printed.

Every value is text but `exit_code` (a number), `run` (a number, or empty
when unknown), `phases` (the body of a JSON object: `"mount": 3, "deps":
41`) and `notice` (a JSON object, or empty for none). `gpu_name` and
`gpu_driver` make the `gpu` object. With `final=0` the status is written
ahead of the end (a spot notice: the outcome is known, the run not over)
and has no `ended_at`; otherwise `ended_at` is now.

`env_how`, `env_files`, `env_bytes` and `env_seconds` tell how the
requirements' environment was had, its size and the seconds it took
(`environment`, null without one).

`claim` names the launcher's claim on the job, when there is one: it gives
the attempt of the run this instance is, and the market and price of the
request that launched it.
"""
import json
import sys
import time

SCHEMA_VERSION = 2


def claimed(path, instance_id):
    """The attempt, market and price the launcher's claim gives this instance."""
    try:
        with open(path) as f:
            claim = json.load(f)
    except (OSError, ValueError):
        return {"attempt": None, "market": None, "price_per_hour": None}
    mine = claim.get("instance_id") == instance_id
    launched = [
        r
        for r in claim.get("requests", claim.get("attempts", []))
        if r.get("result") == "launched " + instance_id
    ]
    request = launched[0] if launched else {}
    market = None
    if request:
        market = "spot" if request.get("spot") else "on-demand"
    return {
        "attempt": claim.get("attempt", 1) if mine else None,
        "market": market,
        "price_per_hour": request.get("price_per_hour"),
    }


def environment(given):
    """How the requirements' environment was had (`installed`, `restored`
    from the cache, `rebuilt` over a damaged cache entry, or `failed`), with
    its files and bytes (None when not counted) and the seconds it took (to
    the millisecond); None when there were no requirements."""
    if not given.get("env_how"):
        return None

    def count(name):
        text = given.get(name, "").strip()
        return int(text) if text.isdigit() else None

    seconds = given.get("env_seconds", "")
    return {
        "how": given["env_how"],
        "files": count("env_files"),
        "bytes": count("env_bytes"),
        "seconds": float(seconds) if seconds else None,
    }


def main():
    given = dict(arg.split("=", 1) for arg in sys.argv[1:])
    status = {
        "schema_version": SCHEMA_VERSION,
        "job_id": given["job_id"],
        "profile": given["profile"],
        "run": int(given["run"]) if given.get("run", "").isdigit() else None,
        "instance_id": given["instance_id"],
        "boot_id": given["boot_id"],
        "instance_type": given["instance_type"],
        "outcome": given["outcome"],
        "exit_code": int(given["exit_code"]),
        "message": given["message"],
        "phases": json.loads("{" + given["phases"] + "}"),
        "gpu": {"name": given["gpu_name"], "driver": given["gpu_driver"]},
        "notice": json.loads(given["notice"]) if given.get("notice") else None,
        "started_at": given["started_at"],
        "ended_at": None,
        "final": given.get("final", "1") != "0",
        "log": given["log"],
        "environment": environment(given),
    }
    status.update(claimed(given.get("claim", ""), given["instance_id"]))
    if status["final"]:
        status["ended_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(status))


main()
