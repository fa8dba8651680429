"""The base of every settings block: unknown fields and booleans given for numbers are refused."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["SettingsModel"]


def _takes_numbers_not_bools(annotation: Any) -> bool:
    """Whether a field's type is a number (int/float, possibly Optional) that does not also admit a bool."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        return bool not in members and any(m in (int, float) for m in members)
    return False


class SettingsModel(BaseModel):
    """Base of every settings block (specs, options, model and PEFT settings): unknown fields and booleans
    given for numbers are refused. pydantic's lax mode reads ``true`` as 1, so ``--set training.epochs=true``
    would otherwise train one epoch without a word."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _refuse_bools_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(field.alias or name, data.get(name))
                if isinstance(value, bool) and _takes_numbers_not_bools(field.annotation):
                    raise ValueError(f"field {name!r} takes a number, got the boolean {str(value).lower()}")
        return data
