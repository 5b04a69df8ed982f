"""The auditors' recording page and API: who may watch, the asciicast, the timeline, the
viewing recorded, the window's evidence carrying its recordings, and the pinned player."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.admin.web import recording_pages
from appliance.audit.signing_key import load_key
from appliance.audit.verify import verify_export
from appliance.breakglass.clock import BootClock
from appliance.breakglass.recording.evidence import record_recording
from appliance.breakglass.recording.interface import SessionInfo
from appliance.breakglass.recording.recorder import RecorderLimits
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, Role
from appliance.web_assets import PinnedPackage, check_installed
from tests.unit.admin_login import PASSWORD, log_in
from tests.unit.fake_controller import FakeController
from tests.unit.recording_sample import Clock, shell_session, start
from tests.unit.test_recording_evidence import window

API = "/api/v1/breakglass/windows"


@dataclass
class Site:
    client: TestClient
    url: str
    window_id: int
    recordings: Path
    player: Path


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """An admin app with a window whose engineer's shell session was recorded and sealed
    with the app's audit key; the player folder is empty (not installed)."""
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        for name, role in (("alice", Role.admin), ("audrey", Role.auditor)):
            create_user(session, name, role, password=PASSWORD, actor="test")
        session.commit()
    player = tmp_path / "player"
    settings = AdminSettings(
        profile="test", db_url=url, data_dir=tmp_path, player_assets=player, audit_watch=False
    )
    app = create_app(settings, boot_clock=lambda: BootClock("boot-a", 50.0))
    app.state.controller = FakeController()
    with TestClient(app) as client:  # the lifespan makes the audit key
        with Session(make_engine(url), expire_on_commit=False) as db:
            wid = window(db).id
            db.commit()
            info = SessionInfo(wid, "s-1", "eve", "gpu1")
            clock = Clock()
            recording = start(
                settings.recordings_dir,
                load_key(tmp_path),
                clock,
                limits=RecorderLimits(chunk_seconds=1.0),
                info=info,
            )
            shell_session(recording, clock)
            recording.exec_request(1, "uptime")
            recording.channel_opened(2, "sftp")
            moved = {"bytes": 42, "sha256": "ab" * 32, "in_order": True, "ranges": [[0, 42]]}
            recording.transfer(
                2, "close", {"handle": "h1", "path": "/var/log/syslog", "download": moved}
            )
            record_recording(db, info, recording.end("vendor logged out"))
            db.commit()
        yield Site(client, url, wid, settings.recordings_dir, player)


def viewings(site: Site) -> list[AuditEvent]:
    with Session(make_engine(site.url)) as db:
        return list(
            db.scalars(select(AuditEvent).where(AuditEvent.action == "breakglass.recording-viewed"))
        )


def test_anonymous_and_admins_are_refused_page_cast_and_list(site: Site) -> None:
    page = f"/breakglass/windows/{site.window_id}/recordings"
    cast = f"{API}/{site.window_id}/recordings/s-1/cast"
    listed = f"{API}/{site.window_id}/recordings"
    anonymous = site.client.get(page, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert site.client.get(cast).status_code == 401
    assert site.client.get(listed).status_code == 401
    log_in(site.client, "alice")
    refused = site.client.get(page)
    assert refused.status_code == 403 and "only auditors watch recordings" in refused.text
    assert site.client.get(cast).status_code == 403
    assert site.client.get(listed).status_code == 403
    assert viewings(site) == []


def test_an_auditor_gets_the_verified_cast_and_the_viewing_is_recorded(site: Site) -> None:
    log_in(site.client, "audrey")
    answer = site.client.get(f"{API}/{site.window_id}/recordings/s-1/cast")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/x-asciicast")
    header, *events = [json.loads(line) for line in answer.text.splitlines()]
    assert header["version"] == 2 and (header["width"], header["height"]) == (120, 40)
    typed = [e[2] for e in events if e[1] == "i"]
    assert typed[:4] == ["l", "s", "\r", "sudo -i\r"]
    assert "hunter2" not in answer.text and not any("h" in t for t in typed[4:])  # unechoed
    assert any(e[1] == "o" and "line 2" in e[2] for e in events)
    (viewed,) = viewings(site)
    assert viewed.actor == "audrey" and viewed.target == f"window:{site.window_id}"
    assert viewed.details["sessions"] == ["s-1"] and viewed.details["what"] == "cast"

    (listed,) = site.client.get(f"{API}/{site.window_id}/recordings").json()
    assert listed["verified"] and listed["problem"] is None and listed["engineer"] == "eve"
    assert site.client.get(f"{API}/{site.window_id}/recordings/s-2/cast").status_code == 404


def test_a_recording_that_does_not_verify_is_listed_with_why_and_never_played(
    site: Site,
) -> None:
    chunk = site.recordings / f"window-{site.window_id}" / "s-1" / "chunk-000002.jsonl"
    chunk.write_bytes(chunk.read_bytes().replace(b"line", b"lime", 1))
    log_in(site.client, "audrey")
    (listed,) = site.client.get(f"{API}/{site.window_id}/recordings").json()
    assert not listed["verified"] and "a chunk was changed" in listed["problem"]
    assert site.client.get(f"{API}/{site.window_id}/recordings/s-1/cast").status_code == 404
    page = site.client.get(f"/breakglass/windows/{site.window_id}/recordings")
    assert page.status_code == 200
    assert "does not verify" in page.text and 'id="player"' not in page.text


def test_the_page_without_the_player_says_so_and_offers_the_cast_and_the_command(
    site: Site,
) -> None:
    log_in(site.client, "audrey")
    page = site.client.get(f"/breakglass/windows/{site.window_id}/recordings")
    assert page.status_code == 200
    assert "script-src 'self' 'wasm-unsafe-eval'" in page.headers["content-security-policy"]
    assert 'id="player-not-installed"' in page.text and 'id="player"' not in page.text
    assert "asciinema-player 3.17.0" in page.text
    assert f'/recordings/s-1/cast" download="window-{site.window_id}-s-1.cast"' in page.text
    assert f"appliance breakglass play window-{site.window_id}-s-1.cast" in page.text
    assert "asciinema-player.min.js" not in page.text
    assert "<script>" not in page.text  # no inline script
    assert site.client.get("/assets/player/asciinema-player.min.js").status_code == 404
    assert viewings(site)[0].details["what"] == "page"


def test_the_timeline_holds_the_windows_records_and_the_sessions_events(site: Site) -> None:
    log_in(site.client, "audrey")
    page = site.client.get(f"/breakglass/windows/{site.window_id}/recordings").text
    order = [k.split('"', 1)[0] for k in page.split('data-kind="')[1:]]
    for kind in ("recording", "session start", "open", "resize", "command", "file transfer"):
        assert kind in order, kind
    assert order.index("session start") < order.index("command") < order.index("session end")
    assert "channel 1: uptime" in page and "download /var/log/syslog  42 bytes  sha256 abab" in page
    assert "recording-viewed" not in order  # looking is recorded, but not part of the window


def test_with_the_pinned_player_the_page_loads_it_and_the_timeline_seeks(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.player.mkdir()
    files: dict[str, bytes] = {
        "asciinema-player.min.js": b"var AsciinemaPlayer={};",
        "asciinema-player.css": b"",
    }
    for name, data in files.items():
        (site.player / name).write_bytes(data)
    fake = PinnedPackage(
        "asciinema-player",
        "3.17.0",
        "sha512-x",
        {n: (f"package/{n}", hashlib.sha256(d).hexdigest()) for n, d in files.items()},
    )
    monkeypatch.setattr(recording_pages, "installed", lambda folder: True)
    monkeypatch.setattr(
        recording_pages, "check_installed", lambda folder, name: check_installed(folder, name, fake)
    )
    log_in(site.client, "audrey")
    page = site.client.get(f"/breakglass/windows/{site.window_id}/recordings").text
    assert '<script src="/assets/player/asciinema-player.min.js" defer></script>' in page
    assert f'data-cast="{API}/{site.window_id}/recordings/s-1/cast"' in page
    assert 'data-seek="0.000"' in page
    served = site.client.get("/assets/player/asciinema-player.min.js")
    assert served.status_code == 200 and served.content == files["asciinema-player.min.js"]
    (site.player / "asciinema-player.min.js").write_bytes(b"alert(1)")  # not the pinned bytes
    assert site.client.get("/assets/player/asciinema-player.min.js").status_code == 404
    assert site.client.get("/assets/player/../admin.db").status_code == 404


def test_the_windows_evidence_carries_the_recording_and_verifies(
    site: Site, tmp_path: Path
) -> None:
    log_in(site.client, "audrey")
    answer = site.client.get(f"{API}/{site.window_id}/evidence")
    assert answer.status_code == 200
    path = tmp_path / "evidence.tar"
    path.write_bytes(answer.content)
    with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
        assert f"recordings/window-{site.window_id}/s-1/manifest.json" in tar.getnames()
    summary = verify_export(path)
    assert summary.evidence and [r.session_id for r in summary.recordings] == ["s-1"]
