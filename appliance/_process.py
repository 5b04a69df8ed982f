"""Running external programs with errors a person can act on."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from appliance.errors import CommandError, PrerequisiteError

__all__ = ["require_program", "run"]

#: Which Debian package provides each program we call, for the "what to do" line.
_PROVIDERS = {
    "podman": "podman",
    "skopeo": "skopeo",
    "debootstrap": "debootstrap",
    "go": "a Go toolchain (1.26 or newer)",
    "tar": "tar",
}


def require_program(name: str) -> str:
    """Return the absolute path of ``name`` on PATH, or raise a one-line PrerequisiteError."""
    found = shutil.which(name)
    if found is None:
        provider = _PROVIDERS.get(name, name)
        raise PrerequisiteError(
            f"`{name}` is not installed on this machine",
            hint=f"install {provider} (`make setup` installs everything the build needs)",
        )
    return found


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> str:
    """Run ``argv`` to completion and return its combined output.

    Raises CommandError (with the last lines of output) on a non-zero exit, and
    PrerequisiteError when the program itself is missing.
    """
    args = [str(a) for a in argv]
    require_program(args[0])
    full_env = {**os.environ, **env} if env is not None else None
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=full_env,
        input=input_text,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout)
    return proc.stdout
