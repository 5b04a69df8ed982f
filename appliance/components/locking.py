"""`appliance components lock`: resolve every Python image of a definition and its
installer, and write the definition's lock (its form and pip's resolver: pylock.py).

Apart from pylock.py because it builds our own wheel (wheelhouse.py) and reads the base
root filesystem's packages (rootfs.py), and both of those read locks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from appliance.components.pylock import INSTALLER, LockedWheel, lock_path, resolve, write_lock
from appliance.components.rootfs import base_packages
from appliance.components.wheelhouse import TARGET, build_appliance_wheel
from appliance.definition import ApplianceWheelBuild, Definition, PythonVenvBuild

__all__ = ["lock_definition"]


def lock_definition(definition: Definition) -> tuple[Path, dict[str, list[LockedWheel]]]:
    """Resolve every Python image of ``definition`` and its installer, and write the lock."""
    locks: dict[str, list[LockedWheel]] = {}
    with tempfile.TemporaryDirectory(prefix="appliance-lock-wheel-") as tmp:
        ours = build_appliance_wheel(Path(tmp))  # its dependencies are locked, not it
        own = ["--find-links", tmp]
        version = ours.name.split("-")[1]
        for component in definition.components:
            spec = component.build
            if isinstance(spec, PythonVenvBuild):
                locks[component.name] = resolve(spec.requirements, TARGET)
            elif isinstance(spec, ApplianceWheelBuild):
                extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
                wanted = [f"appliance{extras}=={version}", *own]
                locks[component.name] = resolve(wanted, TARGET, skip="appliance")
        wanted = [f"appliance=={version}", *definition.installer.requirements, *own]
        locks[INSTALLER] = resolve(wanted, TARGET, skip="appliance")
    debian = None
    if definition.base is not None:  # what debootstrap installs (made now if not cached)
        debian = (definition.base.suite, base_packages(definition.base))
    path = lock_path(definition.source_dir, definition.name)
    write_lock(path, definition.name, locks, debian)
    return path, locks
