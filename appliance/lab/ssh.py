"""The lab's SSH access: the installer's key, known_hosts, and the ssh command line.

The key is ECDSA P-384 (FIPS-approved). Every machine's host keys are generated before
it boots and written to known_hosts, so SSH runs with StrictHostKeyChecking=yes from the
first connection: nothing is trusted on first use.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from appliance._fsutil import atomic_write_bytes
from appliance._process import run
from appliance.lab.plan import Machine

__all__ = ["SshAccess", "generate_key", "known_hosts_lines", "write_known_hosts"]


@dataclass(frozen=True)
class SshAccess:
    """How the workstation logs in to lab machines: a private key and a known_hosts file."""

    key: Path
    known_hosts: Path

    def options(self) -> list[str]:
        """ssh ``-o`` options shared by every connection (also the inventory's common args)."""
        return [
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
        ]

    def argv(self, address: str, command: str, *, connect_timeout: int = 5) -> list[str]:
        """The ssh command line that runs ``command`` as root on ``address``."""
        return [
            "ssh",
            "-i",
            str(self.key),
            *self.options(),
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            "-o",
            "LogLevel=ERROR",
            f"root@{address}",
            command,
        ]

    def answers(self, address: str, *, timeout: float = 10) -> bool:
        """Whether ``ssh root@address true`` succeeds (host key checked) within ``timeout``."""
        try:
            done = subprocess.run(
                self.argv(address, "true", connect_timeout=max(1, int(timeout))),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0


def generate_key(path: Path) -> str:
    """Write a new ECDSA P-384 key pair at ``path`` (private 0600) and return the public key."""
    for old in (path, path.with_name(path.name + ".pub")):
        old.unlink(missing_ok=True)
    run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ecdsa",
            "-b",
            "384",
            "-N",
            "",
            "-C",
            "appliance-lab",
            "-f",
            path,
        ]
    )
    path.chmod(0o600)
    return path.with_name(path.name + ".pub").read_text(encoding="utf-8").strip()


def known_hosts_lines(machine: Machine, root: Path) -> list[str]:
    """known_hosts lines for every host key in ``root``, under each of the machine's names."""
    names = [machine.site_address, machine.name]
    if machine.outside_address:
        names.append(machine.outside_address)
    lines = []
    for pub in sorted((root / "etc" / "ssh").glob("ssh_host_*_key.pub")):
        key_type, key = pub.read_text(encoding="utf-8").split()[:2]
        lines.append(f"{','.join(names)} {key_type} {key}")
    return lines


def write_known_hosts(path: Path, lines: list[str]) -> None:
    """Write the known_hosts file atomically."""
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
