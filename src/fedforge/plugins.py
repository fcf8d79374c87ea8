"""Validated parameters for plug-ins: every registry entry exposes a pydantic `Params` model.

Classes (algorithms) declare `Params` themselves; functions (models, partitions) get one
built from their keyword-only arguments, so a plug-in's signature is its documentation.
"""

from __future__ import annotations

import functools
import inspect
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model, model_validator
from pydantic_core import PydanticCustomError

from fedforge.errors import did_you_mean


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors with a did-you-mean hint."""

    # inf and nan are never meaningful settings (`train.lr=.inf` would train to NaN silently)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = set(cls.model_fields)
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key{hint}; {valid}",
                        {
                            "subloc": str(key),
                            "hint": did_you_mean(str(key), allowed),
                            "valid": f"valid keys here: {', '.join(sorted(allowed))}"
                            if allowed
                            else "none are taken here",
                        },
                    )
        return data


@functools.cache
def plugin_params(entry: Any) -> type[BaseModel]:
    """The Params model of a registry entry (declared, or derived from keyword-only args)."""
    declared = getattr(entry, "Params", None)
    if isinstance(declared, type) and issubclass(declared, BaseModel):
        return declared
    fields: dict[str, Any] = {}
    hints = typing.get_type_hints(entry, include_extras=True)  # resolves postponed annotations
    for param in inspect.signature(entry).parameters.values():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            annotation = hints.get(param.name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, default)
    name = getattr(entry, "__name__", "Plugin") + "Params"
    return create_model(name, __base__=StrictModel, **fields)
