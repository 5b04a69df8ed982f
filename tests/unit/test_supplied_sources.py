"""Which supplied OpenZiti program a build takes, and what it refuses before running anything."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from appliance.components.program import ProgramFacts, check_program
from appliance.components.supplied import (
    Origin,
    _extract_member,
    build_supplied_image,
    describe_supplied,
    find_in_folder,
    supplied_for,
)
from appliance.definition import GoBinaryBuild, SuppliedProgram, load_definition
from appliance.errors import BuildError, DefinitionError

SPEC = {
    "kind": "go-binary",
    "module": "github.com/openziti/ziti/v2",
    "version": "v2.0.3",
    "package": "./ziti",
    "binary": "ziti",
    "fips140": "v1.0.0",
}


def _definition(tmp_path: Path, build: dict[str, object]) -> Path:
    path = tmp_path / "bundle.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "t",
                "version": "1",
                "components": [
                    {
                        "name": "ziti-controller",
                        "version": "2.0.3",
                        "image": "o/c.tar",
                        "build": build,
                    }
                ],
            }
        )
    )
    return path


def _facts(**settings: str) -> ProgramFacts:
    base = {"GOFIPS140": "v1.0.0-c2097c7c", "CGO_ENABLED": "0", "-trimpath": "true"}
    return ProgramFacts(
        "v2.0.3", "ab" * 32, "go1.26.8", "github.com/openziti/ziti/v2", base | settings
    )


def test_source_on_the_command_line_wins_over_the_definition_and_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "supplied"
    folder.mkdir()
    (folder / "ziti").write_bytes(b"\x7fELF")
    (tmp_path / "pinned").write_bytes(b"\x7fELF")
    definition = load_definition(
        _definition(tmp_path, {**SPEC, "supplied": {"reference": "pinned"}})
    )
    component = definition.component("ziti-controller")
    spec = component.build
    assert isinstance(spec, GoBinaryBuild)

    given = supplied_for(
        definition, component, spec, override="docker://r/z@sha256:1", folder=folder
    )
    assert given == Origin(SuppliedProgram(reference="docker://r/z@sha256:1"), "--source")
    pinned = supplied_for(definition, component, spec, override=None, folder=folder)
    assert pinned is not None
    assert (pinned.program.reference, pinned.given_by) == (
        str(tmp_path / "pinned"),
        "the definition",
    )
    unpinned = spec.model_copy(update={"supplied": None})
    found = supplied_for(definition, component, unpinned, override=None, folder=folder)
    assert found is not None and found.program.reference == str(folder / "ziti")
    assert supplied_for(definition, component, unpinned, override=None, folder=None) is None


def test_a_supplied_path_in_the_definition_cannot_leave_its_root(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="climbs out"):
        load_definition(_definition(tmp_path, {**SPEC, "supplied": {"reference": "../ziti"}}))


def test_two_release_archives_of_one_program_in_the_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ziti-linux-amd64-2.0.2.tar.gz").write_bytes(b"")
    (tmp_path / "ziti-linux-amd64-2.0.3.tar.gz").write_bytes(b"")
    with pytest.raises(BuildError, match="several archives of ziti"):
        find_in_folder(tmp_path, "ziti")
    (tmp_path / "ziti-linux-amd64-2.0.2.tar.gz").unlink()
    assert find_in_folder(tmp_path, "ziti") == tmp_path / "ziti-linux-amd64-2.0.3.tar.gz"
    assert find_in_folder(tmp_path, "llm-gateway") is None


def test_an_upstream_image_named_by_tag_only_is_refused_before_any_copy(tmp_path: Path) -> None:
    definition = load_definition(_definition(tmp_path, SPEC))
    component = definition.component("ziti-controller")
    assert isinstance(component.build, GoBinaryBuild)
    origin = Origin(SuppliedProgram(reference="docker://registry.test/ziti:2.0.3"), "--source")
    with pytest.raises(BuildError, match=r"named by tag only; expected it by digest"):
        build_supplied_image(component, component.build, origin)


def test_an_archive_must_hold_exactly_one_regular_file_of_that_name(tmp_path: Path) -> None:
    archive = tmp_path / "ziti.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("bin/ziti")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(BuildError, match=r"exactly one regular file named ziti, found bin/ziti"):
        _extract_member(archive, "ziti", tmp_path)
    with tarfile.open(archive, "w:gz") as tar:
        data = b"\x7fELF program"
        member = tarfile.TarInfo("ziti-2.0.3/ziti")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    out = _extract_member(archive, "ziti", tmp_path)
    assert out.read_bytes() == b"\x7fELF program"


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            _facts(CGO_ENABLED="1"),
            "CGO_ENABLED: the definition asks for 0, the program was built with 1",
        ),
        (
            _facts(**{"-trimpath": "false"}),
            "-trimpath: the definition asks for a -trimpath build, the program records "
            "-trimpath=false",
        ),
        (
            _facts(GOFIPS140="latest"),
            "GOFIPS140: the definition asks for v1.0.0, the program was built with latest",
        ),
    ],
)
def test_build_settings_that_contradict_the_definition_are_named(
    facts: ProgramFacts, expected: str
) -> None:
    spec = GoBinaryBuild.model_validate(SPEC)
    with pytest.raises(BuildError, match="refused the program") as caught:
        check_program("ziti-controller", spec, facts, "the program")
    assert expected in str(caught.value)


def test_v_prefix_does_not_make_a_version_differ() -> None:
    spec = GoBinaryBuild.model_validate({**SPEC, "version": "2.0.3"})
    check_program("ziti-controller", spec, _facts(), "the program")  # no error


def test_one_line_says_what_is_supplied_or_what_to_supply_where(tmp_path: Path) -> None:
    missing = describe_supplied(tmp_path)
    assert missing.startswith(f"OpenZiti: no ziti or llm-gateway supplied in {tmp_path}")
    assert "$APPLIANCE_SUPPLIED" in missing and "\n" not in missing
    (tmp_path / "ziti").write_bytes(b"\x7fELF")
    (tmp_path / "llm-gateway_0.1.4_linux_amd64.tar.gz").write_bytes(b"")
    assert describe_supplied(tmp_path) == (
        f"OpenZiti: supplied in {tmp_path} (ziti, llm-gateway_0.1.4_linux_amd64.tar.gz): "
        "its images are built and the overlay tests run"
    )
