"""Fixtures shared by the unit tests: a migrated admin database, and a live admin app.

The app's modules are imported inside the fixtures, so that a run of unrelated unit tests
(the bundle's, the lab's) does not pay for importing the admin service.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from tests.unit.admin_access_site import Site


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    """A session on a fresh, migrated SQLite admin database (``admin.db`` in tmp_path)."""
    from sqlalchemy.orm import Session

    from appliance.db.engine import make_engine
    from appliance.db.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    upgrade(engine)
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A started admin app on ``admin.db`` in tmp_path (tests/unit/admin_access_site.py).

    Modules whose ``site`` is another app (the break-glass pages, the controller status)
    define their own fixture of that name, which wins in that module.
    """
    from tests.unit.admin_access_site import make_site

    yield from make_site(tmp_path)
