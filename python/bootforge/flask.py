"""The jobs of a profile in the team's own Flask app: a page of every job
(outcomes, attempts, money spent, spot's saving), a page per job with its
log live over Server-Sent Events, and JSON endpoints. Install the extra
``flask`` (or use the app's own Flask).

    import bootforge.flask

    def authorize(request, action, job_id):   # "view" or "terminate"
        return current_user.is_authenticated and (action == "view" or current_user.is_admin)

    app.register_blueprint(
        bootforge.flask.blueprint("traffic-sign-gpu", authorize=authorize), url_prefix="/gpu-jobs"
    )

Every page is rendered on the server from the documents the ``bootforge``
binary prints (``jobs``, ``status``, ``logs --json``): it never reads the EFS
on its own. Read-only by default: ``authorize`` is asked for ``"view"``
(jobs it refuses are hidden, their pages 403) and ``"terminate"`` (without
it there is no button, and the POST gets 403). Terminating needs the app's
``secret_key``: the form carries a CSRF token kept in the session.

A log stream holds a web worker for about a minute at most: each response
ends by then, and the browser reconnects from the last byte it got
(``Last-Event-ID``). A long log opens at its tail.
"""

import dataclasses
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from . import api
from .api import Sets
from .errors import BootforgeError, UsageError

#: ``authorize(request, action, job_id)``: whether the request may do
#: ``action`` (``"view"`` or ``"terminate"``) on the job.
Authorize = Callable[[Any, str, str], bool]

#: A job id, as the command line takes it.
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: A stream's response ends after this many seconds; the browser reconnects.
STREAM_SECONDS = 55.0
#: How often a stream looks for new lines, in seconds.
STREAM_EVERY = 1.0
#: A log opens at its last bytes, not whole.
TAIL_BYTES = 64 * 1024
#: While a job is live, the jobs page refreshes this often (seconds).
REFRESH_SECONDS = 10
STATES = ("all", "live", "ended")
CSRF_KEY = "bootforge_csrf"


def _read_only(request: Any, action: str, job_id: str) -> bool:
    return action == "view"


def blueprint(
    profile: str,
    *,
    sets: Sets = None,
    local: bool = False,
    efs: Optional[str] = None,
    authorize: Optional[Authorize] = None,
    name: str = "bootforge",
) -> Blueprint:
    """The jobs of ``profile`` (with ``sets``; ``local`` and ``efs`` for
    rehearsals) as a Blueprint to register under a ``url_prefix`` of the
    app's choosing. ``authorize`` decides who sees and who may terminate
    what (default: everyone sees, nobody terminates)."""
    allowed = authorize or _read_only
    place: dict[str, Any] = {"sets": sets, "local": local, "efs": efs}
    bp = Blueprint(name, __name__, template_folder="templates", static_folder="static")

    def may(action: str, job_id: str) -> bool:
        return bool(allowed(request, action, job_id))

    def job_or_404(job_id: str) -> str:
        if not JOB_ID.match(job_id):
            abort(404)
        if not may("view", job_id):
            abort(403)
        return job_id

    def csrf_token() -> Optional[str]:
        if not current_app.secret_key:
            return None
        token = session.get(CSRF_KEY)
        if not token:
            token = session[CSRF_KEY] = secrets.token_urlsafe(32)
        return str(token)

    @bp.get("/")
    def jobs_page() -> str:
        state = request.args.get("state", "all")
        if state not in STATES:
            state = "all"
        since = request.args.get("since", "7d")
        try:
            listing = api.jobs(profile, since=since, state=state, **place)
        except UsageError as e:
            abort(400, description=str(e))
        rows = [r for r in listing.rows if may("view", r.job)]
        live = any(r.state != "ended" for r in rows)
        return render_template(
            "bootforge/jobs.html",
            profile=profile,
            listing=listing,
            rows=rows,
            state=state,
            since=since,
            states=STATES,
            refresh=REFRESH_SECONDS if live else None,
        )

    @bp.get("/jobs/<job_id>")
    def job_page(job_id: str) -> str:
        job_or_404(job_id)
        try:
            now = api.status(job_id, profile, **place)
        except UsageError:
            abort(404)
        can_terminate = (
            not now.ended and now.phase != "queued" and may("terminate", job_id) and csrf_token() is not None
        )
        return render_template(
            "bootforge/job.html",
            profile=profile,
            job=now,
            terminate=can_terminate,
            csrf=csrf_token() if can_terminate else None,
            tail=TAIL_BYTES,
        )

    @bp.get("/jobs/<job_id>/log")
    def log_download(job_id: str) -> Response:
        job_or_404(job_id)

        def whole() -> Iterator[str]:
            offset = 0
            while True:
                chunk = api.log_chunk(job_id, profile, offset=offset, **place)
                yield chunk.text
                if chunk.next >= chunk.size or chunk.next == offset:
                    return
                offset = chunk.next

        try:
            api.log_chunk(job_id, profile, offset=0, **place)
        except UsageError:
            abort(404)
        return Response(
            whole(),
            mimetype="text/plain",
            headers={"Content-Disposition": f'attachment; filename="{job_id}.log"'},
        )

    @bp.get("/jobs/<job_id>/log/events")
    def log_events(job_id: str) -> Response:
        job_or_404(job_id)
        resume = request.headers.get("Last-Event-ID", "")
        offset = int(resume) if resume.isdigit() else None
        return Response(
            _stream(job_id, profile, place, offset),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @bp.post("/jobs/<job_id>/terminate")
    def terminate(job_id: str) -> Any:
        job_or_404(job_id)
        token = csrf_token()
        given = request.form.get("csrf_token", "")
        if token is None or not hmac.compare_digest(given, token) or not may("terminate", job_id):
            abort(403)
        try:
            api.terminate(job_id, sets=sets, local=local)
        except BootforgeError as e:
            abort(502, description=str(e))
        return redirect(url_for(f"{bp.name}.job_page", job_id=job_id), code=303)

    @bp.get("/api/jobs")
    def jobs_json() -> Response:
        state = request.args.get("state", "all")
        listing = api.jobs(
            profile, since=request.args.get("since", "7d"), state=state if state in STATES else "all", **place
        )
        rows = [_asdict(r) for r in listing.rows if may("view", r.job)]
        return _json({**_asdict(listing), "rows": rows})

    @bp.get("/api/jobs/<job_id>")
    def job_json(job_id: str) -> Response:
        job_or_404(job_id)
        try:
            return _json(_asdict(api.status(job_id, profile, **place)))
        except UsageError:
            abort(404)

    return bp


def _asdict(value: Any) -> Any:
    return dataclasses.asdict(value)


def _json(document: Any) -> Response:
    return Response(json.dumps(document), mimetype="application/json")


def _event(kind: str, data: str, event_id: Optional[int] = None) -> str:
    """One Server-Sent Event: each line of ``data`` a ``data:`` field."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}event: {kind}\n{body}\n"


def _stream(job_id: str, profile: str, place: dict[str, Any], offset: Optional[int]) -> Iterator[str]:
    """The log from ``offset`` (its tail when ``None``), line by line as it
    grows, for at most :data:`STREAM_SECONDS`; ``end`` once the run has
    written its final status. Each event's id is the byte offset after it."""
    yield "retry: 1000\n\n"
    started = time.monotonic()
    while time.monotonic() - started < STREAM_SECONDS:
        try:
            if offset is None:
                chunk = api.log_chunk(job_id, profile, tail=TAIL_BYTES, **place)
            else:
                chunk = api.log_chunk(job_id, profile, offset=offset, **place)
        except UsageError:
            # No log yet: the instance boots and mounts the EFS.
            yield ": waiting for the log\n\n"
            time.sleep(STREAM_EVERY)
            continue
        except BootforgeError as e:
            yield _event("problem", str(e))
            time.sleep(STREAM_EVERY)
            continue
        if chunk.offset > 0 and offset is None:
            yield _event("skipped", str(chunk.offset), chunk.offset)
        if chunk.text:
            yield _event("log", chunk.text.rstrip("\n"), chunk.next)
        offset = chunk.next
        if chunk.ended:
            yield _event("end", "the run has ended", chunk.next)
            return
        time.sleep(STREAM_EVERY)
