"""The admin pages in a real headless Chromium (Playwright) against a real server process.

Covered here: log in, the dashboard, creating an identity while the controller is down
(the banner says so and nothing is created), log out; and that the page fetches nothing
from anywhere but the service itself. Creating an identity for real, its QR code, grants
and disable need a running OpenZiti controller, which this machine cannot build.
Screenshots are kept in build/test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.integration.support import free_port, wait_http

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
PASSWORD = "browser-test-password"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{root / 'admin.db'}"
    secret = root / "controller.password"
    secret.write_text("unused")
    env = {
        **os.environ,
        "APPLIANCE_ADMIN_PROFILE": "lab",
        "APPLIANCE_ADMIN_DATA_DIR": str(root),
        "APPLIANCE_ADMIN_CONTROLLER_URL": f"https://127.0.0.1:{free_port()}",
        "APPLIANCE_ADMIN_CONTROLLER_PASSWORD_FILE": str(secret),
    }

    def cli(*args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [sys.executable, "-m", "appliance", "admin", *args],
            input=stdin,
            env=env,
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    cli("migrate", "--db", url)
    for name, role in (("alice", "admin"), ("audrey", "auditor")):
        cli(
            "create-user",
            name,
            "--role",
            role,
            "--db",
            url,
            "--password-stdin",
            stdin=PASSWORD + "\n",
        )
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
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_log_in_see_the_dashboard_and_the_controller_banner(server: str) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make setup` installs it")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.on("request", lambda request: requested.append(request.url))

        page.goto(f"{server}/")
        assert page.url == f"{server}/login"
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('Identities')")
        page.screenshot(path=str(ARTIFACTS / "admin-dashboard.png"), full_page=True)

        page.fill("input[name=name]", "alice-laptop")
        page.select_option("select[name=kind]", "device")
        page.fill("input[name=role_attributes]", "engineering")
        page.click("form[action='/identities'] button[type=submit]")
        banner = page.wait_for_selector("[role=alert]")
        assert banner is not None
        assert "127.0.0.1" in banner.inner_text()
        page.screenshot(path=str(ARTIFACTS / "admin-controller-down.png"), full_page=True)
        assert "No identities yet." in page.content()

        page.click("header button[type=submit]")
        page.wait_for_selector("h1:has-text('Log in')")
        browser.close()
    assert requested, "the browser made no request at all"
    outside = [u for u in requested if not u.startswith(server)]
    assert outside == [], f"the pages fetched from elsewhere: {outside}"
    assert (ARTIFACTS / "admin-dashboard.png").stat().st_size > 1000


def test_auditor_filters_exports_and_the_export_verifies(server: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: `make setup` installs it")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        page = browser.new_page(accept_downloads=True)
        page.goto(f"{server}/login")
        page.fill("input[name=username]", "audrey")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("h1:has-text('Identities')")
        assert "New identity" not in page.content()  # auditors change nothing

        page.click("text=Audit log")
        page.wait_for_selector("h1:has-text('Audit log')")
        assert "verified" in page.inner_text("#integrity")
        page.fill("input[name=action]", "auth")
        page.click("form[action='/audit'] button[type=submit]")
        page.wait_for_selector("td:has-text('auth.login')")
        actions = page.locator("tbody tr td:nth-child(4)").all_inner_texts()
        assert actions and all(a.startswith("auth") for a in actions)
        page.screenshot(path=str(ARTIFACTS / "auditor-filtered.png"), full_page=True)

        with page.expect_download() as download:
            page.click("form[action='/audit/export'] button[type=submit]")
        archive = tmp_path / download.value.suggested_filename
        download.value.save_as(archive)
        browser.close()

    result = subprocess.run(
        [sys.executable, "-m", "appliance", "audit", "verify", str(archive)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: records 1..")
