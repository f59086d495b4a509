"""The dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against a
real control plane: a 3-member ZookeeperCluster whose killed member goes down and comes back,
then is scaled to 5 members, and an Application the autoscaler scales up under load, all seen
on one page load (no reload)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zkop.cli.local import stop_everything

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLUSTER = "default/orders-zk"
APP = "default/counter"
TOKEN = "browser-test-token-0123456789"


def sync_playwright_or_skip() -> Any:
    """Playwright's sync API, or a skip saying what is missing (a failure under CI=true, where
    ``make test`` installs both)."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(
            f"Debian's chromium ({CHROMIUM}; `make test` installs it as root, else: sudo apt-get install -y chromium)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("Playwright's Python package (pip install -e '.[test]')")
    if missing:
        reason = "the dashboard's browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return sync_playwright


def zkop(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zkop.cli.main", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, ZKOP_STATE_DIR=str(state_dir), COLUMNS="200"),
        timeout=240,
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    sync_playwright_or_skip()  # before starting anything
    state_dir = tmp_path / "state"
    result = zkop(state_dir, "up", "-d")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        yield state_dir
    finally:
        stop_everything(state_dir, grace=5)  # also when the test failed


@pytest.fixture
def dashboard(state: Path) -> Iterator[str]:
    """``zkop dashboard`` on a free loopback port; its URL (with the token)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zkop.cli.main", "dashboard", "--listen", "127.0.0.1:0", "--refresh", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # On loopback a token is optional; given, it is asked for as it is beyond loopback.
        env=dict(os.environ, ZKOP_STATE_DIR=str(state), ZKOP_DASHBOARD_TOKEN=TOKEN),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            raise AssertionError("zkop dashboard printed no URL within 60s") from None
        assert first.startswith("zkop dashboard: http://127.0.0.1:") and first.strip().endswith(f"/?token={TOKEN}")
        yield first.split()[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        assert proc.returncode == 0, stderr


def member_pid(state: Path, member: int) -> int:
    record = state / "ensembles" / "zkc-default-orders-zk" / "members" / str(member) / "pid.json"
    return int(json.loads(record.read_text())["pid"])


@pytest.mark.timeout(600)
def test_the_page_shows_a_killed_member_come_back_and_a_scale_to_five_without_a_reload(
    state: Path, dashboard: str, tmp_path: Path
) -> None:
    sync_playwright = sync_playwright_or_skip()
    from playwright.sync_api import expect

    applied = zkop(
        state, "apply", "-f", str(EXAMPLES / "zookeepercluster.yaml"), "-f", str(EXAMPLES / "application.yaml")
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    shots = [tmp_path / "dashboard-healed.png", tmp_path / "dashboard-scaled.png"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # Without the token nothing is served, the event stream included.
            stranger = browser.new_page()
            base = dashboard.split("?", 1)[0]
            for path in ("", "events", "app.js"):
                answer = stranger.goto(base + path)
                assert answer is not None and answer.status == 401, path
                assert "needs a token" in stranger.content()
            stranger.close()

            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            loads: list[str] = []
            page.on("load", lambda p: loads.append(p.url))
            page.goto(dashboard)
            expect(page).to_have_url(base)  # the token leaves the address bar; a cookie carries it
            page.evaluate("window.keptAcrossUpdates = 'this page was never reloaded'")

            # The control plane: the operator's leader and epoch, the local members.
            operator = page.locator("#operator")
            expect(operator).not_to_have_attribute("data-leader", "", timeout=60_000)
            expect(operator).not_to_have_attribute("data-epoch", "")
            expect(page.locator("#local-cp tbody tr[data-ready='true']")).to_have_count(3, timeout=60_000)

            # The cluster comes up: three ready members, one of them the leader.
            card = page.locator(f'[data-cluster="{CLUSTER}"]')
            expect(card).to_have_attribute("data-ready-count", "3", timeout=180_000)
            expect(card).to_have_attribute("data-phase", "Running", timeout=60_000)
            expect(card.locator("tbody tr[data-member][data-ready='true']")).to_have_count(3)
            expect(card.locator("tr[data-role='leader']")).to_have_count(1)
            expect(card.locator(".config-version")).to_have_text(re.compile(r"^0x[0-9a-f]+$"))

            # kill -9 a follower: the page shows it go down, then back with one restart.
            victim = int(card.locator("tr[data-role='follower']").first.get_attribute("data-member") or "0")
            assert victim > 0
            row = card.locator(f'tr[data-member="{victim}"]')
            expect(row).to_have_attribute("data-restarts", "0")
            os.kill(member_pid(state, victim), signal.SIGKILL)
            expect(row).to_have_attribute("data-ready", "false", timeout=60_000)
            expect(card.locator(".now")).to_have_attribute("data-busy", "true", timeout=30_000)
            expect(row).to_have_attribute("data-ready", "true", timeout=120_000)
            expect(row).to_have_attribute("data-restarts", "1", timeout=30_000)
            expect(card.locator('.timeline li[data-reason="Healed"]')).to_have_count(1, timeout=30_000)
            expect(page.locator('#events tbody tr[data-reason="Healed"]')).to_have_count(1, timeout=30_000)
            page.screenshot(path=str(shots[0]), full_page=True)

            # The application runs its two instances; one reports a load of 25 (the target is
            # 10 per instance), so the autoscaler asks for more: the plot shows the decision.
            app = page.locator(f'[data-app="{APP}"]')
            expect(app).to_have_attribute("data-ready-count", "2", timeout=120_000)
            endpoint = app.locator("tr[data-instance][data-ready='true'] td.endpoint").first.inner_text()
            with urllib.request.urlopen(
                urllib.request.Request(f"http://{endpoint}/load?value=25", method="POST"), timeout=10
            ) as answer:
                assert answer.status == 200

            # Scale 3 -> 5 (a changed document, applied as a user would): two members join.
            scaled = tmp_path / "orders-zk-5.yaml"
            text = (EXAMPLES / "zookeepercluster.yaml").read_text()
            assert "replicas: 3 " in text
            scaled.write_text(text.replace("replicas: 3 ", "replicas: 5 ", 1))
            applied = zkop(state, "apply", "-f", str(scaled))
            assert applied.returncode == 0 and "configured" in applied.stdout, applied.stdout + applied.stderr
            expect(card).to_have_attribute("data-desired", "5", timeout=30_000)
            expect(card.locator(".now")).to_have_attribute("data-busy", "true", timeout=30_000)
            expect(card.locator("tbody tr[data-member]")).to_have_count(5, timeout=240_000)
            expect(card).to_have_attribute("data-ready-count", "5", timeout=240_000)
            expect(card.locator("tbody tr[data-member][data-ready='true']")).to_have_count(5, timeout=60_000)
            expect(card).to_have_attribute("data-phase", "Running", timeout=60_000)
            expect(card.locator('.timeline li[data-reason="MemberAdded"]')).to_have_count(2, timeout=30_000)

            expect(app.locator('.timeline li[data-reason="Scaled"]')).to_have_count(1, timeout=60_000)
            expect(app).to_have_attribute("data-desired", "3")
            expect(app).to_have_attribute("data-ready-count", "3", timeout=60_000)
            expect(app.locator(".chart line.scaled")).to_have_count(1)
            expect(app.locator(".chart polyline.load")).not_to_have_count(0)
            expect(app.locator(".chart line.target")).to_have_count(1)

            # The events table filters by kind and namespace.
            page.select_option("#f-kind", "ZookeeperCluster")
            page.select_option("#f-ns", "default")
            expect(page.locator("#events tbody tr").first).to_be_visible()
            assert page.locator("#events tbody tr:not([data-kind='ZookeeperCluster'])").count() == 0
            page.select_option("#f-kind", "")
            page.select_option("#f-ns", "")
            page.screenshot(path=str(shots[1]), full_page=True)

            # All of it arrived on the one page load, pushed over server-sent events.
            assert page.evaluate("window.keptAcrossUpdates") == "this page was never reloaded"
            assert loads == [page.url], loads
            assert page.evaluate("window.zkopDashboard.snapshots") > 3
            assert problems == []
        finally:
            browser.close()
    keep = os.environ.get("ZKOP_DASHBOARD_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(shots[1].read_bytes())
    assert all(s.stat().st_size > 10_000 for s in shots)
