"""Identities and grants kept in step with the controller (a fake controller: unit tier).

The real controller cannot be built on this machine; these tests pin the ordering rules
(controller first, database after, undo on a failed commit, audit every attempt).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from appliance.admin.services import grants
from appliance.admin.services import identities as service
from appliance.admin.services.qr import qr_svg
from appliance.db.engine import make_engine
from appliance.db.models import AuditEvent, Identity, IdentityKind, ModelGrant
from appliance.ziti.errors import ControllerUnreachableError
from tests.unit.fake_controller import FakeController


def audit(db: Session) -> list[tuple[str, str, str]]:
    return [
        (e.action, e.target, e.outcome)
        for e in db.scalars(select(AuditEvent).order_by(AuditEvent.id))
    ]


def create(db: Session, controller: FakeController, name: str = "alice-laptop") -> Identity:
    made = service.create_identity(
        db,
        controller,
        name=name,
        kind=IdentityKind.device,
        role_attributes=["engineering"],
        enrollment_minutes=60,
        actor="admin1",
        client="127.0.0.1",
    )
    return made.identity


def test_create_controller_first_then_row_and_audit(db: Session) -> None:
    controller = FakeController()
    made = service.create_identity(
        db,
        controller,
        name="alice-laptop",
        kind=IdentityKind.device,
        role_attributes=["engineering"],
        enrollment_minutes=60,
        actor="admin1",
        client="127.0.0.1",
    )
    assert made.token.jwt == "jwt-for-alice-laptop"
    assert controller.identities["z1"]["attrs"] == ["engineering", "kind-device"]
    assert controller.identities["z1"]["type"] == "Device"
    row = db.scalar(select(Identity))
    assert row is not None and (row.ziti_id, row.state) == ("z1", "pending")
    assert audit(db) == [("identity.create", "alice-laptop", "ok")]
    assert "jwt-for" not in str(db.scalar(select(AuditEvent)).details)  # never stored


def test_controller_down_changes_nothing_but_is_audited(db: Session) -> None:
    controller = FakeController()
    controller.down = True
    with pytest.raises(ControllerUnreachableError, match="ctrl.test"):
        create(db, controller)
    assert db.scalars(select(Identity)).all() == []
    assert audit(db) == [("identity.create", "alice-laptop", "error")]


def test_failed_commit_undoes_the_controller_identity(
    db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = FakeController()

    def broken_commit() -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(db, "commit", broken_commit)
    with pytest.raises(OperationalError):
        create(db, controller)
    assert controller.identities == {}
    assert controller.calls == ["list_identities", "create_identity", "delete_identity"]


def test_duplicate_and_router_and_bad_attribute_are_refused_before_the_controller(
    db: Session,
) -> None:
    controller = FakeController()
    create(db, controller)
    with pytest.raises(service.IdentityError, match="already exists"):
        create(db, controller)
    with pytest.raises(service.IdentityError, match="routers are enrolled as edge routers"):
        service.create_identity(
            db,
            controller,
            name="r1",
            kind=IdentityKind.router,
            role_attributes=[],
            enrollment_minutes=60,
            actor="a",
            client="",
        )
    with pytest.raises(service.IdentityError, match="role attributes"):
        service.create_identity(
            db,
            controller,
            name="x1",
            kind=IdentityKind.user,
            role_attributes=["#bad attr"],
            enrollment_minutes=60,
            actor="a",
            client="",
        )
    assert controller.calls == ["list_identities", "create_identity"]


def test_sync_reports_what_changed(db: Session) -> None:
    controller = FakeController()
    create(db, controller, "one")
    create(db, controller, "two")
    controller.identities["z1"]["enrolled"] = True
    del controller.identities["z2"]
    controller.identities["z9"] = {
        "name": "stranger",
        "type": "Default",
        "attrs": [],
        "disabled": False,
        "enrolled": True,
    }
    report = service.sync_identities(db, controller, actor="admin1", client="")
    assert report.updated == {"one": ("pending", "enrolled")}
    assert report.missing_on_controller == ["two"]
    assert report.unmanaged_on_controller == ["stranger"]
    assert audit(db)[-1] == ("identity.sync", "*", "ok")


def test_a_background_sync_is_audited_only_when_it_changed_something(db: Session) -> None:
    controller = FakeController()
    create(db, controller, "one")
    service.sync_identities(db, controller, actor="admin1", client="")  # settle the state
    db.commit()
    before = len(audit(db))
    quiet = service.sync_identities(
        db, controller, actor="identity-watch", client="", audit_unchanged=False
    )
    assert not quiet.changed and len(audit(db)) == before
    controller.identities["z1"]["enrolled"] = True
    moved = service.sync_identities(
        db, controller, actor="identity-watch", client="", audit_unchanged=False
    )
    assert list(moved.updated) == ["one"] and moved.updated["one"][1] == "enrolled"
    assert audit(db)[-1] == ("identity.sync", "*", "ok") and len(audit(db)) == before + 1


def test_an_identity_made_while_a_sync_lists_the_controller_is_not_missing(
    db: Session, tmp_path: Path
) -> None:
    """Regression (issue 24): the background sync listed the controller, an admin made an
    identity, then the sync read the rows and marked the new one 'missing on controller',
    which took its keys out of the gateway's policy until the next pass."""
    controller = FakeController()
    listing = controller.list_identities

    def list_while_an_admin_creates(filter: str | None = None) -> list[object]:
        before = listing(filter)
        if filter is None:  # the sync's listing (the create lists by name itself)
            with Session(make_engine(f"sqlite:///{tmp_path / 'admin.db'}")) as other:
                create(other, controller, "made-meanwhile")
        return before

    controller.list_identities = list_while_an_admin_creates  # type: ignore[method-assign]
    report = service.sync_identities(
        db, controller, actor="identity-watch", client="", audit_unchanged=False
    )
    assert report.missing_on_controller == []
    row = db.scalar(select(Identity).where(Identity.name == "made-meanwhile"))
    assert row is not None and row.state == "pending"


def test_disable_enable_reissue_delete(db: Session) -> None:
    controller = FakeController()
    row = create(db, controller)
    service.set_disabled(db, controller, row, True, actor="a", client="")
    assert controller.identities["z1"]["disabled"] and row.state == "disabled"
    service.set_disabled(db, controller, row, False, actor="a", client="")
    assert row.state == "pending"
    token = service.reissue(db, controller, row, 30, actor="a", client="")
    assert token.jwt == "jwt2" and row.enrollment_expires_at == token.expires_at
    del controller.identities["z1"]  # already gone on the controller: delete still works
    service.delete_identity(db, controller, row, actor="a", client="")
    db.commit()
    assert db.scalars(select(Identity)).all() == []
    assert [a for a, _, _ in audit(db)][-4:] == [
        "identity.disable",
        "identity.enable",
        "identity.reissue",
        "identity.delete",
    ]


def test_grant_creates_a_dial_policy_and_no_key(db: Session) -> None:
    controller = FakeController()
    create(db, controller, "alice")
    made = grants.grant_model(
        db, controller, subject="@alice", model_service="tiny", actor="admin1", client=""
    )
    assert (made.subject, made.model_service) == ("@alice", "tiny")
    assert "key_prefix" not in db.scalars(select(AuditEvent)).all()[-1].details
    assert controller.policies["p1"] == {
        "name": "appliance-grant-alice-tiny",
        "type": "Dial",
        "identity_roles": ["@z1"],
        "service_roles": ["@svc-tiny"],
    }
    team = grants.grant_model(
        db, controller, subject="#engineering", model_service="tiny", actor="admin1", client=""
    )
    assert controller.policies["p2"]["identity_roles"] == ["#engineering"]
    grants.revoke_grant(db, controller, team, actor="admin1", client="")
    db.commit()
    assert "p2" not in controller.policies
    assert [g.subject for g in db.scalars(select(ModelGrant))] == ["@alice"]


def test_grant_for_an_unknown_model_or_subject(db: Session) -> None:
    controller = FakeController()
    with pytest.raises(service.IdentityError, match="no identity named 'nobody'"):
        grants.grant_model(
            db, controller, subject="@nobody", model_service="tiny", actor="a", client=""
        )
    with pytest.raises(service.IdentityError, match="no model service named 'gpt'"):
        grants.grant_model(
            db, controller, subject="#eng", model_service="gpt", actor="a", client=""
        )
    assert controller.policies == {}


def test_qr_code_is_inline_svg() -> None:
    svg = qr_svg("eyJhbGciOi.test.jwt")
    assert svg.startswith("<?xml") and "<svg" in svg and "<script" not in svg


def test_a_create_whose_answer_was_lost_leaves_no_orphan_on_the_controller(db: Session) -> None:
    """A slow controller applied a create after the client gave up: the identity is on the
    controller with our mark and no row here. The next create of the name removes it."""
    controller = FakeController()
    controller.create_identity(
        "laptop", type="Device", role_attributes=["kind-device"], enrollment_minutes=60
    )
    made = create(db, controller, "laptop")
    assert [v["name"] for v in controller.identities.values()] == ["laptop"]
    assert list(controller.identities) == [made.ziti_id]
    removed = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "identity.orphan-removed")
    ).all()
    assert [r.details["ziti_id"] for r in removed] == ["z1"]


def test_an_identity_this_service_did_not_make_is_never_removed(db: Session) -> None:
    controller = FakeController()
    controller.create_identity("laptop", type="Device", role_attributes=[], enrollment_minutes=60)
    with pytest.raises(service.IdentityError, match="was not made by this service"):
        create(db, controller, "laptop")
    assert [v["name"] for v in controller.identities.values()] == ["laptop"]


def test_deleting_an_identity_removes_its_grants_policies_on_the_controller(db: Session) -> None:
    """Found in the lab: a policy left behind named a deleted identity and made the next
    grant of the same name fail on the controller (400, duplicate name)."""
    controller = FakeController()
    create(db, controller, "alice")
    grants.grant_model(db, controller, subject="@alice", model_service="tiny", actor="a", client="")
    row = db.scalar(select(Identity).where(Identity.name == "alice"))
    assert row is not None and controller.policies
    service.delete_identity(db, controller, row, actor="a", client="")
    db.commit()
    assert controller.policies == {}
    assert db.scalars(select(ModelGrant)).all() == []
    create(db, controller, "alice")
    again = grants.grant_model(
        db, controller, subject="@alice", model_service="tiny", actor="a", client=""
    )
    assert again.ziti_policy_id in controller.policies
