"""Machine-level settings shared by every part of the appliance."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Where heavy, reproducible outputs are cached: ``$APPLIANCE_CACHE`` or ~/.cache/appliance.

    Everything under it is keyed on its inputs, so deleting it only costs time.
    """
    configured = os.environ.get("APPLIANCE_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "appliance"
    path.mkdir(parents=True, exist_ok=True)
    return path
