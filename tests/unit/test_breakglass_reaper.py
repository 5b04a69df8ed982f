"""The reaper's tick: ends first, gate second, controller cleanup last; an unreadable
database closes the gate (unit tier: fake controller, `nft` replaced by a recorder)."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.breakglass import reaper as reaper_module
from appliance.breakglass.clock import BootClock, WallStepWatch
from appliance.breakglass.reaper import ControllerOnDemand, Reaper
from appliance.breakglass.service import Breakglass
from appliance.breakglass.windows import WindowAsk
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, BreakglassWindow, Role, User, WindowState
from appliance.lab.windows import add_active_window
from appliance.ziti.errors import ControllerUnreachableError
from tests.unit.fake_controller import FakeController

CLOCK = BootClock("boot-a", 10.0)


def recorder(tmp_path: Path) -> tuple[Path, Path]:
    """An executable that saves the nft script it is given, standing in for nft."""
    log = tmp_path / "nft-scripts"
    script = tmp_path / "fake-nft"
    script.write_text(f"#!/bin/sh\ncat >> {log}\necho '#--' >> {log}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


class Clock:
    """A boot clock the test moves on."""

    def __init__(self, now: BootClock) -> None:
        self.now = now

    def __call__(self) -> BootClock:
        return self.now


def reaper_of(
    config: AdminSettings, fake: FakeController, nft: Path, clock: Clock | None = None
) -> Reaper:
    """The reaper as its entry point builds it, over ``fake`` and a recording ``nft``."""
    breakglass = Breakglass(
        config.breakglass_policy(), controller=lambda: fake, clock=clock or Clock(CLOCK)
    )
    return Reaper(breakglass, config.reaper_config(), nft=(str(nft),))


def settings(tmp_path: Path, url: str) -> AdminSettings:
    return AdminSettings(
        profile="test",
        db_url=url,
        data_dir=tmp_path,
        breakglass_gate_interfaces=["vendor0"],
        breakglass_gate_ports=[3022],
    )


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as db:
        for name in ("alice", "bob"):
            create_user(db, name, Role.admin, password="a-long-password", actor="test")
        db.commit()
    return url


def test_tick_ends_the_window_and_closes_the_gate_before_cleanup(tmp_path: Path, url: str) -> None:
    fake = FakeController()
    fake.services = ["ssh-gw1"]
    config = settings(tmp_path, url)
    clock = Clock(CLOCK)
    nft, log = recorder(tmp_path)
    reaper = reaper_of(config, fake, nft, clock)
    with Session(make_engine(url), expire_on_commit=False) as db:
        alice, bob = (db.get(User, 1), db.get(User, 2))
        assert alice is not None and bob is not None
        ask = WindowAsk("r", "t", ["ssh-gw1"], ["eve"], 5)
        window = reaper.breakglass.request_window(db, ask, requester=alice, client="")
        db.commit()
        reaper.breakglass.approve(db, window, approver=bob, note="", client="")
    assert reaper.tick() == []
    assert "meta time <" in log.read_text()  # open for the active window

    calls_before = len(fake.calls)
    fake.down = True  # the cleanup will fail: the end and the gate must not wait for it
    clock.now = BootClock("boot-a", 10.0 + 5 * 60 + 1)
    assert reaper.tick() == [window.id]
    scripts = log.read_text().split("#--")
    assert "meta time <" not in scripts[-2]  # the last script written closes the gate
    assert len(fake.calls) > calls_before  # and the cleanup was tried after it
    with Session(make_engine(url)) as db:
        ended = db.get(BreakglassWindow, window.id)
        assert ended is not None and ended.state == WindowState.expired
        assert ended.cleanup_confirmed_at is None and ended.ziti_objects["cleanup_error"]
    fake.down = False
    reaper.tick()
    with Session(make_engine(url)) as db:
        ended = db.get(BreakglassWindow, window.id)
        assert ended is not None and ended.cleanup_confirmed_at is not None


def test_a_database_that_cannot_be_read_closes_the_gate(tmp_path: Path, url: str) -> None:
    nft, log = recorder(tmp_path)
    add_active_window(url, 390, clock=CLOCK)
    reaper = reaper_of(settings(tmp_path, url), FakeController(), nft)
    reaper.tick()
    assert "meta time <" in log.read_text()
    with make_engine(url).begin() as connection:  # the reaper's next read fails
        connection.exec_driver_sql("ALTER TABLE breakglass_windows RENAME TO elsewhere")
    reaper.tick()
    assert "meta time <" not in log.read_text().split("#--")[-2]


def test_an_unreadable_event_file_is_said_once_not_every_tick(
    tmp_path: Path, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    events = tmp_path / "events.jsonl"
    events.mkdir()  # a folder where the controller's event file should be: unreadable
    config = settings(tmp_path, url).model_copy(update={"controller_events_file": events})
    nft, _ = recorder(tmp_path)
    reaper = reaper_of(config, FakeController(), nft)
    for _ in range(5):
        reaper.tick()
    failures = [r for r in caplog.records if "controller's events failed" in r.getMessage()]
    assert len(failures) == 1


def test_a_controller_that_cannot_be_made_is_said_once_and_windows_still_end(
    tmp_path: Path, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    nft, log = recorder(tmp_path)
    wid = add_active_window(url, 390, clock=CLOCK)
    made: list[str] = []

    def make() -> FakeController:
        made.append("tried")
        raise ControllerUnreachableError("cannot reach the controller", url="https://ctrl.test")

    config = settings(tmp_path, url)
    clock = Clock(CLOCK)
    breakglass = Breakglass(
        config.breakglass_policy(), controller=ControllerOnDemand(make), clock=clock
    )
    reaper = Reaper(breakglass, config.reaper_config(), nft=(str(nft),))
    reaper.tick()
    assert "meta time <" in log.read_text()
    clock.now = BootClock("boot-b", 1.0)  # the host restarted: the window is over
    for _ in range(4):
        reaper.tick()
    assert made == ["tried"]  # not tried again within the minute
    said = [r for r in caplog.records if "no controller client" in r.getMessage()]
    assert len(said) == 1
    assert "meta time <" not in log.read_text().split("#--")[-2]
    with Session(make_engine(url)) as db:
        ended = db.get(BreakglassWindow, wid)
        assert ended is not None and ended.state == WindowState.expired
        assert ended.cleanup_confirmed_at is None  # the cleanup waits for the controller


def test_a_stepped_wall_clock_is_recorded_and_the_window_still_ends_by_the_boot_clock(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    nft, log = recorder(tmp_path)
    add_active_window(url, 60, clock=CLOCK)  # ends 60 s from now, on both clocks
    clock = Clock(CLOCK)
    reaper = reaper_of(settings(tmp_path, url), FakeController(), nft, clock)
    wall = [time.time()]
    monkeypatch.setattr(reaper_module.time, "time", lambda: wall[0])
    reaper.tick()
    wall[0] += 1.0  # a quarter of a tick late: no step
    clock.now = BootClock("boot-a", CLOCK.boottime + 1.0)
    reaper.tick()
    # The wall clock goes 10 minutes back; 61 s later on the boot clock the window is over
    # though the wall clock says it has 9 minutes left.
    wall[0] += 60.0 - 600.0
    clock.now = BootClock("boot-a", CLOCK.boottime + 61.0)
    assert len(reaper.tick()) == 1
    assert "meta time <" not in log.read_text().split("#--")[-2]
    assert "wall clock was stepped 600.0 s back" in caplog.text
    with Session(make_engine(url)) as db:
        steps = db.scalars(select(AuditEvent).where(AuditEvent.action == "clock.stepped")).all()
    assert [(e.actor, e.target, e.details["seconds"]) for e in steps] == [
        ("reaper", "site", -600.0)
    ]


def test_a_wall_step_is_a_jump_between_the_clocks_not_a_slew_or_a_reboot() -> None:
    watch = WallStepWatch(threshold_s=2.0)
    assert watch.moved(1000.0, BootClock("a", 10.0)) is None  # the first reading
    assert watch.moved(1001.5, BootClock("a", 11.0)) is None  # 0.5 s: slewed, not stepped
    assert watch.moved(1602.0, BootClock("a", 12.0)) == pytest.approx(599.5)
    assert watch.moved(5.0, BootClock("b", 3.0)) is None  # another boot: a first reading
