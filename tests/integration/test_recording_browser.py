"""An auditor watches a vendor's recorded session in a real headless Chromium: the pinned
asciinema-player (as setup fetched it) plays the verified recording under the page's
Content-Security-Policy, a timeline entry seeks it, and nothing is fetched from elsewhere.
The screenshot is kept in build/test-artifacts/recording-player.png."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy.orm import Session

from appliance.admin.services.accounts import create_user
from appliance.audit.checkpoint import load_or_create_key
from appliance.breakglass.recording.evidence import record_recording
from appliance.breakglass.recording.interface import SessionInfo
from appliance.breakglass.recording.recorder import RecorderLimits
from appliance.components.player import fetch_player
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import Role
from tests.integration.support import free_port, wait_http
from tests.integration.test_admin_browser import ARTIFACTS, CHROMIUM_FLAGS, PASSWORD
from tests.unit.recording_sample import Clock, shell_session, start
from tests.unit.test_recording_evidence import window

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The admin service with one window whose shell session was recorded and sealed with
    the service's own audit key; the player as `make setup` fetched it."""
    root = tmp_path_factory.mktemp("recording-browser")
    url = f"sqlite:///{root / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url), expire_on_commit=False) as db:
        create_user(db, "audrey", Role.auditor, password=PASSWORD, actor="test")
        wid = window(db).id
        db.commit()
        info = SessionInfo(wid, "s-1", "eve", "gpu1")
        clock = Clock()
        limits = RecorderLimits(chunk_seconds=1.0)
        recording = start(
            root / "recordings", load_or_create_key(root), clock, limits=limits, info=info
        )
        shell_session(recording, clock)
        record_recording(db, info, recording.end("vendor logged out"))
        db.commit()
    secret = root / "controller.password"
    secret.write_text("unused")
    env = {
        **os.environ,
        "APPLIANCE_ADMIN_PROFILE": "lab",
        "APPLIANCE_ADMIN_DATA_DIR": str(root),
        "APPLIANCE_ADMIN_CONTROLLER_URL": f"https://127.0.0.1:{free_port()}",
        "APPLIANCE_ADMIN_CONTROLLER_PASSWORD_FILE": str(secret),
        "APPLIANCE_ADMIN_PLAYER_ASSETS": str(fetch_player()),
    }
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "admin", "serve", "--db", url, "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/api/v1/openapi.json", timeout=60, alive=lambda: proc.poll() is None)
        yield base, wid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_auditor_plays_the_recording_and_the_timeline_seeks_it(
    server: tuple[str, int],
) -> None:
    base, wid = server
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make setup` installs it")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    refused: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.on(
            "console",
            lambda message: (
                refused.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        page.goto(f"{base}/login")
        page.fill("input[name=username]", "audrey")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('Identities')")

        page.goto(f"{base}/breakglass/windows/{wid}/recordings")
        page.wait_for_selector("#player .ap-player", timeout=30_000)
        # The last timeline entry of the played session: the player seeks there and plays,
        # and the terminal shows what the target printed by then.
        page.locator("button[data-seek]").last.click()
        page.wait_for_function(
            "() => (document.querySelector('#player')?.innerText || '').includes('line 2')",
            timeout=30_000,
        )
        page.screenshot(path=str(ARTIFACTS / "recording-player.png"), full_page=True)
        shown = page.inner_text("#player")
        browser.close()
    assert "line 0" in shown and "line 2" in shown, shown
    assert refused == [], f"the page's CSP refused: {refused}"
    outside = [u for u in requested if not u.startswith(base) and not u.startswith("data:")]
    assert outside == [], f"the page fetched from elsewhere: {outside}"
    assert any(u.endswith("/assets/player/asciinema-player.min.js") for u in requested)
