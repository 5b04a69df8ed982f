"""Installer runs, reported to the site's audit log through an outbox that loses nothing.

Each install, upgrade or rollback queues one event in SITE/audit-outbox.json before it
tries to send anything; installer/audit.yml hands the queue to the admin service's own
audit library on every admin host, and only a send that succeeded empties the queue. A
run that fails before the admin service exists, or cannot reach it, leaves its event
queued; the next run sends it. Events carry an id, so a resend appends nothing twice.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance._fsutil import atomic_write_json
from appliance.errors import ApplianceError, BundleError
from appliance.install.layout import SiteDir
from appliance.install.steps import Say, read_state, run_staged
from appliance.media.site_state import SiteState

__all__ = ["queue_event", "report", "report_failure", "send_events"]


def report(
    site: SiteDir,
    inventory: Path,
    action: str,
    target: str,
    outcome: str,
    details: dict[str, Any],
    say: Say,
) -> None:
    """Queue an event and send the queue through the installed version's playbooks."""
    queue_event(site, action, target, outcome, details)
    _send_installed(site, read_state(site), inventory, say)


def report_failure(
    site: SiteDir, inventory: Path, action: str, target: str, error: ApplianceError, say: Say
) -> None:
    """Queue a failed or refused run; send it when the site runs an admin service."""
    outcome = "refused" if isinstance(error, BundleError) else "failed"
    queue_event(site, action, target, outcome, {"error": str(error).splitlines()[0][:500]})
    _send_installed(site, read_state(site), inventory, say)


def _send_installed(site: SiteDir, state: SiteState | None, inventory: Path, say: Say) -> None:
    if state is None or state.installed is None:
        return  # no admin service yet: the queue waits for the first install
    version = state.installed.version
    try:
        common = json.loads(site.stage_vars(version).read_text(encoding="utf-8"))
        send_events(site, site.stage(version) / "ansible", inventory, common, say)
    except (ApplianceError, OSError, ValueError) as exc:
        # Reporting must never hide the run's own result; the queue keeps the events.
        say(f"installer events stay queued in {_outbox(site)}: {exc}")


def queue_event(
    site: SiteDir, action: str, target: str, outcome: str, details: dict[str, Any]
) -> None:
    """Queue one installer event durably (the file is replaced atomically)."""
    events = _pending(site)
    events.append(
        {
            "event_id": str(uuid.uuid4()),
            "actor": f"installer:{_operator()}@{socket.gethostname()}"[:64],
            "action": action,
            "target": target,
            "outcome": outcome,
            "details": details,
        }
    )
    atomic_write_json(_outbox(site), events)


def send_events(
    site: SiteDir, ansible_dir: Path, inventory: Path, common: dict[str, Any], say: Say
) -> None:
    """Send the queue to the admin hosts' audit logs; keep it when that fails."""
    events = _pending(site)
    if not events:
        return
    result = run_staged(
        site, ansible_dir, "audit.yml", inventory, {**common, "appliance_audit_events": events}, say
    )
    if result.failures or result.rc != 0:
        say(
            f"{len(events)} installer events could not reach the audit log yet; they stay "
            f"in {_outbox(site)} and the next run sends them (log: {result.log})"
        )
        return
    sent = {e["event_id"] for e in events}
    atomic_write_json(_outbox(site), [e for e in _pending(site) if e["event_id"] not in sent])
    say(f"recorded in the site's audit log: {', '.join(e['action'] for e in events)}")


def _pending(site: SiteDir) -> list[dict[str, Any]]:
    try:
        events = json.loads(_outbox(site).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        # Never drop what is there: keep the damaged file for a person, start a new queue.
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        _outbox(site).replace(_outbox(site).with_suffix(f".damaged-{stamp}"))
        return []
    return list(events)


def _outbox(site: SiteDir) -> Path:
    return site.root / "audit-outbox.json"


def _operator() -> str:
    if os.environ.get("SUDO_USER"):
        return os.environ["SUDO_USER"]  # the person behind sudo, not root
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
