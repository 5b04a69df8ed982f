"""The install journal: the one place that defines its format.

A journal belongs to one bundle (its targets.json digest) and lists the steps of one
install, upgrade or rollback in order. Each step is ``pending``, ``running`` or ``done``;
a step is marked done only after its effects are durable, so a killed installer leaves at
most one step ``running``, and a rerun starts again from that step. The file is replaced
atomically at every change::

    {"format": 1, "bundle": "lab", "version": "2026.11.0", "targets_sha256": "…",
     "kind": "install" | "upgrade" | "rollback", "started": "…Z", "finished": null | "…Z",
     "steps": [{"name": "verify", "state": "done", "at": "…Z", "detail": {…}}, …]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from appliance._fsutil import atomic_write_json
from appliance.errors import InstallError

__all__ = ["STEPS", "Journal", "Kind", "Step", "load_journal", "new_journal"]

FORMAT = 1
Kind = Literal["install", "upgrade", "rollback"]
#: The steps of each kind, in order (DESIGN.md "Install onto internal hardware"). An
#: upgrade snapshots configuration and databases on every host before it converges; a
#: rollback restores that snapshot, then converges the previous version's stage.
STEPS: dict[str, tuple[str, ...]] = {
    "install": ("verify", "import", "preflight", "converge", "health", "record"),
    "upgrade": ("verify", "import", "preflight", "snapshot", "converge", "health", "record"),
    "rollback": ("restore", "converge", "health", "record"),
}

State = Literal["pending", "running", "done"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Step:
    """One step of an install."""

    name: str
    state: State = "pending"
    at: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Journal:
    """An install of one bundle, step by step, kept in ``path``."""

    path: Path
    bundle: str
    version: str
    targets_sha256: str
    kind: Kind
    started: str
    steps: list[Step]
    finished: str | None = None

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

    def is_done(self, name: str) -> bool:
        """True when ``name`` finished in this or an earlier run."""
        return self.step(name).state == "done"

    def begin(self, name: str) -> None:
        """Mark ``name`` running (durably) before doing it."""
        step = self.step(name)
        step.state, step.at = "running", _now()
        self.save()

    def done(self, name: str, **detail: Any) -> None:
        """Mark ``name`` done, with what a person or a rerun needs to know about it."""
        step = self.step(name)
        step.state, step.at = "done", _now()
        step.detail = detail
        if all(s.state == "done" for s in self.steps):
            self.finished = _now()
        self.save()

    def save(self) -> None:
        """Write the journal atomically."""
        atomic_write_json(
            self.path,
            {
                "format": FORMAT,
                "bundle": self.bundle,
                "version": self.version,
                "targets_sha256": self.targets_sha256,
                "kind": self.kind,
                "started": self.started,
                "finished": self.finished,
                "steps": [
                    {"name": s.name, "state": s.state, "at": s.at, "detail": s.detail}
                    for s in self.steps
                ],
            },
        )


def new_journal(
    path: Path, *, bundle: str, version: str, targets_sha256: str, kind: Kind
) -> Journal:
    """A fresh journal with every step pending, written to ``path``."""
    if kind not in STEPS:
        raise ValueError(f"journal kind {kind!r}")
    journal = Journal(
        path=path,
        bundle=bundle,
        version=version,
        targets_sha256=targets_sha256,
        kind=kind,
        started=_now(),
        steps=[Step(name) for name in STEPS[kind]],
    )
    journal.save()
    return journal


def load_journal(path: Path) -> Journal | None:
    """The journal at ``path``, or None when there is none; a damaged one is an error."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise InstallError(
            f"the install journal {path} cannot be read: {exc}",
            hint="move it aside and rerun the install: every step is safe to repeat",
        ) from exc
    try:
        if raw["format"] != FORMAT:
            raise ValueError(f"format {raw['format']!r}, expected {FORMAT}")
        steps = [Step(str(s["name"]), s["state"], s["at"], dict(s["detail"])) for s in raw["steps"]]
        kind = raw["kind"]
        if kind not in STEPS:
            raise ValueError(f"kind {kind!r}")
        if [s.name for s in steps] != list(STEPS[kind]) or any(
            s.state not in ("pending", "running", "done") for s in steps
        ):
            raise ValueError("unexpected steps")
        return Journal(
            path=path,
            bundle=str(raw["bundle"]),
            version=str(raw["version"]),
            targets_sha256=str(raw["targets_sha256"]),
            kind=kind,
            started=str(raw["started"]),
            finished=raw["finished"],
            steps=steps,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InstallError(
            f"the install journal {path} is not one this installer wrote: {exc}",
            hint="move it aside and rerun the install: every step is safe to repeat",
        ) from exc
