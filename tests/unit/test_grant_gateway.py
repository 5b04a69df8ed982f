"""Grants with a site llm-gateway: the Dial policy is on the gateway, the model one it serves.

Grants make no keys (keys belong to identities: test_api_keys.py); the `admin gateway-keys`
command and the sealed keys are gone (ADR 0016).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from appliance.admin.services import grants
from appliance.admin.services import identities as service
from appliance.admin.settings import AdminSettings
from appliance.cli.main import app
from appliance.db.models import IdentityKind
from tests.unit.fake_controller import FakeController


def _gateway(models: tuple[str, ...] = ("tiny",)) -> grants.Gateway:
    return grants.Gateway("llm-gateway", models)


def _identity(db: Session, controller: FakeController, name: str) -> None:
    service.create_identity(
        db,
        controller,
        name=name,
        kind=IdentityKind.user,
        role_attributes=[],
        enrollment_minutes=60,
        actor="admin1",
        client="",
    )


def test_with_a_gateway_a_grant_dials_the_gateway(db: Session) -> None:
    controller = FakeController()
    controller.services = ["tiny", "llm-gateway"]
    _identity(db, controller, "analyst")
    made = grants.grant_model(
        db,
        controller,
        subject="@analyst",
        model_service="tiny",
        actor="admin1",
        client="",
        gateway=_gateway(),
    )
    assert controller.policies["p1"]["service_roles"] == ["@svc-llm-gateway"]
    assert (made.subject, made.model_service) == ("@analyst", "tiny")


def test_the_metrics_grant_dials_the_gateway_though_no_model_has_its_name(db: Session) -> None:
    controller = FakeController()
    controller.services = ["llm-gateway"]
    made = grants.grant_model(
        db,
        controller,
        subject="#ops",
        model_service="metrics",
        actor="admin1",
        client="",
        gateway=_gateway(),
    )
    assert controller.policies["p1"]["service_roles"] == ["@svc-llm-gateway"]
    assert made.model_service == "metrics"


def test_a_model_the_gateway_does_not_serve_is_refused(db: Session) -> None:
    controller = FakeController()
    controller.services = ["llm-gateway"]
    with pytest.raises(service.IdentityError, match="serves no model named 'gpt'"):
        grants.grant_model(
            db,
            controller,
            subject="#eng",
            model_service="gpt",
            actor="a",
            client="",
            gateway=_gateway(),
        )
    controller.services = []
    with pytest.raises(service.IdentityError, match="no llm-gateway service named 'llm-gateway'"):
        grants.grant_model(
            db,
            controller,
            subject="#eng",
            model_service="tiny",
            actor="a",
            client="",
            gateway=_gateway(),
        )
    assert controller.policies == {}


def test_site_gateway_follows_the_settings(tmp_path: Path) -> None:
    assert grants.site_gateway(AdminSettings(profile="test", data_dir=tmp_path)) is None
    settings = AdminSettings(
        profile="test", data_dir=tmp_path, gateway_service="llm-gateway", gateway_models=["tiny"]
    )
    assert grants.site_gateway(settings) == grants.Gateway("llm-gateway", ("tiny",))


def test_the_gateway_keys_command_is_gone() -> None:
    done = CliRunner().invoke(app, ["admin", "gateway-keys"])
    assert done.exit_code != 0 and "No such command" in done.output


def test_granting_the_same_model_twice_is_refused_not_sent_to_the_controller(
    db: Session,
) -> None:
    controller = FakeController()
    controller.services = ["llm-gateway"]
    grant = {"subject": "#eng", "model_service": "tiny", "actor": "a", "client": ""}
    grants.grant_model(db, controller, gateway=_gateway(), **grant)
    with pytest.raises(service.IdentityError, match="already granted 'tiny'.*already exists"):
        grants.grant_model(db, controller, gateway=_gateway(), **grant)
    assert len(controller.policies) == 1
