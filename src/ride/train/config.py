"""The trainer's configuration: one frozen dataclass whose defaults are the paper's recipe (design §6).

A config is read from a TOML or JSON file and/or overridden key by key (`replace_checked`); an unknown key or a
value of the wrong type is an error that names the key, never silently ignored. Every checkpoint stores the
config as a plain dict (`asdict`), and `TrainConfig.from_dict` rebuilds it.
"""

from __future__ import annotations

import json
import os
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: JSON configs only
    tomllib = None

DATA_SOURCES = ("bsds300", "photos", "wikipedia_photos", "deadleaves", "images", "brodatz")
PHOTO_SOURCES = ("photos", "wikipedia_photos")  # the sources that take the aerials' training images too
MODES = ("images", "patches63")
OPTIMIZERS = ("sgd", "adam")
MODELS = ("ride", "colour", "colour_lossless")
COLOUR_TRANSFORMS = ("rgb", "grb", "ycocg_r", "rct")  # ride.colour_lossless.TRANSFORMS


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; defaults reproduce the paper's curriculum for a 1-layer RIDE."""

    # --- data
    # bsds300 (train 180 / val 20) | photos (BSDS300 train + the Wikimedia photographs' 39 training images, and the
    # aerials' 30 with `aerials`; validated on BSDS300 val and the Wikimedia val images, each set's rate weighted
    # equally) | wikipedia_photos (never-JPEG only: the Wikimedia training images, and the aerials' with `aerials`;
    # validated on the Wikimedia val images) | deadleaves | images (folder/glob) | brodatz (one plate)
    data: str = "bsds300"
    aerials: bool = False  # data="photos" or "wikipedia_photos": add the USC-SIPI aerials' training images
    data_root: str | None = None  # folder holding bsds300/ and brodatz_usc_sipi/ (default: $RIDE_DATA)
    images: str | None = None  # folder or glob for data="images"
    plate: str | None = None  # USC-SIPI plate for data="brodatz", e.g. "1.1.01"
    colour: bool = False  # read images as RGB (for model="colour" or "colour_lossless")
    limit: int = 0  # use at most this many training images (0: all)
    val_fraction: float = 0.1  # held-out share of the training images where the data set has no validation split
    data_size: int = 256  # dead-leaves image size
    mode: str = "images"  # images: whole-image model trained on patches | patches63: the 63-dim patch model
    # --- model (ignored when `init` names a checkpoint to start from)
    # ride | colour (ColourRIDE, real-valued YCbCr) | colour_lossless (LosslessColourRIDE: exact discrete RGB)
    model: str = "ride"
    colour_transform: str = "rgb"  # model="colour_lossless": the coded channels (rgb, grb, ycocg_r, rct)
    num_hiddens: int = 64
    num_layers: int = 1
    num_components: int = 32
    num_scales: int = 4
    num_features: int = 32
    nb_size: int = 5
    init: str | None = None  # checkpoint to start from: a file or a shipped model's name (`ride models`)
    add_layer: bool = False  # put a new spatial LSTM layer on top of `init` (design §6 "add layer")
    # widen every spatial LSTM layer of `init` to this many units, keeping its density exactly (`ride.growth.widen`:
    # the new units' outgoing weights start at zero); applied before add_layer; 0: off
    widen_to: int = 0
    # the spatial LSTM's cell clip (RIDEConfig.cell_clip, design §4; grey and lossless colour models): None keeps
    # init's, or the default 1e4 for a fresh model; a small clip (photo_grey, photo_colour: 10) keeps the cells
    # bounded on images far larger than the training patches
    cell_clip: float | None = None
    init_mcgsm: bool = True  # start the MCGSM at the least-squares predictor of the initial hidden states
    # the first this many stages update only the top spatial LSTM layer and the MCGSM; the layers below stay as they
    # are (the original's --train_top_layer for those stages, e.g. to train a new layer before the whole model)
    top_layer_only_stages: int = 0
    precondition_pairs: int = 500_000
    # --- schedule: one stage per patch size, `epochs_per_stage` epochs each
    patch_sizes: tuple[int, ...] = (8, 10, 12, 14, 16, 18, 20, 22)
    epochs_per_stage: int = 1
    learning_rates: tuple[float, ...] = (1.0, 0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005)  # per stage (or one)
    optimizer: str = "sgd"
    momentum: float = 0.9
    batch_size: int = 50  # patches per step (the global batch under torchrun)
    grad_clip: float = 0.0  # clip the gradient norm to this value (0: off)
    flip: bool = True  # random horizontal flips of training patches
    max_steps_per_epoch: int = 0  # 0: whole epochs
    # --- L-BFGS fine-tuning of the MCGSM on frozen hidden states after every stage (0 iterations: off)
    finetune_pixels: int = 1_000_000
    finetune_val_pixels: int = 200_000
    finetune_iter: int = 500
    finetune_tile: int = 64  # hidden states are computed on tiles of this size (the evaluation's)
    # --- validation on held-out training images (tiles of `val_tile`) after every stage
    val_tile: int = 64
    val_max_tiles: int = 0  # 0: every tile of the validation images
    val_patches: int = 50_000  # patches63 mode: validation patches
    rollback: bool = True  # restore the best model when a stage made validation worse
    patience: int = 0  # stop after this many stages without improvement (0: never)
    # a stage counts as an improvement for `patience` only when it raises the best validation rate by more than this
    # [bit/dim]; a smaller gain is still kept as the best model (it is better), but it no longer extends the run
    min_improvement: float = 0.0
    # --- patches63 mode
    train_patches: int = 1_000_000
    # --- run
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch threads (0: torch's choice)
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 0  # also checkpoint every N steps (0: off; tests use it)
    log_every: int = 20  # steps between CSV rows
    max_seconds: float = 0.0  # stop (checkpointed, resumable) after this much training time (0: no limit)
    tensorboard: bool = True  # write TensorBoard event files when the tensorboard package is installed

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"config: {message}")

        need(self.data in DATA_SOURCES, f"data must be one of {DATA_SOURCES}, found {self.data!r}")
        need(self.mode in MODES, f"mode must be one of {MODES}, found {self.mode!r}")
        need(self.model in MODELS, f"model must be one of {MODELS}, found {self.model!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, found {self.optimizer!r}")
        need(self.data != "images" or bool(self.images), "data='images' needs images (a folder or glob)")
        need(self.data != "brodatz" or bool(self.plate), "data='brodatz' needs plate (e.g. '1.1.01')")
        need(not self.aerials or self.data in PHOTO_SOURCES, "aerials=true needs data='photos' or 'wikipedia_photos'")
        need(len(self.patch_sizes) > 0, "patch_sizes is empty")
        need(all(p >= 2 for p in self.patch_sizes), f"patch sizes must be >= 2, found {self.patch_sizes}")
        need(len(self.learning_rates) in (1, len(self.patch_sizes)),
             f"learning_rates must hold one value or one per stage ({len(self.patch_sizes)}), found "
             f"{len(self.learning_rates)}")
        need(all(lr > 0 for lr in self.learning_rates), f"learning rates must be > 0, found {self.learning_rates}")
        need(self.batch_size >= 1 and self.epochs_per_stage >= 1, "batch_size and epochs_per_stage must be >= 1")
        need(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), found {self.val_fraction}")
        need(not self.add_layer or self.init is not None, "add_layer needs init (the model to add a layer to)")
        need(self.widen_to >= 0, f"widen_to must be >= 0, found {self.widen_to}")
        need(not self.widen_to or self.init is not None, "widen_to needs init (the model to widen)")
        need(self.cell_clip is None or (self.cell_clip > 0 and self.model in ("ride", "colour_lossless")),
             f"cell_clip must be > 0 and is for RIDE and lossless colour models, found {self.cell_clip!r} with "
             f"model={self.model!r}")
        need(self.mode != "patches63" or self.data == "bsds300", "mode='patches63' needs data='bsds300'")
        need(self.model == "ride" or self.colour, f"model={self.model!r} needs colour=true (RGB images)")
        need(self.model != "colour" or (self.finetune_iter == 0 and not self.init_mcgsm),
             "model='colour' has two MCGSMs; L-BFGS fine-tuning and the least-squares MCGSM start are not "
             "implemented for it: set finetune_iter = 0 and init_mcgsm = false")
        need(self.model != "colour_lossless" or (self.finetune_iter == 0 and not self.init_mcgsm),
             "model='colour_lossless' has three MCGSM heads; L-BFGS fine-tuning and the least-squares MCGSM start "
             "are not implemented for it: set finetune_iter = 0 and init_mcgsm = false")
        need(self.model != "colour_lossless" or not self.add_layer,
             "model='colour_lossless': add_layer is not implemented for it")
        need(self.colour_transform in COLOUR_TRANSFORMS,
             f"colour_transform must be one of {COLOUR_TRANSFORMS}, found {self.colour_transform!r}")
        need(0 <= self.top_layer_only_stages <= len(self.patch_sizes),
             f"top_layer_only_stages must be in 0..{len(self.patch_sizes)} (the number of stages), found "
             f"{self.top_layer_only_stages}")
        need(self.min_improvement >= 0, f"min_improvement must be >= 0, found {self.min_improvement}")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, found {self.device!r}")

    def learning_rate(self, stage: int) -> float:
        return self.learning_rates[stage] if len(self.learning_rates) > 1 else self.learning_rates[0]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from plain values (lists for tuples); unknown keys and wrong types raise ValueError."""
        return replace_checked(cls(), values)


def _coerce(name: str, hint: Any, value: Any) -> Any:
    """`value` converted to the field type `hint`, or ValueError naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None and type(None) in args:
            return None
        return _coerce(name, next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config: {name} must be a list, found {value!r}")
        return tuple(_coerce(name, args[0], v) for v in value)
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ValueError(f"config: {name} must be true or false, found {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"config: {name} must be a number, found {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ValueError(f"config: {name} must be {'an integer' if hint is int else 'a number'}, found "
                             f"{value!r}") from None
        if hint is int and isinstance(value, float) and number != value:
            raise ValueError(f"config: {name} must be an integer, found {value!r}")
        return number
    if hint is str:
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"config: {name} must be a string, found {value!r}")
        return str(value)
    return value


def replace_checked(config: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """A copy of `config` with `values` (keys with '-' or '_') applied; unknown keys raise ValueError."""
    hints = typing.get_type_hints(TrainConfig)
    known = {f.name for f in fields(TrainConfig)}
    current = {f.name: getattr(config, f.name) for f in fields(TrainConfig)}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            close = [k for k in sorted(known) if k.split("_")[0] == name.split("_")[0]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ValueError(f"config: unknown key {key!r}{hint}")
        current[name] = _coerce(name, hints[name], value)
    return TrainConfig(**current)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The key/value table of a TOML (.toml) or JSON (.json) config file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix != ".json" and tomllib is None:
        raise ValueError(f"config file {str(path)!r}: reading TOML needs Python 3.11+; use a .json config")
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, TypeError) as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise ValueError(f"config file {str(path)!r} is not valid {path.suffix[1:].upper() or 'TOML'}: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a table of keys, found {type(values).__name__}")
    return values
