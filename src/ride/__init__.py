"""ride: the recurrent image density estimator (Theis & Bethge, NIPS 2015) in PyTorch.

Densities are on the [0,1) pixel scale, in nats unless a name says otherwise (`..._bits`, `bits_per_pixel`).
"""

from .checkpoint import load, save
from .colour import ColourRIDE, ColourRIDEConfig, bits_per_dim
from .colour_lossless import LosslessColourConfig, LosslessColourRIDE
from .deadleaves import dead_leaves, dead_leaves_images
from .mcgsm import MCGSM
from .model import RIDE, RIDEConfig
from .model_zoo import pretrained, pretrained_models
from .neighbourhood import Neighbourhood, causal_mask, extract_pairs
from .patch_models import PatchChainMCGSM
from .preconditioner import Preconditioner
from .slstm import SpatialLSTM
from .units import bits_per_pixel, dequantize

__all__ = [
    "MCGSM", "PatchChainMCGSM", "RIDE", "RIDEConfig", "Neighbourhood", "Preconditioner", "SpatialLSTM",
    "bits_per_pixel", "causal_mask", "dead_leaves", "dead_leaves_images", "dequantize", "extract_pairs", "load", "save",
    "ColourRIDE", "ColourRIDEConfig", "bits_per_dim", "pretrained", "pretrained_models", "LosslessColourConfig",
    "LosslessColourRIDE",
]
__version__ = "0.1.0"
