"""Turning each kind of build spec into a local podman image.

Every image is built with ``--network none`` from inputs fetched beforehand, and with a
fixed timestamp, so that the same inputs give the same digest.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from appliance.components import podman
from appliance.components.gobuild import build_go_binary
from appliance.components.player import fetch_player
from appliance.components.program import (
    ProgramFacts,
    check_program,
    fips_from_settings,
    inspect_program,
)
from appliance.components.rootfs import BaseImage
from appliance.components.wheelhouse import (
    Locked,
    Wheelhouse,
    build_appliance_wheel,
    download_wheelhouse,
)
from appliance.definition import (
    ApplianceWheelBuild,
    Component,
    GoBinaryBuild,
    PythonVenvBuild,
)

__all__ = [
    "BuiltImage",
    "FipsPosture",
    "build_appliance_image",
    "build_go_image",
    "build_module_image",
    "build_python_image",
    "image_tag",
]


@dataclass(frozen=True)
class FipsPosture:
    """Whether an image's cryptography is built for FIPS mode, and why (not)."""

    built_for_fips: bool
    detail: str


@dataclass(frozen=True)
class BuiltImage:
    """An image in local podman storage, with the facts the lock file records."""

    tag: str
    image_id: str
    source: str
    fips: FipsPosture
    inputs_cached: list[str] = field(default_factory=list)
    #: The Go program the image ships, read from the program (Go images only).
    program: ProgramFacts | None = None
    program_path: str | None = None
    #: The wheels a Python image was installed from (their digests go into its SBOM).
    wheelhouse: Path | None = None


def image_tag(component: Component) -> str:
    """``localhost/appliance/NAME:VERSION``."""
    return f"localhost/appliance/{component.name}:{component.version}"


def build_module_image(
    component: Component, spec: GoBinaryBuild, *, no_cache: bool = False
) -> BuiltImage:
    """Build the program from its Go module here, check it like a supplied one, image it."""
    binary = build_go_binary(spec)
    facts = inspect_program(binary.path, spec)
    if not spec.version_args and facts.version in ("", "(devel)"):
        # Built from a copy of the module, Go records "(devel)"; this build pinned it.
        facts = replace(facts, version=spec.version)
    source = f"{spec.module}@{spec.version}"
    check_program(component.name, spec, facts, f"the build of {source}")
    built = build_go_image(component, spec, binary.path, facts, source=source, no_cache=no_cache)
    if binary.cached:
        return replace(built, inputs_cached=["go binary"])
    return built


def build_go_image(
    component: Component,
    spec: GoBinaryBuild,
    binary: Path,
    facts: ProgramFacts,
    *,
    source: str,
    no_cache: bool = False,
) -> BuiltImage:
    """A FROM-scratch image holding one static Go program, already checked."""
    lines = [
        "FROM scratch",
        f"COPY {spec.binary} /usr/local/bin/{spec.binary}",
        *_common_lines(component, spec.env, source),
        *_exec_lines(spec.entrypoint, spec.cmd),
    ]
    with tempfile.TemporaryDirectory(prefix="appliance-ctx-") as tmp:
        context = Path(tmp)
        shutil.copy2(binary, context / spec.binary)
        (context / spec.binary).chmod(0o755)
        (context / "Containerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        image = podman.build_image(context, image_tag(component), no_cache=no_cache)
    godebug = spec.env.get("GODEBUG")
    built_for_fips, why = fips_from_settings(facts, f"GODEBUG={godebug}" if godebug else None)
    return BuiltImage(
        image_tag(component),
        image,
        source,
        FipsPosture(built_for_fips, why),
        program=facts,
        program_path=f"/usr/local/bin/{spec.binary}",
    )


def build_python_image(
    component: Component, spec: PythonVenvBuild, base: BaseImage, locked: Locked | None = None
) -> BuiltImage:
    """Requirements installed offline into a virtualenv on the Debian base (from exactly
    the wheels ``locked`` pins, when given)."""
    wheels = download_wheelhouse(spec.requirements, locked=locked)
    image = _venv_image(
        component,
        base,
        wheels,
        spec.venv,
        spec.requirements,
        spec.remove,
        spec.env,
        spec.entrypoint,
        spec.cmd,
    )
    return BuiltImage(
        image_tag(component),
        image,
        ", ".join(spec.requirements),
        _python_fips(),
        ["wheelhouse"] if wheels.cached else [],
        wheelhouse=wheels.path,
    )


def build_appliance_image(
    component: Component, spec: ApplianceWheelBuild, base: BaseImage, locked: Locked | None = None
) -> BuiltImage:
    """Our own package from its wheel, with its dependencies, on the Debian base, and the
    auditors' recording player (pinned, checked) in ``VENV/share/asciinema-player``, where
    the admin service's ``player_assets`` setting looks by default."""
    player = fetch_player()
    with tempfile.TemporaryDirectory(prefix="appliance-wheel-") as tmp:
        wheel = build_appliance_wheel(Path(tmp))
        extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
        version = wheel.name.split("-")[1]
        requirement = f"appliance{extras}=={version}"
        wheels = download_wheelhouse([requirement], local_wheels=[wheel], locked=locked)
    image = _venv_image(
        component,
        base,
        wheels,
        spec.venv,
        [requirement],
        [],
        spec.env,
        spec.entrypoint,
        spec.cmd,
        copy=(player, f"{spec.venv}/share/asciinema-player"),
    )
    return BuiltImage(
        image_tag(component),
        image,
        requirement,
        _python_fips(),
        ["wheelhouse"] if wheels.cached else [],
        wheelhouse=wheels.path,
    )


def _venv_image(
    component: Component,
    base: BaseImage,
    wheels: Wheelhouse,
    venv: str,
    requirements: list[str],
    remove: list[str],
    env: dict[str, str],
    entrypoint: list[str],
    cmd: list[str],
    copy: tuple[Path, str] | None = None,
) -> str:
    """``copy``: a folder put into the image at a path, after the virtualenv."""
    # The wheelhouse digest is part of the RUN line so podman's layer cache cannot reuse
    # a layer built from other wheels.
    steps = [
        f": wheelhouse sha256:{wheels.digest}",
        # Bytecode records its source's mtime unless SOURCE_DATE_EPOCH asks for a hash of
        # the source instead (PEP 552): with it two builds write the same .pyc bytes, and
        # `--timestamp 0` does the rest, so the same wheels give the same image digest.
        "export SOURCE_DATE_EPOCH=0",
        f"python3 -m venv {shlex.quote(venv)}",
        f"{venv}/bin/pip install --no-index --no-cache-dir --disable-pip-version-check "
        f"--find-links /wheels {' '.join(shlex.quote(r) for r in requirements)}",
    ]
    if remove:
        steps.append(f"{venv}/bin/pip uninstall --yes {' '.join(remove)}")
    lines = [
        f"FROM {base.tag}",
        "RUN " + " && \\\n    ".join(steps),
        *([f"COPY extra {copy[1]}"] if copy else []),
        *_common_lines(component, env, ", ".join(requirements)),
        *_exec_lines(entrypoint, cmd),
    ]
    with tempfile.TemporaryDirectory(prefix="appliance-ctx-") as tmp:
        context = Path(tmp)
        (context / "Containerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if copy:
            shutil.copytree(copy[0], context / "extra")
        return podman.build_image(context, image_tag(component), volumes=[(wheels.path, "/wheels")])


def _common_lines(component: Component, env: dict[str, str], source: str) -> list[str]:
    lines = [f"ENV {key}={shlex.quote(value)}" for key, value in sorted(env.items())]
    labels = {
        "org.opencontainers.image.title": component.name,
        "org.opencontainers.image.version": component.version,
        "org.opencontainers.image.source": source,
    }
    lines += [f"LABEL {key}={shlex.quote(value)}" for key, value in labels.items()]
    return lines


def _exec_lines(entrypoint: list[str], cmd: list[str]) -> list[str]:
    lines = []
    if entrypoint:
        lines.append(f"ENTRYPOINT {podman.containerfile_json(entrypoint)}")
    if cmd:
        lines.append(f"CMD {podman.containerfile_json(cmd)}")
    return lines


def _python_fips() -> FipsPosture:
    return FipsPosture(
        False,
        "Python on Debian bookworm's OpenSSL 3.0; bookworm ships no validated FIPS provider, "
        "so the host's provider configuration decides (see the fips role)",
    )
