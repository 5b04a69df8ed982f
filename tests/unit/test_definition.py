"""The bundle definition: the repository's own definitions parse; unsafe paths are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.definition import (
    GoBinaryBuild,
    ImageSourceBuild,
    TinyLlamaBuild,
    load_definition,
)
from appliance.errors import DefinitionError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "def.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
name: lab
version: 2026.11.0
components:
  - name: ziti-controller
    version: 2.0.3
    image: build/components/ziti-controller.oci.tar
  - name: tiny-model
    version: 1
    files:
      - path: build/models/tiny
"""


def test_minimum_schema_from_design(tmp_path: Path) -> None:
    definition = load_definition(write(tmp_path, MINIMAL))
    assert [c.name for c in definition.components] == ["ziti-controller", "tiny-model"]
    assert definition.component("tiny-model").version == "1"  # YAML int read as text
    assert definition.resolve("build/models/tiny", what="x") == tmp_path / "build/models/tiny"


def test_repository_definitions_pin_versions_and_sources() -> None:
    lab = load_definition(REPO / "bundles/lab.yaml")
    production = load_definition(REPO / "bundles/appliance.yaml")
    # Production pins the release; the lab pins what it can run (a supplied 2.1.0-pre2).
    for definition, pin in ((production, "v2.0.3"), (lab, "v2.1.0-pre2")):
        for name in ("ziti-controller", "ziti-router"):
            component = definition.component(name)
            ziti = component.build
            assert isinstance(ziti, GoBinaryBuild)
            assert (ziti.module, ziti.version, ziti.fips140) == (
                "github.com/openziti/ziti/v2",
                pin,
                "v1.0.0",
            )
            assert component.version == pin.removeprefix("v")
            assert f"-X github.com/openziti/ziti/v2/common/version.Version={pin}" in ziti.ldflags
    gateway = lab.component("llm-gateway").build
    assert isinstance(gateway, GoBinaryBuild)
    assert (gateway.module, gateway.version) == ("github.com/openziti/llm-gateway", "v0.1.4")
    assert isinstance(lab.component("tiny-model").build, TinyLlamaBuild)
    assert lab.root_dir == REPO

    vllm = production.component("vllm").build
    assert isinstance(vllm, ImageSourceBuild)
    assert vllm.reference.startswith("docker://")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/shadow", "is absolute"),
        ("../outside.tar", "climbs out with '..'"),
        ("build/../../outside.tar", "climbs out with '..'"),
        ("~/x.tar", "is absolute"),
    ],
)
def test_paths_that_escape_are_refused(tmp_path: Path, path: str, message: str) -> None:
    text = f"name: x\nversion: '1'\ncomponents:\n  - name: a\n    version: '1'\n    image: {path}\n"
    with pytest.raises(DefinitionError, match=message):
        load_definition(write(tmp_path, text))


def test_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    text = (
        "name: x\nversion: '1'\ncomponents:\n  - name: a\n    version: '1'\n"
        "    files:\n      - path: link/key.pem\n"
    )
    with pytest.raises(DefinitionError, match=r"outside .* symbolic link"):
        load_definition(write(root, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just a list", "expected a YAML mapping"),
        ("name: x\nversion: '1'\ncomponents: []", "components: List should have at least 1"),
        ("name: X!\nversion: '1'\ncomponents: [{name: a, version: '1'}]", "name: String should"),
        (
            "name: x\nversion: '1'\ncomponents: [{name: a, version: '1'}, {name: a, version: '2'}]",
            "repeated: a",
        ),
        (
            "name: x\nversion: '1'\ncomponents: [{name: a, version: '1', build: {kind: magic}}]",
            "does not match any of the expected tags",
        ),
        ("name: x\nversion: '1'\ncomponents: [{name: a, version: '1', colour: red}]", "colour"),
        ("name: x\nversion: [unclosed", "cannot read bundle definition"),
    ],
)
def test_malformed_definitions_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DefinitionError, match=message) as info:
        load_definition(path)
    assert str(path) in str(info.value)


def test_missing_definition(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="does not exist"):
        load_definition(tmp_path / "nope.yaml")


def test_unknown_component_lists_known_ones(tmp_path: Path) -> None:
    definition = load_definition(write(tmp_path, MINIMAL))
    with pytest.raises(DefinitionError, match="it has: ziti-controller, tiny-model"):
        definition.component("vllm")
