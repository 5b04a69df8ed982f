"""Building a Go program from its module at a pinned version, with the Go Cryptographic Module.

Modules with ``replace`` directives (OpenZiti's) refuse ``go install mod@version``, so we
download the module, copy it somewhere writable and ``go build`` inside it. The binary is
cached under ``$APPLIANCE_CACHE/go/bin/<key>``, the key covering every input.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from appliance._fsutil import input_key, staging_dir
from appliance._process import require_program, run
from appliance.cache import ledger
from appliance.definition import GoBinaryBuild
from appliance.errors import BuildError, CommandError, RegistryRefusedError
from appliance.settings import cache_dir

__all__ = ["GoBinary", "build_go_binary", "go_build_settings", "go_env"]


@dataclass(frozen=True)
class GoBinary:
    """A built Go binary and what it was built from."""

    path: Path
    module: str
    version: str
    fips140: str | None
    cached: bool


def go_env() -> dict[str, str]:
    """Environment for every go command: caches outside the repo, no toolchain downloads."""
    root = cache_dir() / "go"
    return {
        "GOMODCACHE": str(root / "mod"),
        "GOCACHE": str(root / "build"),
        "GOTOOLCHAIN": "local",
        "GOFLAGS": "-buildvcs=false -modcacherw",
        "CGO_ENABLED": "0",
        "GOOS": "linux",
        "GOARCH": "amd64",
    }


def build_go_binary(spec: GoBinaryBuild) -> GoBinary:
    """Build (or reuse from the cache) the binary that ``spec`` describes."""
    require_program("go")
    env = go_env()
    go_version = run(["go", "env", "GOVERSION"], env=env).strip()
    key = input_key(
        "go-binary/1",
        spec.module,
        spec.version,
        spec.package,
        spec.ldflags,
        spec.fips140,
        go_version,
        env["GOOS"],
        env["GOARCH"],
    )
    final = cache_dir() / "go" / "bin" / key
    ledger.note(final)
    binary = final / spec.binary
    if binary.is_file():
        return GoBinary(binary, spec.module, spec.version, spec.fips140, cached=True)

    source = _download_module(spec.module, spec.version, env)
    with staging_dir(final) as stage:
        work = stage / "src"
        shutil.copytree(source, work, symlinks=True)
        _make_writable(work)
        build_env = dict(env)
        if spec.fips140:
            build_env["GOFIPS140"] = spec.fips140
        argv = ["go", "build", "-trimpath", "-o", str(stage / spec.binary)]
        if spec.ldflags:
            argv += ["-ldflags", " ".join(spec.ldflags)]
        argv.append(spec.package)
        try:
            run(argv, cwd=work, env=build_env)
        except CommandError as exc:
            raise BuildError(
                f"building {spec.package} of {spec.module}@{spec.version} failed: {exc}"
            ) from exc
        shutil.rmtree(work)
    return GoBinary(binary, spec.module, spec.version, spec.fips140, cached=False)


def go_build_settings(binary: Path) -> dict[str, str]:
    """The build settings ``go version -m`` reports for ``binary`` (e.g. GOFIPS140)."""
    out = run(["go", "version", "-m", binary], env=go_env())
    settings: dict[str, str] = {}
    for line in out.splitlines():
        fields = line.strip().split("\t")
        if len(fields) >= 2 and fields[0] == "build":
            name, _, value = fields[1].partition("=")
            settings[name] = value
    return settings


def _download_module(module: str, version: str, env: dict[str, str]) -> Path:
    # `go mod download -json` reports failures inside its JSON, so read it even on exit 1.
    proc = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        env={**os.environ, **env},
        cwd=cache_dir(),
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        info = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        info = {}
    error = info.get("Error") or (proc.stderr.strip() if proc.returncode else "")
    if error:
        if "403" in error or "not available" in error:
            raise RegistryRefusedError(
                f"the Go module proxy refused {module}@{version}: {error.splitlines()[-1].strip()}",
                hint="supply the program instead (its release archive, executable or "
                "upstream image: `--source`, or the folder $APPLIANCE_SUPPLIED; "
                "docs/components.md), or build on a machine whose Go proxy serves it",
            )
        raise BuildError(
            f"downloading the Go module {module}@{version} failed: "
            f"{error.strip().splitlines()[-1]}",
            hint="check the module path and version pinned in the bundle definition",
        )
    directory = info.get("Dir")
    if not directory or not Path(directory).is_dir():
        raise BuildError(f"`go mod download` gave no source directory for {module}@{version}")
    return Path(directory)


def _make_writable(tree: Path) -> None:
    for path in [tree, *tree.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
