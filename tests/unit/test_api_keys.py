"""Model-access keys: made, rotated with an overlap, revoked; audited; never stored in plain
text (service with a controllable clock, and the API over HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from appliance.admin.security import hash_token
from appliance.admin.services import api_keys
from appliance.admin.services.access_errors import AccessConflictError, AccessError
from appliance.db.models import ApiKey, AuditEvent, Identity, IdentityKind
from tests.unit.admin_access_site import Site

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.fixture
def db(db: Session) -> Session:
    """The shared database (tests/unit/conftest.py) with the identity alice in it."""
    db.add(Identity(name="alice", kind=IdentityKind.user, created_by="t", ziti_id="z1"))
    db.commit()
    return db


def alice(db: Session) -> Identity:
    row = db.scalar(select(Identity).where(Identity.name == "alice"))
    assert row is not None
    return row


def everything_stored(db: Session) -> str:
    """Every row of every table, as text: to look for a key in it."""
    dump = []
    for table in ("api_keys", "audit_events", "identities"):
        dump += [repr(tuple(r)) for r in db.execute(text(f"SELECT * FROM {table}"))]  # noqa: S608
    return "\n".join(dump)


def test_a_key_is_shown_once_and_stored_as_its_hash(db: Session) -> None:
    made = api_keys.create_key(db, alice(db), expires_at=None, actor="admin1", client="c", now=NOW)
    db.commit()
    assert made.api_key.startswith("sk-site-") and len(made.api_key) == 8 + 43
    assert made.row.key_hash == hash_token(made.api_key)
    assert made.row.prefix == made.api_key[:16]
    assert made.api_key not in everything_stored(db)
    (record,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "key.create"))
    assert (record.actor, record.target) == ("admin1", "alice")
    assert record.details == {"key_id": made.row.id, "prefix": made.row.prefix, "expires_at": None}


def test_expiry_must_be_in_the_future_with_a_timezone(db: Session) -> None:
    with pytest.raises(AccessError, match="expected a time in the future"):
        api_keys.create_key(
            db, alice(db), expires_at=NOW - timedelta(seconds=1), actor="a", client="", now=NOW
        )
    with pytest.raises(AccessError, match="with its timezone"):
        api_keys.create_key(
            db, alice(db), expires_at=datetime(2030, 1, 1), actor="a", client="", now=NOW
        )


def test_rotation_keeps_the_old_key_for_the_overlap_only(db: Session) -> None:
    old = api_keys.create_key(db, alice(db), expires_at=None, actor="a", client="", now=NOW)
    new = api_keys.rotate_key(db, old.row, overlap_minutes=60, actor="admin2", client="", now=NOW)
    db.commit()
    assert old.row.expires_at == NOW + timedelta(hours=1)
    assert new.row.expires_at is None and new.row.identity_id == old.row.identity_id
    assert new.api_key != old.api_key and new.api_key not in everything_stored(db)
    (record,) = db.scalars(select(AuditEvent).where(AuditEvent.action == "key.rotate"))
    assert record.details["old_key_id"] == old.row.id
    assert record.details["old_expires_at"] == (NOW + timedelta(hours=1)).isoformat()
    assert record.details["prefix"] == new.row.prefix


def test_rotation_never_lengthens_the_old_key_and_the_new_one_keeps_the_expiry(
    db: Session,
) -> None:
    soon = NOW + timedelta(minutes=10)
    old = api_keys.create_key(db, alice(db), expires_at=soon, actor="a", client="", now=NOW)
    new = api_keys.rotate_key(db, old.row, overlap_minutes=60, actor="a", client="", now=NOW)
    assert old.row.expires_at == soon and new.row.expires_at == soon
    now_gone = api_keys.rotate_key(db, new.row, overlap_minutes=0, actor="a", client="", now=NOW)
    assert new.row.expires_at == NOW and now_gone.row.expires_at == soon


def test_rotation_refuses_revoked_expired_and_overlong(db: Session) -> None:
    made = api_keys.create_key(db, alice(db), expires_at=None, actor="a", client="", now=NOW)
    with pytest.raises(AccessError, match="overlap_minutes: expected 0 to 10080, found 10081"):
        api_keys.rotate_key(db, made.row, overlap_minutes=10081, actor="a", client="", now=NOW)
    api_keys.revoke_key(db, made.row, actor="a", client="", now=NOW)
    with pytest.raises(AccessConflictError, match="was revoked"):
        api_keys.rotate_key(db, made.row, overlap_minutes=0, actor="a", client="", now=NOW)
    short = api_keys.create_key(
        db, alice(db), expires_at=NOW + timedelta(minutes=1), actor="a", client="", now=NOW
    )
    with pytest.raises(AccessConflictError, match="expired"):
        api_keys.rotate_key(
            db, short.row, overlap_minutes=0, actor="a", client="", now=NOW + timedelta(hours=1)
        )


def test_revoking_keeps_the_row_and_is_audited_once(db: Session) -> None:
    made = api_keys.create_key(db, alice(db), expires_at=None, actor="a", client="", now=NOW)
    api_keys.revoke_key(db, made.row, actor="admin1", client="", now=NOW)
    api_keys.revoke_key(db, made.row, actor="admin1", client="", now=NOW + timedelta(hours=1))
    db.commit()
    assert db.get(ApiKey, made.row.id) is not None and made.row.revoked_at == NOW
    revokes = db.scalars(select(AuditEvent).where(AuditEvent.action == "key.revoke")).all()
    assert [r.details for r in revokes] == [{"key_id": made.row.id, "prefix": made.row.prefix}]


def test_deleting_the_identity_deletes_its_keys(db: Session) -> None:
    api_keys.create_key(db, alice(db), expires_at=None, actor="a", client="", now=NOW)
    db.commit()
    db.delete(alice(db))
    db.commit()
    assert db.scalars(select(ApiKey)).all() == []


def test_the_api_makes_rotates_and_revokes_and_shows_the_key_once(site: Site) -> None:
    admin = site.login("admin1")
    alice_id = site.identity("alice")
    made = site.client.post(f"/api/v1/identities/{alice_id}/keys", json={}, headers=admin)
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["api_key"].startswith("sk-site-") and key["identity"] == "alice"
    assert set(key) == {
        "id",
        "identity",
        "prefix",
        "created_by",
        "created_at",
        "expires_at",
        "revoked_at",
        "api_key",
    }
    listed = site.client.get(f"/api/v1/identities/{alice_id}/keys").json()
    assert [k["prefix"] for k in listed] == [key["prefix"]]
    assert key["api_key"] not in str(listed)

    rotated = site.client.post(
        f"/api/v1/keys/{key['id']}/rotate", json={"overlap_minutes": 5}, headers=admin
    )
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["api_key"] != key["api_key"]
    old = next(
        k
        for k in site.client.get(f"/api/v1/identities/{alice_id}/keys").json()
        if k["id"] == key["id"]
    )
    left = datetime.fromisoformat(old["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=4) < left <= timedelta(minutes=5)

    assert site.client.delete(f"/api/v1/keys/{key['id']}", headers=admin).status_code == 204
    assert site.client.delete("/api/v1/keys/999", headers=admin).status_code == 404
    bad = site.client.post(
        f"/api/v1/keys/{rotated.json()['id']}/rotate",
        json={"overlap_minutes": 10081},
        headers=admin,
    )
    assert bad.status_code == 422
    assert [e.action for e in site.audit("key.create")] == ["key.create"]
    assert len(site.audit("key.rotate")) == 1 and len(site.audit("key.revoke")) == 1


def test_auditors_read_keys_but_never_make_them(site: Site) -> None:
    alice_id = site.identity("alice")
    auditor = site.login("aud")
    refused = site.client.post(f"/api/v1/identities/{alice_id}/keys", json={}, headers=auditor)
    assert refused.status_code == 403
    assert site.client.get(f"/api/v1/identities/{alice_id}/keys").json() == []
    assert site.client.get("/api/v1/identities/99/keys").status_code == 404


def test_a_key_change_needs_the_csrf_token(site: Site) -> None:
    alice_id = site.identity("alice")
    site.login("admin1")
    assert site.client.post(f"/api/v1/identities/{alice_id}/keys", json={}).status_code == 403


def test_the_dashboard_makes_a_key_and_shows_it_once(site: Site) -> None:
    import re

    alice_id = site.identity("alice")
    site.client.cookies.clear()
    form = site.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    page = site.client.post(
        "/login",
        data={"username": "admin1", "password": "a-long-test-password", "csrf_token": token[1]},
    )
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None and "New key" in page.text
    shown = site.client.post("/keys", data={"csrf_token": csrf[1], "identity_id": alice_id})
    assert shown.status_code == 201
    found = re.search(r"sk-site-[A-Za-z0-9_-]{43}", shown.text)
    assert found is not None
    assert found[0] not in site.client.get("/").text
