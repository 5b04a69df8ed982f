"""Machine-level settings shared by every part of the appliance."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SUPPLIED_ENV", "cache_dir", "supplied_dir"]

#: The variable naming the folder of supplied OpenZiti programs (see docs/components.md).
SUPPLIED_ENV = "APPLIANCE_SUPPLIED"


def cache_dir() -> Path:
    """Where heavy, reproducible outputs are cached: ``$APPLIANCE_CACHE`` or ~/.cache/appliance.

    Everything under it is keyed on its inputs, so deleting it only costs time.
    """
    configured = os.environ.get("APPLIANCE_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "appliance"
    path.mkdir(parents=True, exist_ok=True)
    return path


def supplied_dir() -> Path:
    """Where supplied OpenZiti programs are: ``$APPLIANCE_SUPPLIED`` or ``CACHE/supplied``.

    The folder holds ``ziti`` and ``llm-gateway`` as upstream executables or release
    archives; `make demo`, `make test` and `appliance components build` look there.
    """
    configured = os.environ.get(SUPPLIED_ENV)
    return Path(configured) if configured else cache_dir() / "supplied"
