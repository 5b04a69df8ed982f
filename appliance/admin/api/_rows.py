"""Filling an API model from an object whose attributes bear the model's field names."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

__all__ = ["from_row"]

_M = TypeVar("_M", bound=BaseModel)


def from_row(model: type[_M], row: object, **computed: object) -> _M:
    """``model`` from ``row``'s attributes of the same names; ``computed`` fills the rest.

    Explicit about what is computed, and validated like any other input: a field the row
    lacks and nobody computed is an AttributeError at once, not a silent default.
    """
    names = model.model_fields.keys() - computed.keys()
    return model(**{name: getattr(row, name) for name in names}, **computed)
