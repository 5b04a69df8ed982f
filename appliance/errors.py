"""Every error the appliance raises on purpose.

The CLI catches ``ApplianceError`` once, prints its message without a traceback and
exits non-zero. Messages say what was expected, what was found, and name the file, host
or component involved; each layer adds its context.

Tree::

    ApplianceError
    ├── PrerequisiteError        a tool, a package or room on disk is missing here
    │   └── RegistryRefusedError a package registry answered "no" for something we need
    ├── DefinitionError          a bundle definition file is malformed or unsafe
    ├── BuildError               building a component failed
    └── CommandError             an external program exited non-zero

Untrusted input (bundles, media) and operational failures (install, controller) get
subtrees of their own as those parts land; keep them apart.
"""

from __future__ import annotations

__all__ = [
    "ApplianceError",
    "BuildError",
    "CommandError",
    "DefinitionError",
    "PrerequisiteError",
    "RegistryRefusedError",
]


class ApplianceError(Exception):
    """Root of every error the appliance raises deliberately."""

    #: What the user can do about it; printed on its own line by the CLI when set.
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class PrerequisiteError(ApplianceError):
    """Something this machine must provide is missing (a program, a package, disk)."""


class RegistryRefusedError(PrerequisiteError):
    """A package registry refused to serve something the build needs."""


class DefinitionError(ApplianceError):
    """A bundle definition cannot be used as written."""


class BuildError(ApplianceError):
    """A component could not be built."""


class CommandError(ApplianceError):
    """An external program exited with a failure status."""

    def __init__(self, argv: list[str], returncode: int, output: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-15:])
        super().__init__(
            f"`{' '.join(argv[:4])}{' …' if len(argv) > 4 else ''}` exited with status "
            f"{returncode}" + (f":\n{tail}" if tail else "")
        )
