"""Migration 0006: the routing history table, up and down again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import inspect, text

from appliance.db.engine import make_engine
from appliance.db.migrate import _config, upgrade


def _downgrade(url: str, revision: str) -> None:
    config = _config()
    with make_engine(url).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_routing_configs_holds_documents_and_sql_null_for_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    engine = make_engine(url)
    upgrade(engine, "0005")
    assert "routing_configs" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "routing_configs" in inspect(engine).get_table_names()
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO routing_configs (document, created_by, created_at) VALUES "
                "('{\"default_route\": \"general\"}', 'admin1', '2026-12-07 10:00:00+00:00'), "
                "(NULL, 'admin2', '2026-12-07 11:00:00+00:00')"
            )
        )
    with engine.connect() as db:
        off = db.execute(text("SELECT created_by FROM routing_configs WHERE document IS NULL"))
        assert off.scalars().all() == ["admin2"]


def test_downgrade_drops_the_table_and_upgrade_makes_it_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    _downgrade(url, "0005")
    tables = set(inspect(make_engine(url)).get_table_names())
    assert "routing_configs" not in tables and "api_keys" in tables
    upgrade(make_engine(url))
    assert "routing_configs" in inspect(make_engine(url)).get_table_names()
