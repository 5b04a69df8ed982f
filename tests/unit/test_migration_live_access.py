"""Migration 0005: keys of the former grant-bound scheme carry over to their identity."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from appliance.admin.security import hash_token
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade

_NOW = "2026-11-30 10:00:00+00:00"


def test_identity_grant_keys_carry_over_and_gateway_keys_goes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine, "0004")
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO identities (id, name, kind, ziti_id, role_attributes, state, "
                "created_by, created_at) VALUES "
                "(1, 'alice', 'user', 'z1', '[]', 'enrolled', 'admin1', :now), "
                "(2, 'bob', 'user', 'z2', '[]', 'pending', 'admin1', :now)"
            ),
            {"now": _NOW},
        )
        db.execute(
            text(
                "INSERT INTO model_grants (id, subject, model_service, created_by, created_at) "
                "VALUES (1, '@alice', 'tiny', 'admin2', :now), (2, '#team', 'tiny', 'a', :now)"
            ),
            {"now": _NOW},
        )
        for grant, key in ((1, "sk-gw-alice-key"), (2, "sk-gw-team-key")):
            db.execute(
                text(
                    "INSERT INTO gateway_keys (grant_id, key_hash, key_prefix, allowed_models, "
                    "sealed_key, created_at) VALUES (:g, :h, :p, '[\"tiny\"]', 'sealed', :now)"
                ),
                {"g": grant, "h": hash_token(key), "p": key[:12], "now": _NOW},
            )
    upgrade(engine)
    with engine.connect() as db:
        rows = db.execute(
            text(
                "SELECT identity_id, key_hash, prefix, created_by, expires_at, revoked_at "
                "FROM api_keys"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, hash_token("sk-gw-alice-key"), "sk-gw-alice-", "admin2", None, None)
    ]
    tables = set(inspect(engine).get_table_names())
    assert "gateway_keys" not in tables
    assert {"api_keys", "access_limits", "usage_daily"} <= tables


def test_downgrade_gives_back_an_empty_gateway_keys_table(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    from alembic import command

    from appliance.db.migrate import _config

    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    tables = set(inspect(engine).get_table_names())
    assert "gateway_keys" in tables and "api_keys" not in tables
