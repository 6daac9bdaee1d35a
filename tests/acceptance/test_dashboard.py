"""Monitoring end to end on `syncjobs up`: a job whose source is down fails for real, runs after runs.

Then: `/monitoring` reports `consecutive_failures`, a webhook receiver started here gets the signed alert,
both `/metrics` show the failed runs, and the dashboard, driven in headless Chromium (Debian's
`/usr/bin/chromium`, never a downloaded browser), shows the job in red; "Run now" adds a run to its history;
once the source is back, a successful run resolves the alert. Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from syncjobs.shared.embedded import free_port

from tests.fixtures.eventually import eventually_blocking
from tests.fixtures.syncjobs_up import UpStack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="Debian's chromium is not installed (/usr/bin/chromium): apt-get install -y chromium",
    ),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SECRET = "acceptance-secret-0123456789"
WAIT_SECONDS = 120.0
SCHEDULE_WORDS = {
    ("*/5 * * * *", "UTC"): "every 5 minutes",
    ("* * * * *", "UTC"): "every minute",
    ("0 * * * *", "UTC"): "every hour",
    ("15 */2 * * *", "UTC"): "every 2 hours at :15",
    ("0 2 * * *", "Europe/London"): "at 02:00 Europe/London",
    ("@daily", "Asia/Kolkata"): "at 00:00 Asia/Kolkata",
    ("30 9 * * 1-5", "UTC"): "at 09:30 UTC on weekdays",
    ("0 6 1 * *", "UTC"): "at 06:00 UTC on day 1 of the month",
    ("*/3 * * * * *", "UTC"): "every 3 seconds",
    ("0 0 1 1 *", "UTC"): "cron 0 0 1 1 * (UTC)",
}
RELATIVE_WORDS = {-120: "2 minutes ago", -3 * 3600: "3 hours ago", 180: "in 3 minutes", -5: "just now"}


@dataclass
class Recorder:
    """Everything POSTed to a test HTTP server: (path, headers, body)."""

    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return [(headers, body) for _, headers, body in self.requests]


def serve(port: int, recorder: Recorder, answer: bytes = b"{}") -> ThreadingHTTPServer:
    """A tiny HTTP server in a thread: records POSTs, answers every GET with `answer`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with recorder.lock:
                recorder.requests.append((self.path, dict(self.headers), body))
            self._reply(b"{}")

        def do_GET(self) -> None:
            self._reply(answer)

        def _reply(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_a_job_whose_source_is_down_alerts_turns_red_and_recovers(stack: UpStack, tmp_path: Path) -> None:
    receiver = Recorder()
    hook_server = serve(free_port(), receiver)
    source_port = free_port()  # nothing listens here yet: the source is down
    try:
        _drive(stack, receiver, hook_server.server_address[1], source_port)
    finally:
        hook_server.shutdown()
        hook_server.server_close()


def _drive(stack: UpStack, receiver: Recorder, hook_port: int, source_port: int) -> None:
    source = stack.call(
        "POST",
        stack.ws("/data-sources"),
        {
            "name": "orders-api",
            "kind": "http",
            "config": {
                "baseUrl": f"http://127.0.0.1:{source_port}",
                "retry": {"maxAttempts": 1},
                "entities": {"orders": {"path": "/orders"}},
            },
        },
    )
    destination = stack.call(
        "POST",
        stack.ws("/destinations"),
        {"name": "warehouse", "kind": "mongodb", "config": {"uri": stack.database_uri, "database": "warehouse"}},
    )
    stack.call("POST", stack.ws("/webhooks"), {"url": f"http://127.0.0.1:{hook_port}/hook", "secret": SECRET})
    job_body = {
        "name": "orders-sync",
        "dataSourceId": source["id"],
        "destinationDatabaseId": destination["id"],
        "schedule": {"cron": "*/3 * * * * *", "timezone": "UTC"},
        "syncMode": "full",
    }
    job = stack.call("POST", stack.ws("/sync-jobs"), job_body)

    # 1. Failing runs made by the real worker and executor open a signed consecutive_failures alert.
    def opened() -> tuple[dict[str, str], bytes] | None:
        return next(
            (
                (h, b)
                for h, b in receiver.events()
                if json.loads(b)["event"] == "alert.opened" and json.loads(b)["alert"]["kind"] == "consecutive_failures"
            ),
            None,
        )

    headers, body = eventually_blocking(opened, "a consecutive_failures alert at the webhook", within=WAIT_SECONDS)
    signature = {k.lower(): v for k, v in headers.items()}["x-syncjobs-signature"]
    assert hmac.compare_digest(signature, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest())
    assert json.loads(body)["job"] == {"id": job["id"], "name": "orders-sync"}
    # Quiet the schedule (daily) so the page is still while we look at it; the job keeps its failed state.
    job = stack.call(
        "PUT",
        stack.ws(f"/sync-jobs/{job['id']}"),
        {**job_body, "schedule": {"cron": "0 2 * * *", "timezone": "Europe/London"}},
    )

    report = stack.call("GET", stack.ws("/monitoring"))
    [stats] = report["stats"]
    assert stats["consecutiveFailures"] >= 3 and stats["lastStatus"] in ("failed", "running", "skipped")
    assert ("consecutive_failures", job["id"]) in {(a["kind"], a["jobId"]) for a in report["alerts"]}

    api_metrics = stack.call("GET", "/metrics").decode()
    assert _metric(api_metrics, 'syncjobs_stored_runs{status="failed"}') >= 3
    with urllib.request.urlopen(stack.worker_metrics_url, timeout=10) as response:
        worker_metrics = response.read().decode()
    assert _metric(worker_metrics, 'syncjobs_runs_total{status="failed"}') >= 3
    assert _metric(worker_metrics, "syncjobs_lease_held") == 1  # the only worker leads
    assert _metric(api_metrics, 'syncjobs_open_alerts{kind="consecutive_failures"}') >= 1
    # Each process shows only what is true of it: no lease or executor series on the api, no stored runs on a worker.
    assert "syncjobs_lease_held" not in api_metrics and "syncjobs_executors_running" not in api_metrics
    assert "syncjobs_executors_running" in worker_metrics and "syncjobs_stored_runs" not in worker_metrics
    assert "orders-sync" not in api_metrics + worker_metrics

    # 2. The dashboard shows it red; "Run now" adds a run; the page fits a phone.
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(stack.url + "/dashboard")
            page.fill("#token-input", stack.token)  # the admin token: it views the first workspace
            page.click("#sign-in-form button[type=submit]")
            card = page.locator(f"tr.job[data-job-id='{job['id']}']")
            expect(card.locator(".badge")).to_have_attribute("data-status", "failing")
            expect(card.locator(".badge")).to_have_css("color", "rgb(198, 40, 40)")
            expect(card.locator(".last-error")).to_have_css("color", "rgb(198, 40, 40)")
            expect(card.locator(".last-error")).to_have_text(re.compile(r"\S"))
            expect(card.locator(".schedule")).to_have_text("at 02:00 Europe/London")
            expect(card.locator(".last-sync")).to_contain_text(re.compile(r"ago|just now"))
            expect(page.locator(".alert[data-kind='consecutive_failures']")).to_contain_text("orders-sync")
            page.screenshot(path=str(ARTIFACTS / "dashboard-failing.png"), full_page=True)
            for (cron, zone), words in SCHEDULE_WORDS.items():
                assert page.evaluate("([c, z]) => describeSchedule(c, z)", [cron, zone]) == words
            for offset_seconds, words in RELATIVE_WORDS.items():
                assert (
                    page.evaluate("(s) => relativeTime(new Date(Date.now() + s * 1000).toISOString())", offset_seconds)
                    == words
                )

            card.locator("a").first.click()
            runs = page.locator("details.run")
            expect(runs.first).to_be_visible()
            manual_before = page.locator("details.run:has-text('manual')").count()
            page.click(".actions .run-now")
            expect(page.locator("details.run:has-text('manual')")).to_have_count(manual_before + 1)
            expect(page.locator("details.run:has-text('manual')").first).to_have_attribute(
                "data-status", "failed", timeout=WAIT_SECONDS * 1000
            )
            failed_manual = page.locator("details.run:has-text('manual')").first
            failed_manual.locator("summary").click()  # a run's detail opens from its summary line
            expect(failed_manual.locator("tr[data-entity='orders']")).to_be_visible()
            expect(failed_manual.locator("tr.entity-error")).to_contain_text(str(source_port))
            page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)

            # 3. The source comes back: the next run succeeds, the alert resolves, the badge turns green.
            source_server = serve(source_port, Recorder(), answer=b'[{"id": 1, "total": 9.5}]')
            try:
                page.click(".actions .run-now")
                expect(page.locator("h1.job-title .badge")).to_have_attribute(
                    "data-status", "active", timeout=WAIT_SECONDS * 1000
                )
                read = page.locator("details.run[data-status='succeeded'] tr[data-entity='orders'] td").nth(1)
                expect(read).to_have_text("1")
            finally:
                source_server.shutdown()
                source_server.server_close()
            eventually_blocking(
                lambda: any(json.loads(b)["event"] == "alert.resolved" for _, b in receiver.events()),
                "the alert.resolved event",
                within=WAIT_SECONDS,
            )

            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(stack.url + "/dashboard/#/")
            expect(card.locator(".badge")).to_have_attribute("data-status", "active")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
        finally:
            browser.close()
