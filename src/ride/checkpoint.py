"""One-file checkpoints: the model's constructor config plus its weights, loaded with `weights_only=True`.

Writes are atomic (temporary file in the same folder, then rename), so an interrupted save never leaves a
truncated checkpoint behind. Loading rejects foreign, truncated and newer-format files with a ValueError.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .colour import ColourRIDE
from .colour_lossless import LosslessColourRIDE
from .mcgsm import MCGSM
from .model import RIDE, RIDEConfig
from .patch_models import PatchChainMCGSM
from .patch_ride import PatchRIDE

FORMAT = "ride-checkpoint"
VERSION = 1
_MODELS: dict[str, type[nn.Module]] = {"RIDE": RIDE, "MCGSM": MCGSM, "PatchChainMCGSM": PatchChainMCGSM,
                                       "ColourRIDE": ColourRIDE, "PatchRIDE": PatchRIDE,
                                       "LosslessColourRIDE": LosslessColourRIDE}


def _config_of(model: nn.Module) -> dict[str, Any]:
    if isinstance(model, (RIDE, ColourRIDE, LosslessColourRIDE)):
        return asdict(model.config)
    if isinstance(model, (MCGSM, PatchChainMCGSM, PatchRIDE)):
        return dict(model.config)
    raise TypeError(f"can only save {', '.join(_MODELS)} models, found {type(model).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(model: nn.Module, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
    """Write `model` (any class of `_MODELS`) to `path` atomically.

    `extra` holds plain metadata (str, numbers, lists, dicts of those), e.g. the command that made the model.
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": type(model).__name__,
        "config": _config_of(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; a saved model is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_payload(path: str | os.PathLike) -> dict[str, Any]:
    """The checked checkpoint dictionary (format, version, model, config, state_dict, extra)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise ValueError(f"{str(path)!r} is not a readable ride checkpoint (truncated or foreign file): "
                         f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a ride checkpoint (expected format {FORMAT!r}, found "
                         f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r})")
    if payload.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} has checkpoint version {payload.get('version')!r}; this ride reads "
                         f"version {VERSION}")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{str(path)!r} has no valid state_dict (expected a dict of name -> tensor)")
    if payload.get("model") not in _MODELS:
        raise ValueError(f"{str(path)!r} holds an unknown model {payload.get('model')!r}, expected one of "
                         f"{sorted(_MODELS)}")
    return payload


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model saved at `path` from its own config and weights (in eval mode)."""
    payload = load_payload(path)
    cls = _MODELS[payload["model"]]
    config = payload.get("config")
    try:
        if cls is RIDE:
            RIDEConfig(**config)  # unknown or invalid keys fail here with a clear message
        model = cls(**config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{str(path)!r} has an invalid {cls.__name__} config {config!r}: {err}") from err
    state = payload["state_dict"]
    floating = [v.dtype for v in state.values() if v.is_floating_point()]
    if floating:
        model.to(floating[0])
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{str(path)!r}: weights do not match the {cls.__name__} config: {err}") from err
    return model.to(map_location).eval()
