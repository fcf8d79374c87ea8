"""Local pretrained weights (`model.weights: PATH`): loaded safely, matched by name and shape.

The file is read with `weights_only=True` (no pickled code runs). A file saved from a model
with another head (ImageNet's 1,000 classes) or another input stem (3 channels for grayscale
data) still loads: those tensors keep their fresh initialization and are listed in the log.
Names the model does not have, or a file that covers none of the model, are errors: they
mean the file belongs to another architecture.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from fedforge.errors import ConfigError

log = logging.getLogger(__name__)
WRAPPERS = ("state_dict", "model", "model_state_dict")  # common checkpoint layouts around a state dict
PREFIXES = ("module.", "_orig_mod.")  # DataParallel / torch.compile name prefixes


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a .pt file: plain, or under one of the usual checkpoint keys."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types; all mean "not a safe state dict"
        raise ConfigError(
            f"model.weights: '{path}' is not a loadable state dict ({type(err).__name__}: {err}); save one with "
            "torch.save(model.state_dict(), path)"
        ) from None
    for key in WRAPPERS:
        if isinstance(blob, Mapping) and isinstance(blob.get(key), Mapping):
            blob = blob[key]
    if not isinstance(blob, Mapping) or not all(isinstance(v, torch.Tensor) for v in blob.values()):
        raise ConfigError(f"model.weights: '{path}' holds no mapping of names to tensors (a state dict)")
    return {_strip(str(k)): v for k, v in blob.items()}


def _strip(name: str) -> str:
    for prefix in PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def load_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Copy the file's tensors into `model`; returns the names left at their initialization."""
    saved = read_state_dict(path)
    own = model.state_dict()
    unknown = sorted(set(saved) - set(own))
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise ConfigError(
            f"model.weights: '{path}' has {len(unknown)} tensors this model lacks ({shown}); it was saved from "
            "another architecture (check model.name)"
        )
    fitting = {k: v for k, v in saved.items() if v.shape == own[k].shape}
    if not fitting:
        raise ConfigError(f"model.weights: no tensor of '{path}' has the shape this model expects")
    model.load_state_dict(fitting, strict=False)
    kept = sorted(set(own) - set(fitting))
    if kept:
        log.info("model.weights: %d tensors keep their initialization (shape or name differs): %s", len(kept), kept)
    return kept
