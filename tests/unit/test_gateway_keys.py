"""The llm-gateway's virtual keys: sealed beside their hash, unsealed for its configuration."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from appliance.admin.services import identities as service
from appliance.admin.services.gateway_keys import GatewayKeyError, KeySealer, virtual_keys
from appliance.admin.settings import AdminSettings
from appliance.cli.main import app
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import GatewayKey, IdentityKind
from tests.unit.fake_controller import FakeController


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _gateway(tmp_path: Path, models: tuple[str, ...] = ("tiny",)) -> service.Gateway:
    return service.Gateway("llm-gateway", models, KeySealer(tmp_path / "gateway-keys.key"))


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


def test_sealing_round_trips_and_the_key_file_is_made_root_only(tmp_path: Path) -> None:
    sealer = KeySealer(tmp_path / "data" / "gateway-keys.key")
    sealed = sealer.seal("sk-gw-secret")
    assert "sk-gw-secret" not in sealed
    assert sealer.seal("sk-gw-secret") != sealed  # a fresh nonce each time
    assert KeySealer(tmp_path / "data" / "gateway-keys.key").unseal(sealed) == "sk-gw-secret"
    mode = stat.S_IMODE((tmp_path / "data" / "gateway-keys.key").stat().st_mode)
    assert mode == 0o600


def test_a_key_sealed_elsewhere_or_altered_is_refused_by_name(tmp_path: Path) -> None:
    sealed = KeySealer(tmp_path / "a.key").seal("sk-gw-secret")
    other = KeySealer(tmp_path / "b.key")
    other.seal("another site's key")  # makes b.key
    with pytest.raises(GatewayKeyError, match="not from the same site"):
        other.unseal(sealed)
    altered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(GatewayKeyError, match="not from the same site"):
        KeySealer(tmp_path / "a.key").unseal(altered)
    with pytest.raises(GatewayKeyError, match="is missing"):
        KeySealer(tmp_path / "gone.key").unseal(sealed)
    (tmp_path / "short.key").write_bytes(b"123")
    with pytest.raises(GatewayKeyError, match="holds 3 bytes"):
        KeySealer(tmp_path / "short.key").unseal(sealed)


def test_with_a_gateway_a_grant_dials_the_gateway_and_seals_its_key(
    db: Session, tmp_path: Path
) -> None:
    controller = FakeController()
    controller.services = ["tiny", "llm-gateway"]
    _identity(db, controller, "analyst")
    made = service.grant_model(
        db,
        controller,
        subject="@analyst",
        model_service="tiny",
        actor="admin1",
        client="",
        gateway=_gateway(tmp_path),
    )
    assert controller.policies["p1"]["service_roles"] == ["@svc-llm-gateway"]
    row = db.scalar(select(GatewayKey))
    assert row is not None and row.sealed_key and made.api_key not in row.sealed_key
    keys = virtual_keys(db, KeySealer(tmp_path / "gateway-keys.key"))
    assert [(k.key, k.allowed_models) for k in keys] == [(made.api_key, ["tiny"])]
    assert keys[0].name == f"grant-{made.grant.id}-analyst"


def test_a_model_the_gateway_does_not_serve_is_refused(db: Session, tmp_path: Path) -> None:
    controller = FakeController()
    controller.services = ["llm-gateway"]
    with pytest.raises(service.IdentityError, match="serves no model named 'gpt'"):
        service.grant_model(
            db,
            controller,
            subject="#eng",
            model_service="gpt",
            actor="a",
            client="",
            gateway=_gateway(tmp_path),
        )
    controller.services = []
    with pytest.raises(service.IdentityError, match="no llm-gateway service named 'llm-gateway'"):
        service.grant_model(
            db,
            controller,
            subject="#eng",
            model_service="tiny",
            actor="a",
            client="",
            gateway=_gateway(tmp_path),
        )
    assert controller.policies == {}


def test_keys_made_without_a_gateway_are_not_written_into_its_configuration(
    db: Session, tmp_path: Path
) -> None:
    controller = FakeController()
    service.grant_model(db, controller, subject="#eng", model_service="tiny", actor="a", client="")
    assert virtual_keys(db, KeySealer(tmp_path / "gateway-keys.key")) == []


def test_the_cli_prints_the_keys_for_the_installer(db: Session, tmp_path: Path) -> None:
    controller = FakeController()
    controller.services = ["llm-gateway"]
    made = service.grant_model(
        db,
        controller,
        subject="#eng",
        model_service="tiny",
        actor="a",
        client="",
        gateway=_gateway(tmp_path),
    )
    config = tmp_path / "config.yaml"
    config.write_text(f"profile: test\ndata_dir: {tmp_path}\n")
    assert AdminSettings(profile="test", data_dir=tmp_path).gateway_key_file == (
        tmp_path / "gateway-keys.key"
    )
    done = CliRunner().invoke(app, ["admin", "gateway-keys", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == [
        {"name": f"grant-{made.grant.id}-eng", "key": made.api_key, "allowed_models": ["tiny"]}
    ]


def test_granting_the_same_model_twice_is_refused_not_sent_to_the_controller(
    db: Session, tmp_path: Path
) -> None:
    controller = FakeController()
    controller.services = ["llm-gateway"]
    grant = {"subject": "#eng", "model_service": "tiny", "actor": "a", "client": ""}
    service.grant_model(db, controller, gateway=_gateway(tmp_path), **grant)
    with pytest.raises(service.IdentityError, match="already granted 'tiny'.*already exists"):
        service.grant_model(db, controller, gateway=_gateway(tmp_path), **grant)
    assert len(controller.policies) == 1
