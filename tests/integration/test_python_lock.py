"""Issue 16: Python wheels pinned by version and sha256 from pip's own resolver report, and
downloaded in pip's hash-checking mode: a wheel whose digest differs from the lock is
refused, by name. (Real pip against the package index, with a small package.)"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from appliance.components.locking import lock_definition
from appliance.components.pylock import INSTALLER, locked_for, resolve
from appliance.components.wheelhouse import TARGET, download_wheelhouse
from appliance.definition import load_definition
from appliance.errors import BuildError, DefinitionError

SIX = "six==1.17.0"


def test_a_locked_wheel_downloads_and_a_changed_digest_is_refused_by_name() -> None:
    (six,) = resolve([SIX], TARGET)
    assert (six.name, six.version, six.wheel) == (
        "six",
        "1.17.0",
        "six-1.17.0-py2.py3-none-any.whl",
    )
    house = download_wheelhouse([SIX], locked=([six], "test.lock.json"))
    assert [w.name for w in house.path.glob("*.whl")] == [six.wheel]

    tampered = replace(six, sha256="0" * 64)
    with pytest.raises(BuildError) as refused:
        download_wheelhouse([SIX], locked=([tampered], "test.lock.json"))
    assert f"six 1.17.0: sha256 {six.sha256}, the lock says {'0' * 64}" in str(refused.value)
    assert "test.lock.json" in str(refused.value)


def test_the_lock_is_written_beside_the_definition_and_read_by_part(tmp_path: Path) -> None:
    definition = tmp_path / "tiny.yaml"
    definition.write_text(
        json.dumps(
            {
                "name": "tiny",
                "version": "1",
                "installer": {"requirements": [SIX]},
                "components": [
                    {
                        "name": "py",
                        "version": "1",
                        "image": "py.oci.tar",
                        "build": {
                            "kind": "python-venv",
                            "venv": "/opt/py",
                            "requirements": [SIX],
                            "entrypoint": ["/opt/py/bin/python"],
                        },
                    }
                ],
            }
        )
    )
    parsed = load_definition(definition)
    assert locked_for(parsed, "py") is None  # no lock yet: nothing pinned
    path, locks = lock_definition(parsed)
    assert path == tmp_path / "tiny.lock.json"
    assert [w.name for w in locks["py"]] == ["six"]
    installer = {w.name for w in locks[INSTALLER]}
    assert "six" in installer and "appliance" not in installer  # our own wheel: built here
    pinned = locked_for(parsed, "py")
    assert pinned is not None and pinned[1] == "tiny.lock.json"
    with pytest.raises(DefinitionError, match="pins nothing for other"):
        locked_for(parsed, "other")
