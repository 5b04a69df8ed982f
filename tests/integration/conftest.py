"""Fixtures of the integration tier: the admin database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from appliance.admin.services.accounts import create_user
from appliance.db.engine import make_engine
from appliance.db.migrate import current_revision, head_revision, upgrade
from appliance.db.models import Role
from tests.integration.databases import postgres_cluster

PASSWORD = "a-long-test-password"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'admin.db'}"
    else:
        with postgres_cluster() as url:
            yield url


@pytest.fixture(scope="module")
def migrated(db_url: str) -> str:
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    assert current_revision(engine) == head_revision()
    with Session(engine) as session:
        create_user(session, "alice", Role.admin, password=PASSWORD, actor="test")
        create_user(session, "bob", Role.admin, password=PASSWORD, actor="test")
        create_user(session, "audrey", Role.auditor, password=PASSWORD, actor="test")
        session.commit()
    return db_url
