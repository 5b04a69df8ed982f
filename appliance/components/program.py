"""What a Go program really is, read from the program itself, and checked against its pin.

Whatever the source of an OpenZiti program (built here from its module, a prebuilt
executable or release archive, an upstream image), the lock file records the version the
program prints, the sha256 of the executable and the Go build settings ``go version -m``
reads from its build information. The FIPS column comes from those settings, never from
the definition; a program whose version or settings contradict the definition is refused
with both values named.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from appliance.definition import GoBinaryBuild
from appliance.errors import BuildError

__all__ = [
    "RECORDED_SETTINGS",
    "ProgramFacts",
    "check_program",
    "fips_from_settings",
    "inspect_program",
    "normalize_version",
    "parse_build_info",
    "read_build_info",
    "sha256_file",
]

#: The build settings the lock records (the rest of ``go version -m`` is noise for a site).
RECORDED_SETTINGS = (
    "GOFIPS140",
    "DefaultGODEBUG",
    "CGO_ENABLED",
    "-trimpath",
    "-tags",
    "GOOS",
    "GOARCH",
    "GOAMD64",
)

#: How long a supplied program may take to print its version.
_VERSION_TIMEOUT_S = 30


@dataclass(frozen=True)
class GoModule:
    """A module a Go program was built from, as its build information records it."""

    path: str
    version: str
    go_sum: str | None = None


@dataclass(frozen=True)
class BuildInfo:
    """The Go build information embedded in a binary."""

    go_version: str
    path: str
    main_module: str
    main_version: str
    settings: dict[str, str] = field(default_factory=dict)
    #: The main module first, then every dependency (replacements applied).
    modules: tuple[GoModule, ...] = ()


@dataclass(frozen=True)
class ProgramFacts:
    """What a program says of itself: its version, digest and Go build settings."""

    version: str
    sha256: str
    go_version: str
    main_module: str
    settings: dict[str, str]

    @property
    def fips140(self) -> str | None:
        """The Go Cryptographic Module the program was built with, if any."""
        value = self.settings.get("GOFIPS140", "")
        return value if value and value != "off" else None


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_build_info(binary: Path) -> BuildInfo:
    """The Go build information of ``binary``; a file without it is refused."""
    info = parse_build_info(binary)
    if info is None:
        raise BuildError(
            f"{binary} carries no Go build information (not a Go program of Go 1.18 or later)",
            hint="supply the upstream Go program itself, not a wrapper script or a stripped copy",
        )
    return info


_GO_MAGIC = b"\xff Go buildinf:"


def parse_build_info(binary: Path) -> BuildInfo | None:
    """What `go version -m` prints, read from the binary here (no Go toolchain needed), or
    None for a file that is no Go program of Go 1.18 or later (whose strings are inline)."""
    try:
        with binary.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                return None
            data = b"\x7fELF" + handle.read()
    except OSError:
        return None
    at = data.find(_GO_MAGIC)
    while at >= 0 and at % 16:  # the header is 16-byte aligned
        at = data.find(_GO_MAGIC, at + 1)
    if at < 0 or len(data) < at + 32 or not data[at + 15] & 0x2:  # flag 2: strings inline
        return None
    go_version, position = _varint_string(data, at + 32)
    modinfo, _ = _varint_string(data, position)
    # The module information sits between two 16-byte sentinels.
    if len(modinfo) < 33 or modinfo[-17] != "\n":
        modinfo = ""
    return _build_info(go_version, modinfo[16:-16] if modinfo else "")


def _varint_string(data: bytes, position: int) -> tuple[str, int]:
    length = shift = 0
    while position < len(data):
        byte = data[position]
        position += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    end = position + length
    return data[position:end].decode("utf-8", errors="replace"), end


def _build_info(go_version: str, modinfo: str) -> BuildInfo:
    path = main_module = main_version = ""
    settings: dict[str, str] = {}
    modules: list[GoModule] = []
    for line in modinfo.splitlines():
        fields = line.split("\t")
        go_sum = fields[3] if len(fields) > 3 and fields[3] else None
        if fields[0] == "path" and len(fields) >= 2:
            path = fields[1]
        elif fields[0] in ("mod", "dep") and len(fields) >= 3:
            if fields[0] == "mod":
                main_module, main_version = fields[1], fields[2]
            modules.append(GoModule(fields[1], fields[2], go_sum))
        elif fields[0] == "=>" and len(fields) >= 3 and modules:  # replaces the one before
            modules[-1] = GoModule(fields[1], fields[2], go_sum)
        elif fields[0] == "build" and len(fields) >= 2:
            name, _, value = fields[1].partition("=")
            settings[name] = value
    return BuildInfo(go_version, path, main_module, main_version, settings, tuple(modules))


def inspect_program(binary: Path, spec: GoBinaryBuild) -> ProgramFacts:
    """Read ``binary``'s version, digest and build settings.

    The version is the first word ``binary VERSION_ARGS`` prints (``ziti version`` prints
    ``v2.0.3``); with no ``version_args`` it is the main module's version from the build
    information. The program runs with an empty environment and no input.
    """
    info = read_build_info(binary)
    if spec.version_args:
        version = _printed_version(binary, spec.version_args)
    else:
        version = info.main_version
    settings = {k: info.settings[k] for k in RECORDED_SETTINGS if k in info.settings}
    return ProgramFacts(
        version=version,
        sha256=sha256_file(binary),
        go_version=info.go_version,
        main_module=info.main_module or info.path,
        settings=settings,
    )


def normalize_version(version: str) -> str:
    """``v2.0.3`` and ``2.0.3`` are the same version."""
    return version.strip().removeprefix("v")


def check_program(name: str, spec: GoBinaryBuild, facts: ProgramFacts, source: str) -> None:
    """Refuse a program whose version or build settings contradict the definition.

    Every contradiction is named with both values, so the vendor sees at once whether the
    wrong file was supplied or the definition needs a new pin.
    """
    problems = []
    if normalize_version(facts.version) != normalize_version(spec.version):
        problems.append(
            f"version: the definition pins {spec.version}, the program prints "
            f"{facts.version or '(nothing)'}"
        )
    fips = facts.settings.get("GOFIPS140", "")
    # Go records the module snapshot it selected, e.g. v1.0.0-c2097c7c for v1.0.0.
    if spec.fips140 and not fips.startswith(spec.fips140):
        problems.append(
            f"GOFIPS140: the definition asks for {spec.fips140}, the program was built with "
            f"{fips or 'no GOFIPS140 setting'}"
        )
    cgo = facts.settings.get("CGO_ENABLED", "")
    if cgo != ("1" if spec.cgo else "0"):
        problems.append(
            f"CGO_ENABLED: the definition asks for {'1' if spec.cgo else '0'}, the program "
            f"was built with {cgo or 'no CGO_ENABLED setting'}"
        )
    trimpath = facts.settings.get("-trimpath", "false")
    if spec.trimpath and trimpath != "true":
        problems.append(
            f"-trimpath: the definition asks for a -trimpath build, the program records "
            f"-trimpath={trimpath}"
        )
    if problems:
        raise BuildError(
            f"{name}: refused {source}: " + "; ".join(problems),
            hint="supply the program the definition pins, or change the pin in the "
            "definition if this program is the one to ship",
        )


def fips_from_settings(facts: ProgramFacts, runtime_godebug: str | None) -> tuple[bool, str]:
    """Whether the program is built for FIPS mode, and why, from its own build settings."""
    if facts.fips140 is None:
        return False, "built without GOFIPS140: Go's standard crypto, not the FIPS module"
    default = facts.settings.get("DefaultGODEBUG", "")
    fips_default = next(
        (part for part in default.split(",") if part.startswith("fips140=")), "fips140 unset"
    )
    runs = runtime_godebug or "GODEBUG unset"
    return True, (
        f"Go Cryptographic Module, GOFIPS140={facts.fips140} (read from the program); "
        f"default {fips_default}; runs with {runs}"
    )


def _printed_version(binary: Path, args: list[str]) -> str:
    try:
        proc = subprocess.run(
            [str(binary), *args],
            env={"PATH": os.defpath, "HOME": "/nonexistent"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(
            f"cannot run {binary} {' '.join(args)} to read its version: {exc}",
            hint="supply a linux/amd64 executable of the program",
        ) from exc
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        raise BuildError(
            f"{binary} {' '.join(args)} printed no version (exit {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()[-200:]})"
        )
    # `llm-gateway version` prints "v0.1.4 []": the version is the first word.
    return lines[0].split()[0]
