"""Reading a YAML configuration file into a pydantic model, with errors a person can act on.

The access proxy, the vendor shell proxy and the admin service each read one; every one
says which file, which key and what was wrong, in the error type of its own package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from appliance.errors import ApplianceError

__all__ = ["load_model", "problems_of", "read_mapping"]

_M = TypeVar("_M", bound=BaseModel)


def read_mapping(path: Path, what: str, error: type[ApplianceError]) -> dict[str, Any]:
    """The mapping in YAML file ``path`` (empty for an empty file), or ``error``."""
    try:
        loaded: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise error(f"{path}: expected a mapping of settings")
    return loaded


def problems_of(exc: ValidationError, root: str) -> str:
    """Each problem as ``key.path: message`` (``root`` for the whole document)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}" for e in exc.errors()
    )


def load_model(path: Path, model: type[_M], what: str, error: type[ApplianceError]) -> _M:
    """``model`` from YAML file ``path``, or ``error`` naming the file and each problem."""
    loaded = read_mapping(path, what, error)
    try:
        return model(**loaded)
    except ValidationError as exc:
        raise error(f"{path}: {problems_of(exc, 'config')}") from None
