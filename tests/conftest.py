"""Shared test setup: each test is marked with the tier of the folder it lives in."""

from __future__ import annotations

from pathlib import Path

import pytest

TIERS = ("unit", "integration", "lab")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests/unit/* as `unit` and so on, so `-m TIER` selects a tier."""
    for item in items:
        parts = Path(item.path).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
