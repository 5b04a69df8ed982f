"""External programs: a missing one or a failing one becomes an ApplianceError."""

from __future__ import annotations

import pytest

from appliance._process import require_program, run
from appliance.errors import CommandError, PrerequisiteError


def test_missing_program() -> None:
    with pytest.raises(PrerequisiteError, match="`no-such-tool-x` is not installed"):
        require_program("no-such-tool-x")


def test_failure_carries_status_and_output_tail() -> None:
    with pytest.raises(CommandError) as info:
        run(["sh", "-c", "echo first; echo last words; exit 3"])
    assert info.value.returncode == 3
    assert "exited with status 3" in str(info.value)
    assert "last words" in str(info.value)


def test_success_returns_output() -> None:
    assert run(["sh", "-c", "echo hi"]).strip() == "hi"
