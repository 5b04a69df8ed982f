"""Running programs on the host (ip, nft, umount, rm) through one seam, and waiting for it.

Every command the lab runs to look at or change the host goes through a ``Runner``, so a
unit test can answer for the host (``tests/unit/test_lab_down.py``). Removal code never
trusts a failure message: when a removal fails it looks again, and a piece that is gone
is done, whatever words the program used to say so.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from appliance._process import require_program
from appliance.errors import CommandError, LabError

__all__ = ["Completed", "Runner", "host_runner", "remove", "wait_until"]


@dataclass(frozen=True)
class Completed:
    """A finished command: its argv, exit status and combined output."""

    argv: tuple[str, ...]
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0."""
        return self.returncode == 0

    def check(self) -> str:
        """The output; CommandError (command, status, output) when the command failed."""
        if not self.ok:
            raise CommandError(list(self.argv), self.returncode, self.output)
        return self.output


class Runner(Protocol):
    """Runs one command to completion; never raises for a non-zero exit."""

    def __call__(
        self, argv: Sequence[str | os.PathLike[str]], *, input_text: str | None = None
    ) -> Completed: ...


def host_runner(
    argv: Sequence[str | os.PathLike[str]], *, input_text: str | None = None
) -> Completed:
    """Run ``argv`` on this machine; PrerequisiteError when the program is not installed."""
    args = tuple(str(a) for a in argv)
    require_program(args[0])
    done = subprocess.run(
        args,
        input=input_text,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    return Completed(args, done.returncode, done.stdout)


def remove(
    run: Runner,
    argv: Sequence[str | os.PathLike[str]],
    what: str,
    present: Callable[[], bool],
) -> bool:
    """Run a removal command for ``what``: True when it removed it, False when it was gone.

    "Already absent" is what a removal wants, so a failed command is only an error when
    ``present()`` says the piece is still there afterwards; the error then names it.
    """
    done = run(argv)
    if done.ok:
        return True
    if not present():
        return False
    answer = done.output.strip().splitlines()[-1] if done.output.strip() else "no output"
    raise LabError(
        f"could not remove {what}: `{' '.join(done.argv)}` exited with status "
        f"{done.returncode} ({answer}) and {what} is still there",
        hint="find out what holds it, remove it by hand, then run the command again",
    )


def wait_until(done: Callable[[], bool], *, timeout: float, interval: float = 0.5) -> bool:
    """Poll ``done`` until it returns True (→ True) or ``timeout`` seconds pass (→ False)."""
    deadline = time.monotonic() + timeout
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
