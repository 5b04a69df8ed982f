"""Logging in to the admin service in tests: the one password and both ways in."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

#: Every test account's password (long enough for the service's rules).
PASSWORD = "a-long-test-password"


def log_in(client: TestClient, user: str, password: str = PASSWORD) -> str:
    """Log ``user`` in through the login form; the CSRF token of its pages."""
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    page = client.post(
        "/login", data={"username": user, "password": password, "csrf_token": token.group(1)}
    )
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def api_log_in(client: TestClient, user: str, password: str = PASSWORD) -> dict[str, str]:
    """Log ``user`` in through the API; the CSRF header its changes need."""
    answer = client.post("/api/v1/auth/login", json={"username": user, "password": password})
    assert answer.status_code == 200, answer.text
    return {"X-CSRF-Token": answer.json()["csrf_token"]}
