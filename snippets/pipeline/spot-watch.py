#!/usr/bin/python3
"""bootforge-spot-watch NOTICE_FILE RUNNER_PID [IMDS_URL]: waits for a spot
interruption notice while the pipeline runs.

Every 5 seconds it asks the instance metadata service (IMDSv2: a session
token, then `spot/instance-action`, which answers 404 until EC2 decides to
reclaim the instance, about two minutes ahead). On a notice it writes it to
NOTICE_FILE (JSON: action, time, action_epoch, noticed_at), atomically,
signals the runner (SIGUSR1) and ends. A rebalance recommendation is only
logged. Every call is bounded; a metadata service that does not answer is
asked again at the next turn, never waited for. IMDS_URL is for tests.
"""
import calendar
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

POLL_SECONDS = 5
CALL_SECONDS = 2
TOKEN_TTL = 21600


def log(message):
    print("bootforge[spot-watch] " + message, flush=True)


def utc(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def epoch_of(text):
    """An IMDS time (`2026-12-01T12:00:00Z`) as seconds since the epoch."""
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


class Imds:
    """IMDSv2: every request carries a session token, renewed before it
    expires or when the service refuses it."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        # Link-local: never through a proxy.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.token = None
        self.renew_at = 0.0

    def _token(self):
        if self.token is None or time.monotonic() >= self.renew_at:
            request = urllib.request.Request(
                self.url + "/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
            )
            with self.opener.open(request, timeout=CALL_SECONDS) as answer:
                self.token = answer.read().decode()
            self.renew_at = time.monotonic() + TOKEN_TTL / 2
        return self.token

    def get(self, path):
        """The document at meta-data/PATH, or None while there is none (404)."""
        request = urllib.request.Request(
            self.url + "/latest/meta-data/" + path,
            headers={"X-aws-ec2-metadata-token": self._token()},
        )
        try:
            with self.opener.open(request, timeout=CALL_SECONDS) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            if error.code == 401:
                self.token = None
            raise


def notice_of(text):
    """The notice as the runner and the status record it."""
    try:
        notice = json.loads(text)
    except ValueError:
        notice = {}
    if not isinstance(notice, dict):
        notice = {}
    now = time.time()
    action_at = epoch_of(notice.get("time"))
    return {
        "action": str(notice.get("action", "unknown")),
        "time": notice.get("time"),
        # A notice whose time cannot be read gives the usual two minutes.
        "action_epoch": int(action_at if action_at is not None else now + 120),
        "noticed_at": utc(now),
    }


def write(path, document):
    temporary = path + ".tmp"
    with open(temporary, "w") as out:
        json.dump(document, out)
    os.replace(temporary, path)


def main():
    notice_file, runner = sys.argv[1], int(sys.argv[2])
    imds = Imds(sys.argv[3] if len(sys.argv) > 3 else "http://169.254.169.254")
    rebalance_seen = False
    failing = False
    while True:
        try:
            action = imds.get("spot/instance-action")
            if action is not None:
                notice = notice_of(action)
                write(notice_file, notice)
                log("spot interruption notice: {} at {}".format(notice["action"], notice["time"]))
                os.kill(runner, signal.SIGUSR1)
                return
            if not rebalance_seen:
                rebalance = imds.get("events/recommendations/rebalance")
                if rebalance is not None:
                    rebalance_seen = True
                    log("rebalance recommendation (an interruption may follow): " + rebalance.strip())
            if failing:
                failing = False
                log("the metadata service answers again")
        except (OSError, ValueError) as error:
            if not failing:
                failing = True
                log("warning: the metadata service does not answer ({}); still watching".format(error))
        time.sleep(POLL_SECONDS)


main()
