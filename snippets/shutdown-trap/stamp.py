#!/usr/bin/python3
"""bootforge-stamp LOG_FILE: timestamps what it reads on stdin.

Each line gets a UTC timestamp and is appended to LOG_FILE and copied to
the console. Whole chunks are written at once, so a pipeline printing fast
is not slowed down; the console is written without waiting (a slow serial
console misses lines, the log keeps them). It ends at end of input; a
SIGTERM (a shutdown stopping the runner's service) gives what is still
coming 5 more seconds, so the last lines are kept and the stop is not held.
"""
import os
import select
import signal
import sys
import time

DRAIN_SECONDS = 5
stop_at = None


def drain_then_stop(signum, frame):
    global stop_at
    stop_at = time.monotonic() + DRAIN_SECONDS


def open_for_append(path, flags):
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | flags, 0o644)
    except OSError:
        return None


def main():
    signal.signal(signal.SIGTERM, drain_then_stop)
    outputs = [
        open_for_append(sys.argv[1], os.O_CREAT),
        open_for_append("/proc/self/fd/1", os.O_NONBLOCK),
    ]
    outputs = [fd for fd in outputs if fd is not None]
    pending = b""
    while True:
        # Never blocked on a read for long: a SIGTERM is seen within a second.
        if stop_at is not None and time.monotonic() >= stop_at:
            data = b""
        elif select.select([0], [], [], 1.0)[0]:
            data = os.read(0, 65536)
        else:
            continue
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        if pending and not data:
            lines.append(pending)
        if lines:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ ", time.gmtime()).encode()
            text = stamp + (b"\n" + stamp).join(lines) + b"\n"
            for fd in outputs:
                try:
                    os.write(fd, text)
                except OSError:
                    pass
        if not data:
            break


main()
