"""A fake host for the lab's removal code: it answers ip, nft, umount and rm as they do.

tests/unit/test_lab_down.py and tests/unit/test_lab_named.py run the lab's commands
against it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.lab.host import Completed
from appliance.lab.network import LabOwner, owner_tag, scan_network
from appliance.lab.plan import LabPlan, Slot


class FakeHost:
    """Namespaces, links and nft tables in sets; answers like the real programs do.

    ``before[argv]`` runs just before that command (something else removes a piece
    first); ``refuse[argv]`` makes a command fail while its piece stays (a real failure);
    ``linger[link]`` keeps a link listed for that many more listings after its namespace
    went (the kernel deletes a namespace's veths a moment later); a ``phantom`` link
    stays whatever deletes it.
    """

    def __init__(self) -> None:
        self.namespaces: set[str] = set()
        self.links: dict[str, str] = {}  # name → alias
        self.tables: set[str] = set()
        self.mountinfo: Path | None = None
        self.calls: list[tuple[str, ...]] = []
        self.before: dict[tuple[str, ...], Callable[[], None]] = {}
        self.refuse: dict[tuple[str, ...], str] = {}
        self.linger: dict[str, int] = {}
        self.phantom: set[str] = set()

    def add_lab(self, plan: LabPlan, owner: LabOwner | None) -> None:
        """Everything `create_network` makes for ``plan``."""
        slot = plan.slot
        alias = owner_tag(owner) if owner else ""
        self.links |= {slot.site_bridge: alias, slot.ext_bridge: alias, plan.vendor.veth: ""}
        self.namespaces |= set(plan.namespaces)
        for m in plan.machines:
            self.links[m.site_veth] = ""
            if m.outside_address:
                self.links[m.outside_veth] = ""
        self.tables.add(slot.nft_table)

    def __call__(
        self, argv: Sequence[str | os.PathLike[str]], *, input_text: str | None = None
    ) -> Completed:
        args = tuple(str(a) for a in argv)
        self.calls.append(args)
        if args in self.before:
            self.before.pop(args)()
        if args in self.refuse:
            return Completed(args, 2, self.refuse[args])
        return self._answer(args)

    def _answer(self, args: tuple[str, ...]) -> Completed:
        def ok(output: str = "") -> Completed:
            return Completed(args, 0, output)

        def fail(output: str, status: int = 1) -> Completed:
            return Completed(args, status, output)

        match args:
            case ("ip", "-json", "netns", "list"):
                return ok(json.dumps([{"name": n} for n in sorted(self.namespaces)]))
            case ("ip", "-json", "link", "show"):
                for name in [n for n, left in self.linger.items() if left <= 0]:
                    del self.linger[name]
                    self.links.pop(name, None)
                for name in self.linger:
                    self.linger[name] -= 1
                listed = [{"ifname": "lo"}, {"ifname": "eth0"}]
                listed += [{"ifname": n, "ifalias": a} for n, a in sorted(self.links.items())]
                return ok(json.dumps(listed))
            case ("nft", "-j", "list", "tables"):
                tables = [{"table": {"family": "inet", "name": t}} for t in sorted(self.tables)]
                return ok(json.dumps({"nftables": [{"metainfo": {}}, *tables]}))
            case ("ip", "netns", "delete", name):
                if name not in self.namespaces:
                    return fail(
                        f'Cannot remove namespace file "/run/netns/{name}": No such file or '
                        "directory"
                    )
                self.namespaces.discard(name)
                for link in self._veths_of(name):
                    if link not in self.linger and link not in self.phantom:
                        self.links.pop(link, None)
                return ok()
            case ("ip", "link", "delete", name):
                if name not in self.links:
                    return fail(f'Cannot find device "{name}"')
                if name in self.phantom:
                    return ok()
                del self.links[name]
                self.linger.pop(name, None)
                return ok()
            case ("nft", "delete", "table", "inet", table):
                if table not in self.tables:
                    return fail("Error: Could not process rule: No such file or directory")
                self.tables.discard(table)
                return ok()
            case ("umount", "--lazy", point):
                assert self.mountinfo is not None
                lines = self.mountinfo.read_text().splitlines()
                kept = [ln for ln in lines if ln.split()[4] != point]
                if kept == lines:
                    return fail(f"umount: {point}: not mounted.", status=32)
                self.mountinfo.write_text("".join(ln + "\n" for ln in kept))
                return ok()
            case ("rm", "-rf", "--one-file-system", "--", path):
                shutil.rmtree(path, ignore_errors=True)
                return ok()
        raise AssertionError(f"the fake host does not know {args}")

    def _veths_of(self, namespace: str) -> list[str]:
        prefix, _, name = namespace.partition("-")
        return [f"{prefix}-s-{name}", f"{prefix}-x-{name}"]

    def lab_pieces(self, slot: Slot) -> list[str]:
        """What of lab ``slot`` is still on the fake host."""
        net = scan_network(self).of(slot)
        return list(net.pieces)
