"""What several commands share: loading an image model named by `--checkpoint`."""

from __future__ import annotations

from typing import Any

import torch

from ..checkpoint import load, load_payload
from ..model_zoo import resolve_checkpoint


def load_image_model(path: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The RIDE or ColourRIDE of a checkpoint file or shipped model name, on `device`, with the checkpoint's extra
    dict; ValueError naming the file for any other kind of checkpoint."""
    path = str(resolve_checkpoint(path))
    payload = load_payload(path)  # a ValueError names a foreign, truncated or newer file
    if payload["model"] not in ("RIDE", "ColourRIDE"):
        raise ValueError(f"{path!r} holds a {payload['model']}; this command needs a RIDE or ColourRIDE image model")
    return load(path, map_location=device), payload.get("extra", {})
