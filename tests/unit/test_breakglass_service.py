"""Break-glass windows: the two-person rule, activation and an end that sticks (unit tier:
a fake controller, since the real one cannot be built here; a real SQLite database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.services.accounts import create_user
from appliance.breakglass.clock import BootClock
from appliance.breakglass.errors import (
    BreakglassConflictError,
    BreakglassError,
    BreakglassForbiddenError,
    ShellLoginError,
)
from appliance.breakglass.policy import BreakglassPolicy
from appliance.breakglass.provisioning import Handover
from appliance.breakglass.service import Breakglass
from appliance.breakglass.shell.logins import check_login, hash_secret
from appliance.breakglass.windows import WindowAsk
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, BreakglassWindow, Role, User, WindowState, utcnow
from appliance.ziti.errors import ControllerUnreachableError, ZitiError
from tests.unit.fake_controller import FakeController

POLICY = BreakglassPolicy(
    max_minutes=120, enrollment_minutes=10, router_roles=("#vendor-access",), confirm_seconds=2
)
BOOT = BootClock("boot-a", 1000.0)


def no_controller() -> FakeController:
    raise ZitiError("no controller in this test")


def breakglass(fake: FakeController | None = None, policy: BreakglassPolicy = POLICY) -> Breakglass:
    """The site's break-glass over ``fake`` (or no controller), on the boot clock BOOT."""
    return Breakglass(
        policy, controller=no_controller if fake is None else lambda: fake, clock=lambda: BOOT
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    with Session(engine, expire_on_commit=False) as session:
        for name in ("alice", "bob"):
            create_user(session, name, Role.admin, password="a-long-password", actor="test")
        session.commit()
        yield session


def user(db: Session, name: str) -> User:
    found = db.scalar(select(User).where(User.username == name))
    assert found is not None
    return found


def events(db: Session) -> list[tuple[str, str, str]]:
    return [
        (e.action, e.target, e.outcome)
        for e in db.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.startswith("breakglass"))
            .order_by(AuditEvent.seq)
        )
    ]


def request(db: Session, **overrides: object) -> BreakglassWindow:
    args: dict[str, Any] = {
        "reason": "router crash on gw1",
        "ticket": "CASE-1234",
        "scope": ["ssh-gw1"],
        "engineers": ["eve", "mallory"],
        "duration_minutes": 30,
        "starts_at": None,
    }
    args.update(overrides)
    requester = args.pop("requester", None) or user(db, "alice")
    window = breakglass().request_window(
        db, WindowAsk(**args), requester=requester, client="127.0.0.1"
    )
    db.commit()
    return window


def extend(db: Session, window: BreakglassWindow, requester: str) -> BreakglassWindow:
    ext = breakglass().request_extension(
        db,
        window,
        requester=user(db, requester),
        reason="more time",
        ticket="CASE-1234",
        minutes=15,
        client="",
    )
    db.commit()
    return ext


def controller() -> FakeController:
    fake = FakeController()
    fake.services = ["ssh-gw1", "ssh-gpu1", "admin-api"]
    return fake


def active(db: Session, fake: FakeController) -> tuple[BreakglassWindow, list[Handover]]:
    window = request(db)
    handovers = breakglass(fake).approve(db, window, approver=user(db, "bob"), note="ok", client="")
    return window, handovers


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"duration_minutes": 121}, "expected 1 to 120 min"),
        ({"duration_minutes": 0}, "expected 1 to 120 min"),
        ({"scope": []}, "needs a scope"),
        ({"engineers": []}, "at least one named vendor engineer"),
        ({"engineers": ["eve", "eve"]}, "must not repeat"),
        ({"engineers": ["../root"]}, "letters, digits"),
        ({"reason": "  "}, "needs a reason and a ticket"),
        ({"starts_at": utcnow() - timedelta(hours=1)}, "is in the past"),
        ({"starts_at": utcnow() + timedelta(days=31)}, "more than 30 days ahead"),
    ],
)
def test_malformed_requests_are_refused_and_nothing_is_recorded(
    db: Session, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(BreakglassError, match=message):
        request(db, **overrides)
    db.rollback()
    assert db.scalars(select(BreakglassWindow)).all() == []
    assert events(db) == []


def test_requester_cannot_approve_or_deny_their_own_window(db: Session) -> None:
    fake = controller()
    window = request(db)
    with pytest.raises(BreakglassForbiddenError, match="a second admin must decide"):
        breakglass(fake).approve(db, window, approver=user(db, "alice"), note="", client="")
    with pytest.raises(BreakglassForbiddenError):
        breakglass().deny(db, window, approver=user(db, "alice"), note="", client="")
    assert window.state == WindowState.requested
    assert fake.calls == []


def test_approval_activates_with_short_tokens_and_exactly_the_scope(db: Session) -> None:
    fake = controller()
    window, handovers = active(db, fake)
    assert window.state == WindowState.active
    assert window.decided_by == "bob"
    assert window.ends_at is not None and window.activated_at is not None
    # A whole-second end, at most a second short of the duration; both clocks agree on it.
    assert window.ends_at.microsecond == 0
    length = (window.ends_at - window.activated_at).total_seconds()
    assert 30 * 60 - 1 < length <= 30 * 60
    assert window.boot_id == "boot-a"
    assert window.deadline_boottime == pytest.approx(1000.0 + length)
    assert [h.engineer for h in handovers] == ["eve", "mallory"]
    tag = f"breakglass-w{window.id}"
    assert sorted(v["name"] for v in fake.identities.values()) == [
        f"vendor-w{window.id}-eve",
        f"vendor-w{window.id}-mallory",
    ]
    assert all(v["attrs"] == ["breakglass", tag] for v in fake.identities.values())
    (dial,) = fake.policies.values()
    assert dial == {
        "name": f"{tag}-dial",
        "type": "Dial",
        "identity_roles": [f"#{tag}"],
        "service_roles": ["@svc-ssh-gw1"],
    }
    (routers,) = fake.router_policies.values()
    assert routers["edge_router_roles"] == ["#vendor-access"]
    assert events(db) == [
        ("breakglass.request", f"window:{window.id}", "ok"),
        ("breakglass.approve", f"window:{window.id}", "ok"),
        ("breakglass.activate", f"window:{window.id}", "ok"),
    ]


def test_activation_that_fails_half_way_leaves_nothing_on_the_controller(db: Session) -> None:
    fake = controller()
    window = request(db, scope=["ssh-gw1", "no-such-service"])
    with pytest.raises(BreakglassError, match="no service named 'no-such-service'"):
        breakglass(fake).approve(db, window, approver=user(db, "bob"), note="", client="")
    assert (fake.identities, fake.policies, fake.router_policies) == ({}, {}, {})
    db.refresh(window)
    assert window.state == WindowState.requested  # can be approved again once fixed
    assert events(db)[-1] == ("breakglass.activate", f"window:{window.id}", "error")


def test_approval_with_the_controller_down_changes_nothing(db: Session) -> None:
    fake = controller()
    fake.down = True
    window = request(db)
    with pytest.raises(ControllerUnreachableError):
        breakglass(fake).approve(db, window, approver=user(db, "bob"), note="", client="")
    db.refresh(window)
    assert window.state == WindowState.requested
    assert events(db)[-1][2] == "error"


def test_revoke_deletes_identities_and_policies_and_confirms_no_circuit(db: Session) -> None:
    fake = controller()
    window, _ = active(db, fake)
    eve = window.ziti_objects["identities"]["eve"]
    fake.circuits["c1"] = (eve, "ssh-gw1")
    assert [c.engineer for c in breakglass(fake).connections(window)] == ["eve"]
    fake.lingering_lists = 3  # the controller takes a moment to tear the circuit down
    assert breakglass(fake).revoke(db, window, actor="bob", reason="done", client="")
    assert window.state == WindowState.revoked
    assert (fake.identities, fake.policies, fake.router_policies, fake.circuits) == ({}, {}, {}, {})
    assert window.cleanup_confirmed_at is not None
    confirmed = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "breakglass.end-confirmed")
    ).one()
    assert confirmed.outcome == "ok"
    assert confirmed.details["decision_to_confirmation_ms"] >= 0
    assert sorted(confirmed.details["identities_deleted"]) == sorted(
        window.ziti_objects["identities"].values()
    )


def test_revoke_with_the_controller_down_stands_and_the_reaper_finishes(db: Session) -> None:
    fake = controller()
    window, _ = active(db, fake)
    fake.down = True
    assert not breakglass(fake).revoke(db, window, actor="bob", reason="done", client="")
    db.refresh(window)
    assert window.state == WindowState.revoked  # the decision was committed first
    assert window.cleanup_confirmed_at is None
    assert "cannot reach" in window.ziti_objects["cleanup_error"]
    # The reaper retries every tick; a failure is recorded once, not every second.
    breakglass(fake).reap(db, clock=BOOT)
    breakglass(fake).reap(db, clock=BOOT)
    failed = [
        e for e in events(db) if e == ("breakglass.end-confirmed", f"window:{window.id}", "error")
    ]
    assert len(failed) == 1
    fake.down = False
    breakglass(fake).reap(db, clock=BOOT)
    assert window.cleanup_confirmed_at is not None
    assert fake.identities == {}
    assert events(db)[-1] == ("breakglass.end-confirmed", f"window:{window.id}", "ok")


def test_circuits_that_never_close_are_reported_not_confirmed(db: Session) -> None:
    fake = controller()
    window, _ = active(db, fake)
    fake.circuits["c9"] = (window.ziti_objects["identities"]["eve"], "ssh-gw1")
    fake.lingering_lists = 10**6
    quick = BreakglassPolicy(120, 10, ("#vendor-access",), confirm_seconds=0.3)
    assert not breakglass(fake, quick).revoke(db, window, actor="bob", reason="done", client="")
    assert window.cleanup_confirmed_at is None
    assert window.ziti_objects["cleanup_error"] == "1 vendor circuit(s) still open"


def test_reaper_ends_a_window_on_either_clock(db: Session) -> None:
    fake = controller()
    window, _ = active(db, fake)
    assert window.ends_at is not None
    # Not over on either clock: nothing happens.
    assert breakglass(fake).reap(db, clock=BootClock("boot-a", 1000.0 + 60)) == []
    # The wall clock was set back an hour, but the boot clock passed the deadline.
    late = BootClock("boot-a", 1000.0 + 30 * 60 + 0.5)
    assert breakglass(fake).reap(db, clock=late, now=utcnow() - timedelta(hours=1)) == [window.id]
    assert window.state == WindowState.expired
    assert window.end_reason == "end time reached on the boot clock"
    assert fake.identities == {}


def test_reaper_ends_a_window_on_the_wall_clock_and_after_a_reboot(db: Session) -> None:
    fake = controller()
    first, _ = active(db, fake)
    assert first.ends_at is not None
    assert breakglass(fake).reap(db, clock=BOOT, now=first.ends_at) == [first.id]
    assert first.end_reason == "end time reached"
    second, _ = active(db, fake)
    assert breakglass(fake).reap(db, clock=BootClock("boot-b", 5.0)) == [second.id]
    assert second.end_reason == "the host restarted during the window"


def test_gate_follows_the_earlier_of_both_clocks(db: Session) -> None:
    fake = controller()
    assert not breakglass().gate_state(db, clock=BOOT).open
    window, _ = active(db, fake)
    assert window.ends_at is not None
    state = breakglass().gate_state(db, clock=BOOT)
    assert state.open and state.until == window.ends_at
    assert 29 * 60 < state.seconds <= 30 * 60
    # Wall clock set back an hour: the gate's timer still runs out with the boot clock.
    back = breakglass().gate_state(
        db, clock=BootClock("boot-a", 1000.0 + 600), now=utcnow() - timedelta(hours=1)
    )
    assert back.seconds == pytest.approx(20 * 60, abs=1)
    assert not breakglass().gate_state(db, clock=BootClock("boot-b", 1.0)).open
    breakglass(fake).revoke(db, window, actor="bob", reason="x", client="")
    assert not breakglass().gate_state(db, clock=BOOT).open


def test_extension_is_a_new_request_with_the_same_two_person_rule(db: Session) -> None:
    fake = controller()
    window, _ = active(db, fake)
    assert window.ends_at is not None and window.deadline_boottime is not None
    ends, deadline = window.ends_at, window.deadline_boottime
    ext = extend(db, window, "bob")
    assert (ext.scope, ext.engineers, ext.state) == (
        window.scope,
        window.engineers,
        WindowState.requested,
    )
    with pytest.raises(BreakglassForbiddenError):
        breakglass(fake).approve(db, ext, approver=user(db, "bob"), note="", client="")
    assert breakglass(fake).approve(db, ext, approver=user(db, "alice"), note="", client="") == []
    assert window.ends_at == ends + timedelta(minutes=15)
    assert window.deadline_boottime == deadline + 15 * 60
    assert ext.state == WindowState.approved
    assert len(fake.identities) == 2  # no new identities: the same engineers keep going
    assert events(db)[-1] == ("breakglass.extend", f"window:{window.id}", "ok")


def test_pending_extension_dies_with_its_window_and_ended_windows_cannot_extend(
    db: Session,
) -> None:
    fake = controller()
    window, _ = active(db, fake)
    ext = extend(db, window, "bob")
    breakglass(fake).revoke(db, window, actor="bob", reason="x", client="")
    assert ext.state == WindowState.expired
    with pytest.raises(BreakglassConflictError, match="only an active window"):
        extend(db, window, "alice")


def test_scheduled_window_waits_for_its_start_and_its_approver(db: Session) -> None:
    fake = controller()
    start = utcnow() + timedelta(hours=2)
    window = request(db, starts_at=start)
    assert breakglass(fake).approve(db, window, approver=user(db, "bob"), note="", client="") == []
    assert window.state == WindowState.approved and fake.identities == {}
    with pytest.raises(BreakglassConflictError, match="activate it then"):
        breakglass(fake).activate(db, window, admin=user(db, "bob"), client="")
    with pytest.raises(BreakglassForbiddenError, match="only bob"):
        breakglass(fake).activate(db, window, admin=user(db, "alice"), client="")
    # Never started: once its start plus duration is past, the reaper expires it.
    later = start + timedelta(minutes=31)
    assert breakglass(fake).reap(db, clock=BOOT, now=later) == [window.id]
    assert window.state == WindowState.expired


def test_withdraw_only_by_the_requester_and_only_before_start(db: Session) -> None:
    window = request(db)
    with pytest.raises(BreakglassForbiddenError, match="only alice"):
        breakglass().withdraw(db, window, requester=user(db, "bob"), client="")
    breakglass().withdraw(db, window, requester=user(db, "alice"), client="")
    assert window.state == WindowState.withdrawn
    with pytest.raises(BreakglassConflictError):
        breakglass().withdraw(db, window, requester=user(db, "alice"), client="")


def test_seal_ends_every_window_at_once(db: Session) -> None:
    fake = controller()
    first, _ = active(db, fake)
    second, _ = active(db, fake)
    pending = request(db)
    ended = breakglass(fake).seal(db, admin=user(db, "alice"), client="")
    assert sorted(ended) == sorted([first.id, second.id, pending.id])
    assert (first.state, second.state, pending.state) == (
        WindowState.revoked,
        WindowState.revoked,
        WindowState.denied,
    )
    assert first.end_reason == "site sealed"
    assert fake.identities == {} and fake.policies == {} and fake.router_policies == {}
    assert ("breakglass.seal", "site", "ok") in events(db)


def test_deny_is_final(db: Session) -> None:
    fake = controller()
    window = request(db)
    breakglass().deny(db, window, approver=user(db, "bob"), note="not now", client="")
    assert (window.state, window.decided_by, window.decision_note) == (
        WindowState.denied,
        "bob",
        "not now",
    )
    with pytest.raises(BreakglassConflictError):
        breakglass(fake).approve(db, window, approver=user(db, "bob"), note="", client="")


def test_activation_hands_over_shell_secrets_when_the_scope_names_a_vendor_shell(
    db: Session,
) -> None:
    """Issue 26: a secret per engineer, shown once, stored as a hash, good for that host."""
    fake = controller()
    fake.services.append("vendor-shell-gw1")
    window = request(db, scope=["vendor-shell-gw1"])
    handovers = breakglass(fake).approve(db, window, approver=user(db, "bob"), note="", client="")
    secrets = {h.engineer: h.shell_secret for h in handovers}
    assert all(secrets.values()) and secrets["eve"] != secrets["mallory"]
    stored = window.ziti_objects["shell_secrets"]
    assert stored == {e: hash_secret(s) for e, s in secrets.items()}
    assert secrets["eve"] not in repr(handovers)
    grant = check_login(db, "eve", secrets["eve"], "gw1", clock=BOOT)
    assert (grant.window_id, grant.engineer) == (window.id, "eve")
    with pytest.raises(ShellLoginError):
        check_login(db, "eve", secrets["mallory"], "gw1", clock=BOOT)
    _, plain = active(db, fake)  # a scope without a vendor shell: no secrets
    assert [h.shell_secret for h in plain] == ["", ""]
