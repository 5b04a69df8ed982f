"""A live admin app for the model-access tests: real SQLite, a fake controller, two admins
and an auditor, and the access proxies' bearer token in a file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.admin.app import create_app
from appliance.admin.services import identities as identity_service
from appliance.admin.services.accounts import create_user
from appliance.admin.settings import AdminSettings
from appliance.db.engine import make_engine
from appliance.db.migrate import upgrade
from appliance.db.models import AuditEvent, IdentityKind, Role
from tests.unit.admin_login import PASSWORD, api_log_in, log_in
from tests.unit.fake_controller import FakeController

TOKEN = "access-token-for-the-gateway-hosts"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Site:
    """The app's client, its fake controller and its database."""

    client: TestClient
    controller: FakeController
    url: str

    def db(self) -> Session:
        """A fresh session on the app's database."""
        return Session(make_engine(self.url), expire_on_commit=False)

    def login(self, name: str) -> dict[str, str]:
        """Log ``name`` in through the API; the CSRF header its changes need."""
        self.client.cookies.clear()
        return api_log_in(self.client, name)

    def page_login(self, name: str) -> str:
        """Log ``name`` in through the login form; the CSRF token of its pages."""
        self.client.cookies.clear()
        return log_in(self.client, name)

    def identity(self, name: str, attributes: list[str] | None = None) -> int:
        """Make an identity (as admin1, through the service) and return its row id."""
        with self.db() as db:
            made = identity_service.create_identity(
                db,
                self.controller,
                name=name,
                kind=IdentityKind.user,
                role_attributes=attributes or [],
                enrollment_minutes=60,
                actor="admin1",
                client="",
            )
            return made.identity.id

    def audit(self, action: str) -> list[AuditEvent]:
        """The audit records of ``action``, oldest first."""
        with self.db() as db:
            return list(
                db.scalars(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
                )
            )


def make_site(tmp_path: Path, **settings: Any) -> Iterator[Site]:
    """Yield a started app (for a pytest fixture)."""
    url = f"sqlite:///{tmp_path / 'admin.db'}"
    upgrade(make_engine(url))
    with Session(make_engine(url)) as session:
        for name, role in (("admin1", Role.admin), ("admin2", Role.admin), ("aud", Role.auditor)):
            create_user(session, name, role, password=PASSWORD, actor="test")
        session.commit()
    token_file = tmp_path / "access-token"
    token_file.write_text(TOKEN + "\n")
    values: dict[str, Any] = {
        "profile": "test",
        "db_url": url,
        "data_dir": tmp_path,
        "access_token_file": token_file,
        "audit_watch": False,
        "gateway_models": ["tiny", "big"],
        "site_timezone": "Europe/Berlin",
        "gateway_context_tokens": 256,
    }
    values.update(settings)
    app = create_app(AdminSettings(**values))
    controller = FakeController()
    controller.services = ["tiny", "big"]
    app.state.controller = controller
    with TestClient(app) as client:
        yield Site(client, controller, url)
