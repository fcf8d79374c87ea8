"""Validated parameters for plug-ins: every registry entry exposes a pydantic `Params` model.

Classes (algorithms) declare `Params` themselves; functions (models, partitions) get one
built from their keyword-only arguments, so a plug-in's signature is its documentation.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import logging
import os
import sys
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model, model_validator
from pydantic_core import PydanticCustomError

from fedforge.errors import ConfigError, did_you_mean

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "fedforge.plugins"  # `[project.entry-points."fedforge.plugins"] mine = "my_pkg.fl"`


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
    try:  # resolves postponed annotations; a class's are those of its __init__
        hints = typing.get_type_hints(entry.__init__ if isinstance(entry, type) else entry, include_extras=True)
    except (NameError, TypeError):  # an annotation that cannot be resolved: validate as Any
        hints = {}
    for param in inspect.signature(entry).parameters.values():
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            annotation = hints.get(param.name, Any)
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, default)
    name = getattr(entry, "__name__", "Plugin") + "Params"
    return create_model(name, __base__=StrictModel, **fields)


@functools.cache
def load_entry_points() -> None:
    """Import every installed package's `fedforge.plugins` entry point (once per process),
    so what they register is found by name without `--import`."""
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as err:  # a broken third-party plug-in must not stop every run
            log.warning(
                "plug-in entry point %s (%s) failed to import: %s: %s", point.name, point.value, type(err).__name__, err
            )


def import_plugins(modules: Iterable[str]) -> list[str]:
    """Import user modules (names or .py paths) that register plug-ins; returns them as saved
    in a config: module names as given, file paths made absolute, so a resumed run finds them."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # `fedforge run --import mymodule` finds ./mymodule.py, as python does
    saved: list[str] = []
    for module in modules:
        if module.endswith(".py"):
            path = Path(module).expanduser().resolve()
            _import_file(path, module)
            saved.append(str(path))
            continue
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"imports: cannot import '{module}' ({err}); run from the folder holding it, add that folder to "
                "PYTHONPATH, or give the file's path (--import path/to/plugins.py)"
            ) from None
        saved.append(module)
    return saved


def _import_file(path: Path, given: str) -> None:
    if not path.is_file():
        raise ConfigError(f"imports: no file '{given}'")
    name = f"fedforge_user_{path.stem}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
