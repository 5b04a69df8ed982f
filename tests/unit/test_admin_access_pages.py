"""The keys and limits pages: what admins and auditors see, what the forms change, and
that they audit as the API does and answer bad input with a message, never a traceback."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from appliance.admin.services import limits
from appliance.admin.web.limit_pages import LIMIT_LABELS
from appliance.db.models import AccessLimit, ApiKey
from tests.unit.admin_access_site import Site

KEY = re.compile(r"sk-site-[A-Za-z0-9_-]{43}")


def keys_of(site: Site, identity_id: int) -> list[ApiKey]:
    with site.db() as db:
        return list(
            db.scalars(select(ApiKey).where(ApiKey.identity_id == identity_id).order_by(ApiKey.id))
        )


def limit_rows(site: Site) -> list[AccessLimit]:
    with site.db() as db:
        return list(db.scalars(select(AccessLimit).order_by(AccessLimit.subject)))


def test_the_labels_are_the_services_limits() -> None:
    assert tuple(LIMIT_LABELS) == limits.LIMIT_FIELDS


def test_the_dashboard_links_each_identitys_keys(site: Site) -> None:
    alice = site.identity("alice")
    for who in ("admin1", "aud"):
        site.page_login(who)
        dashboard = site.client.get("/")
        assert f'href="/identities/{alice}/keys"' in dashboard.text
        assert 'href="/limits"' in dashboard.text  # in the navigation, beside Usage


def test_make_rotate_and_revoke_from_the_keys_page(site: Site) -> None:
    alice = site.identity("alice")
    csrf = site.page_login("admin1")
    empty = site.client.get(f"/identities/{alice}/keys")
    assert empty.status_code == 200 and "alice has no keys yet" in empty.text

    made = site.client.post("/keys", data={"csrf_token": csrf, "identity_id": alice})
    assert made.status_code == 201
    first = KEY.search(made.text)
    assert first is not None
    assert f'href="/identities/{alice}/keys"' in made.text  # back to the keys, not the dashboard
    (row,) = keys_of(site, alice)
    listing = site.client.get(f"/identities/{alice}/keys")
    assert f"{row.prefix}…" in listing.text and first[0] not in listing.text  # shown once
    assert "Rotate" in listing.text and 'value="60"' in listing.text

    rotated = site.client.post(
        f"/keys/{row.id}/rotate", data={"csrf_token": csrf, "overlap_minutes": "15"}
    )
    assert rotated.status_code == 201
    second = KEY.search(rotated.text)
    assert second is not None and second[0] != first[0]
    old, new = keys_of(site, alice)
    assert old.expires_at is not None and new.expires_at is None
    assert f"replaces {old.prefix}…" in rotated.text
    (record,) = site.audit("key.rotate")
    assert (record.actor, record.target) == ("admin1", "alice")
    assert record.details["overlap_minutes"] == 15 and record.details["old_key_id"] == old.id
    assert second[0] not in str(record.details)  # the prefix only, never the key

    revoked = site.client.post(f"/keys/{old.id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 200  # followed the redirect back to the keys page
    assert revoked.url.path == f"/identities/{alice}/keys"
    assert keys_of(site, alice)[0].revoked_at is not None
    (record,) = site.audit("key.revoke")
    assert record.details == {"key_id": old.id, "prefix": old.prefix}
    assert "revoked" in revoked.text
    assert f'action="/keys/{old.id}/rotate"' not in revoked.text  # no buttons for a dead key
    assert f'action="/keys/{new.id}/rotate"' in revoked.text


def test_a_key_with_an_expiry_in_the_sites_time(site: Site) -> None:
    alice = site.identity("alice")
    csrf = site.page_login("admin1")
    made = site.client.post(
        "/keys", data={"csrf_token": csrf, "identity_id": alice, "expires": "2099-01-31T18:00"}
    )
    assert made.status_code == 201
    assert "until 2099-01-31 17:00 UTC" in made.text  # the site is in Europe/Berlin
    (row,) = keys_of(site, alice)
    assert row.expires_at is not None and row.expires_at.hour == 17


@pytest.mark.parametrize(
    ("expires", "status", "message"),
    [
        ("soon", 422, "expires: expected a date and time such as 2027-01-31T18:00"),
        ("2001-01-01T00:00", 422, "expires_at: expected a time in the future"),
    ],
)
def test_a_bad_expiry_is_a_message(site: Site, expires: str, status: int, message: str) -> None:
    alice = site.identity("alice")
    csrf = site.page_login("admin1")
    page = site.client.post(
        "/keys", data={"csrf_token": csrf, "identity_id": alice, "expires": expires}
    )
    assert page.status_code == status
    assert message in page.text and "Keys of alice" in page.text
    assert keys_of(site, alice) == [] and site.audit("key.create") == []


@pytest.mark.parametrize(
    ("overlap", "status", "message"),
    [
        ("-1", 422, "overlap_minutes: expected 0 to 10080, found -1"),
        ("an hour", 422, "overlap_minutes: expected a whole number, found &#39;an hour&#39;"),
    ],
)
def test_a_bad_overlap_is_a_message(site: Site, overlap: str, status: int, message: str) -> None:
    alice = site.identity("alice")
    csrf = site.page_login("admin1")
    site.client.post("/keys", data={"csrf_token": csrf, "identity_id": alice})
    (row,) = keys_of(site, alice)
    page = site.client.post(
        f"/keys/{row.id}/rotate", data={"csrf_token": csrf, "overlap_minutes": overlap}
    )
    assert page.status_code == status
    assert message in page.text and 'class="error"' in page.text
    assert len(keys_of(site, alice)) == 1 and site.audit("key.rotate") == []


def test_a_revoked_key_cannot_be_rotated_and_unknown_ones_are_named(site: Site) -> None:
    alice = site.identity("alice")
    csrf = site.page_login("admin1")
    site.client.post("/keys", data={"csrf_token": csrf, "identity_id": alice})
    (row,) = keys_of(site, alice)
    site.client.post(f"/keys/{row.id}/revoke", data={"csrf_token": csrf})
    again = site.client.post(f"/keys/{row.id}/rotate", data={"csrf_token": csrf})
    assert again.status_code == 409
    assert "expected a live key to rotate" in again.text
    missing = site.client.post("/keys/999/revoke", data={"csrf_token": csrf})
    assert missing.status_code == 404 and "no key with id 999" in missing.text
    nobody = site.client.get("/identities/999/keys")
    assert nobody.status_code == 404 and "no identity with id 999" in nobody.text
    nobody_key = site.client.post("/keys", data={"csrf_token": csrf, "identity_id": 999})
    assert nobody_key.status_code == 404 and "no identity with id 999" in nobody_key.text


def test_auditors_read_keys_and_limits_but_cannot_post(site: Site) -> None:
    alice = site.identity("alice")
    csrf = site.page_login("admin1")
    site.client.post("/keys", data={"csrf_token": csrf, "identity_id": alice})
    site.client.post("/limits", data={"csrf_token": csrf, "subject": "#eng", "tokens_per_day": "5"})
    (key,) = keys_of(site, alice)
    (limit,) = limit_rows(site)

    csrf = site.page_login("aud")
    keys_page = site.client.get(f"/identities/{alice}/keys")
    assert keys_page.status_code == 200 and f"{key.prefix}…" in keys_page.text
    assert "Rotate" not in keys_page.text and 'action="/keys"' not in keys_page.text
    limits_page = site.client.get("/limits")
    assert limits_page.status_code == 200 and "#eng" in limits_page.text
    assert 'id="limit-form"' not in limits_page.text and "Delete" not in limits_page.text

    for path, data in (
        ("/keys", {"identity_id": str(alice)}),
        (f"/keys/{key.id}/rotate", {}),
        (f"/keys/{key.id}/revoke", {}),
        ("/limits", {"subject": "#eng", "tokens_per_day": "9"}),
        (f"/limits/{limit.id}/delete", {}),
    ):
        answer = site.client.post(path, data={"csrf_token": csrf, **data})
        assert answer.status_code == 403, path
        assert "aud is an auditor: only admins may change things" in answer.text
    assert len(keys_of(site, alice)) == 1 and keys_of(site, alice)[0].revoked_at is None
    assert [r.tokens_per_day for r in limit_rows(site)] == [5]


def test_a_form_without_the_sessions_csrf_token_is_refused(site: Site) -> None:
    alice = site.identity("alice")
    site.page_login("admin1")
    for path, data in (
        ("/keys", {"identity_id": str(alice)}),
        ("/limits", {"subject": "#eng", "tokens_per_day": "9"}),
    ):
        answer = site.client.post(path, data={"csrf_token": "forged", **data})
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert keys_of(site, alice) == [] and limit_rows(site) == []


def test_set_change_and_delete_limits_from_the_page(site: Site) -> None:
    site.identity("alice")
    csrf = site.page_login("admin1")
    page = site.client.get("/limits")
    assert page.status_code == 200
    assert "midnight in the site's timezone, <strong>Europe/Berlin</strong>" in page.text
    assert "in force at the gateway within seconds" in page.text
    assert "No limits set" in page.text

    answer = site.client.post(
        "/limits",
        data={
            "csrf_token": csrf,
            "subject": " @alice ",
            "tokens_per_day": "200000",
            "tokens_per_week": "",
            "tokens_per_month": "",
            "requests_per_minute": "60",
            "concurrent_requests": "",
        },
    )
    assert answer.status_code == 200 and answer.url.path == "/limits"
    (row,) = limit_rows(site)
    assert (row.subject, row.tokens_per_day, row.requests_per_minute) == ("@alice", 200000, 60)
    assert (row.tokens_per_week, row.concurrent_requests, row.updated_by) == (None, None, "admin1")
    assert "200,000" in answer.text and "admin1" in answer.text

    edit = site.client.get("/limits", params={"edit": row.id})
    assert 'name="subject" value="@alice"' in edit.text and 'value="200000"' in edit.text

    site.client.post(
        "/limits", data={"csrf_token": csrf, "subject": "@alice", "concurrent_requests": "2"}
    )
    (row,) = limit_rows(site)
    assert (row.tokens_per_day, row.requests_per_minute, row.concurrent_requests) == (
        None,
        None,
        2,
    )  # the form replaces all five, as PUT does
    first, second = site.audit("limit.set")
    assert (first.actor, first.target, first.details["before"]) == ("admin1", "@alice", None)
    assert second.details["before"]["tokens_per_day"] == 200000
    assert second.details["after"]["concurrent_requests"] == 2

    deleted = site.client.post(f"/limits/{row.id}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 200 and deleted.url.path == "/limits"
    assert limit_rows(site) == []
    (record,) = site.audit("limit.delete")
    assert (record.actor, record.target) == ("admin1", "@alice")
    assert record.details["before"]["concurrent_requests"] == 2
    gone = site.client.post(f"/limits/{row.id}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 404 and f"no limit with id {row.id}" in gone.text


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"subject": "alice"}, 422, "subject: expected @identity-name or #attribute"),
        ({"subject": "@nobody"}, 404, "no identity named &#39;nobody&#39;"),
        (
            {"subject": "#eng", "tokens_per_day": "-5"},
            422,
            "tokens_per_day: expected a whole number from 1 to",
        ),
        (
            {"subject": "#eng", "requests_per_minute": "0"},
            422,
            "requests_per_minute: expected a whole number from 1 to",
        ),
        (
            {"subject": "#eng", "tokens_per_month": "1e6"},
            422,
            "tokens_per_month: expected a whole number (or nothing: no limit), found &#39;1e6&#39;",
        ),
    ],
)
def test_bad_limits_are_a_message_on_the_page(
    site: Site, data: dict[str, str], status: int, message: str
) -> None:
    site.identity("alice")
    csrf = site.page_login("admin1")
    page = site.client.post("/limits", data={"csrf_token": csrf, **data})
    assert page.status_code == status
    assert message in page.text and 'class="error"' in page.text
    assert "Traceback" not in page.text
    assert f'name="subject" value="{data["subject"]}"' in page.text  # the input is kept
    assert limit_rows(site) == [] and site.audit("limit.set") == []
