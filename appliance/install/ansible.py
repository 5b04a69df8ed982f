"""Running the bundle's playbooks through ansible-runner, with a live view and a full log.

ansible-runner gives us Ansible's events as dictionaries; we keep per host the role it is
in, every failure with its task and message, the recap counts, and the results of tasks
named ``report …`` (how preflight and health checks hand their findings back).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import InstallError, PrerequisiteError

__all__ = ["HostFailure", "PlaybookResult", "run_playbook"]

#: Tasks whose result a playbook hands back to the installer are named with this prefix.
REPORT_PREFIX = "report "


@dataclass(frozen=True)
class HostFailure:
    """A task that failed on a host, or a host Ansible could not reach."""

    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class PlaybookResult:
    """What a playbook run did, host by host."""

    rc: int
    status: str
    log: Path
    changed: dict[str, int] = field(default_factory=dict)
    ok: dict[str, int] = field(default_factory=dict)
    failures: list[HostFailure] = field(default_factory=list)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def total_changed(self) -> int:
        """Changed tasks over all hosts (0 on a site already in the wanted state)."""
        return sum(self.changed.values())


class _Collector:
    """Turns ansible-runner events into a PlaybookResult and progress lines."""

    def __init__(self, result: PlaybookResult, progress: Callable[[str], None]) -> None:
        self.result = result
        self.progress = progress
        self.role: dict[str, str] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {}) or {}
        host = str(data.get("host", ""))
        task = str(data.get("task", ""))
        role = str(data.get("role", "") or "")
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable") and host:
            if role and self.role.get(host) != role:
                self.role[host] = role
                self.progress(f"{host:<10} {role}")
            res = data.get("res", {}) or {}
            if kind == "runner_on_ok" and task.startswith(REPORT_PREFIX):
                report = {**res, "_created": event.get("created")}  # when the installer saw it
                self.result.reports.setdefault(host, {})[task[len(REPORT_PREFIX) :]] = report
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                message = _message(res)
                self.result.failures.append(HostFailure(host, task, message))
                self.progress(f"{host:<10} FAILED {role + ': ' if role else ''}{task}: {message}")
            elif kind == "runner_on_unreachable":
                message = _message(res)
                self.result.failures.append(HostFailure(host, task, message, unreachable=True))
                self.progress(f"{host:<10} UNREACHABLE: {message}")
        elif kind == "playbook_on_stats":
            self.result.changed = {str(k): int(v) for k, v in (data.get("changed") or {}).items()}
            self.result.ok = {str(k): int(v) for k, v in (data.get("ok") or {}).items()}
        return True  # keep the event in the artifacts too


def _message(res: dict[str, Any]) -> str:
    for key in ("msg", "stderr", "module_stderr", "stdout"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            return text if len(text) < 600 else text[:600] + " …"
    return "no message"


def run_playbook(
    playbook: Path,
    *,
    inventory: Path,
    private_dir: Path,
    roles_path: Path,
    extravars: dict[str, Any],
    progress: Callable[[str], None],
) -> PlaybookResult:
    """Run ``playbook`` against ``inventory``; its full log lands in ``private_dir``."""
    try:
        import ansible_runner  # type: ignore[import-untyped]  # the install extra only
    except ImportError as exc:
        raise PrerequisiteError(
            "ansible-runner is not installed beside the appliance package",
            hint="run the installer from the media (installer/install.sh), which installs it",
        ) from exc
    if not playbook.is_file():
        raise InstallError(f"the playbook {playbook} is not in the staged bundle")
    private_dir.mkdir(parents=True, exist_ok=True)
    log = private_dir / "ansible.log"
    bin_dir = str(Path(sys.executable).parent)
    envvars = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_CONFIG": str(playbook.parent / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(roles_path),
        "ANSIBLE_LOG_PATH": str(log),
        "ANSIBLE_NOCOLOR": "1",
    }
    result = PlaybookResult(rc=-1, status="unstarted", log=log)
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        playbook=str(playbook),
        inventory=str(inventory),
        extravars=extravars,
        envvars=envvars,
        quiet=True,
        event_handler=_Collector(result, progress),
        settings={"suppress_ansible_output": True},
    )
    result.rc = int(runner.rc if runner.rc is not None else -1)
    result.status = str(runner.status)
    return result
