"""The Blueprint's pages in a real browser (headless Chromium driven by
Selenium, Debian's ``chromium`` and ``chromium-driver``), over jobs
rehearsed locally: the jobs page, a job page whose log grows while the
pipeline writes it, the outcome when it ends, hostile text shown as text,
and a Terminate button only where the app authorizes it. Each page's
screenshot is kept in ``BOOTFORGE_ARTIFACTS`` (``target/screenshots`` by
default)."""

import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

import bootforge

from .conftest import ROOT, Local

flask = pytest.importorskip("flask")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

import bootforge.flask  # noqa: E402

pytestmark = pytest.mark.usefixtures("binary")

PROFILE = "traffic-sign-gpu"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("BOOTFORGE_ARTIFACTS") or ROOT / "target/screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        message = (
            f"{', '.join(missing)} not installed: scripts/test installs Debian's chromium and chromium-driver"
        )
        if os.environ.get("BOOTFORGE_REQUIRE_ALL"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    # The driver Debian ships with the browser: nothing is downloaded.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def app_with(local: Local, authorize: Optional[Callable[[Any, str, str], bool]] = None) -> Any:
    app = flask.Flask("gpu_jobs_test")
    app.secret_key = "a test's secret"
    app.register_blueprint(
        bootforge.flask.blueprint(PROFILE, local=True, efs=str(local.efs), authorize=authorize),
        url_prefix="/gpu-jobs",
    )
    return app


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app on a free loopback port, for as long as the block runs."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/gpu-jobs"
    finally:
        server.shutdown()


def until(what: str, check: Callable[[], bool], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {seconds}s"
        time.sleep(0.25)


def outcome_shown(driver: Any) -> str:
    """The job page's outcome; any other page fails the test with its text."""
    found = driver.find_elements(By.ID, "outcome")
    if found:
        return str(found[0].text)
    page = driver.find_element(By.TAG_NAME, "body").text
    raise AssertionError(f"not a job page: {page[:1000]}")


def screenshot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def post(url: str, data: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def get(url: str) -> "tuple[int, str]":
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def no_alert(driver: Any) -> bool:
    try:
        _ = driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


def test_a_local_job_on_both_pages_its_log_live_and_its_outcome(local: Local, browser: Any) -> None:
    efs = str(local.efs)
    bootforge.launch(PROFILE, "fail-web", wait=False, local=True, efs=efs)
    bootforge.launch(PROFILE, "web-1", wait=False, local=True, efs=efs)
    with serving(app_with(local)) as base:
        browser.get(base + "/")
        table = browser.find_element(By.ID, "jobs")
        assert "web-1" in table.text and "fail-web" in table.text
        browser.get(base + "/jobs/web-1")
        browser.execute_script("window.stayed = true")
        log = browser.find_element(By.ID, "log")
        until("the pipeline's first steps", lambda: "step 2 of 12" in log.text, 240)
        assert "step 12 of 12" not in log.text
        until("more lines, while the pipeline writes them", lambda: "step 6 of 12" in log.text, 60)
        assert browser.execute_script("return window.stayed") is True, "no reload"
        assert "<script>alert(1)</script> and <b>bold</b> are text here" in log.text
        assert browser.execute_script("return document.querySelectorAll('#log *').length") == 0
        assert no_alert(browser)
        screenshot(browser, "job-page-running")
        # Read-only: no button, and a forged POST is refused.
        assert browser.find_elements(By.ID, "terminate") == []
        assert post(base + "/jobs/web-1/terminate", {"csrf_token": "forged"}) == 403
        outcome = browser.find_element(By.ID, "outcome")
        until("its outcome", lambda: outcome.text == "succeeded", 120)
        assert "step 12 of 12" in log.text
        screenshot(browser, "job-page")
        browser.get(base + "/")
        rows = {
            r.get_attribute("data-job"): r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
        }
        until(
            "both outcomes on the jobs page",
            lambda: "failed" in browser.find_element(By.CSS_SELECTOR, 'tr[data-job="fail-web"]').text,
            60,
        )
        assert "succeeded" in rows["web-1"], rows
        screenshot(browser, "jobs-page")
        status, body = get(base + "/api/jobs")
        listing = json.loads(body)
        assert status == 200 and listing["totals"]["jobs"] == 2
        status, text = get(base + "/jobs/web-1/log")
        assert status == 200 and "step 12 of 12" in text and text.startswith("")


def test_terminate_is_a_post_with_a_token_where_the_app_authorizes_it(local: Local, browser: Any) -> None:
    efs = str(local.efs)
    bootforge.launch(PROFILE, "long-web", wait=False, local=True, efs=efs)
    bootforge.launch(PROFILE, "long-hidden", wait=False, local=True, efs=efs)

    def authorize(request: Any, action: str, job_id: str) -> bool:
        return job_id != "long-hidden"

    with serving(app_with(local, authorize)) as base:
        browser.get(base + "/")
        assert "long-web" in browser.find_element(By.ID, "jobs").text
        assert "long-hidden" not in browser.find_element(By.ID, "jobs").text, (
            "a job it may not view is hidden"
        )
        assert get(base + "/jobs/long-hidden")[0] == 403
        assert get(base + "/jobs/long-hidden/log/events")[0] == 403
        browser.get(base + "/jobs/long-web")
        log = browser.find_element(By.ID, "log")
        until("the pipeline runs", lambda: "step 2 of 300" in log.text, 240)
        # Authorized, yet without the session's token: refused.
        assert post(base + "/jobs/long-web/terminate", {"csrf_token": "forged"}) == 403
        browser.find_element(By.ID, "terminate").click()
        until("the job ended on purpose", lambda: outcome_shown(browser) == "terminated", 120)
        assert browser.find_elements(By.ID, "terminate") == []
    bootforge.terminate("long-hidden", local=True)
    after = bootforge.status("long-web", PROFILE, local=True, efs=efs)
    assert (after.outcome, after.ended) == ("terminated", True)


def test_html_and_javascript_from_a_job_are_inert(local: Local, browser: Any) -> None:
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
    job = local.job_dir("xss-1")
    job.mkdir(parents=True)
    instance = "local-000000000000"
    claim = {
        "schema_version": 2,
        "profile": PROFILE,
        "job": "xss-1",
        "run": 1,
        "launched_at": int(time.time()) - 600,
        "payload_sha256": "sha",
        "holder": "gone:1",
        "heartbeat": int(time.time()) - 600,
        "requests": [],
        "instance_id": instance,
        "failed": None,
    }
    (job / "claim.json").write_text(json.dumps(claim))
    (job / "run-id").write_text(f"{instance} boot 1\n")
    (job / "job.log").write_text(f"line one\n{hostile}\nline three\n")
    status = {"instance_id": instance, "outcome": "failed", "exit_code": 1, "final": True, "message": hostile}
    (job / "status.json").write_text(json.dumps(status))
    with serving(app_with(local)) as base:
        for page in ("/", "/jobs/xss-1"):
            browser.get(base + page)
            if page != "/":
                log = browser.find_element(By.ID, "log")
                until("the log", lambda log=log: "line three" in log.text, 30)
                assert hostile in log.text
            assert hostile in browser.find_element(By.TAG_NAME, "main").text
            assert browser.execute_script("return window.pwned") is None
            assert (
                browser.execute_script("return document.querySelectorAll('main img, main script').length")
                == 0
            )
            assert no_alert(browser)
        screenshot(browser, "job-page-hostile")
        # A job id is held to the command line's rules.
        for bad in ("%3Cscript%3Ealert(1)%3C%2Fscript%3E", "..", "..%2F..%2Fetc", ".bootforge"):
            code, body = get(f"{base}/jobs/{bad}")
            assert code == 404, bad
            assert "<script>alert(1)" not in body
