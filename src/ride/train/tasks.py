"""What the trainer trains on: whole-image models on patches of images, or the 63-dim patch model (design §6, §9.2).

A task owns its data and knows, for a model, the objective of a batch (mean NLL in nats per dimension, a
dimension being one channel of one predicted pixel), the frozen hidden-state pairs for the MCGSM's L-BFGS
fine-tuning, and the validation figure. All randomness comes from generators the trainer seeds per stage, epoch
and step (`step_generator`), so that a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .. import protocols
from ..data import BSDS300, Brodatz, BSDS300Patches, DeadLeaves, ImageFolder, USCSIPIAerials, WikipediaPhotos
from ..marginal import MARGINAL_KEY, marginal_histogram
from ..neighbourhood import extract_pairs
from ..patch_ride import PatchRIDE
from ..units import dequantize
from .config import PHOTO_SOURCES, TrainConfig

LN2 = math.log(2)
Reduce = Callable[[Tensor], Tensor]


def step_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded from a tuple of non-negative ints (e.g. seed, purpose, stage, epoch, step)."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


def _all(source) -> list[Tensor]:
    return [source[k] for k in range(len(source))]


def load_images(config: TrainConfig) -> tuple[list[Tensor], dict[str, list[Tensor]]]:
    """(training images, validation sets by name), uint8 [C, H, W] each, for an images-mode config.

    Most sources have one validation set; data="photos" has two (BSDS300 val and the Wikimedia val images), which
    `ImageTask.validate` weighs equally; data="wikipedia_photos" validates on the Wikimedia val images alone.
    """
    grey = not config.colour
    if config.data == "bsds300":
        train = _all(BSDS300(config.data_root, "train", grey=grey))
        val = {"bsds300": _all(BSDS300(config.data_root, "val", grey=grey))}
    elif config.data in PHOTO_SOURCES:
        # "wikipedia_photos" leaves out BSDS300, whose pixels (and 4:2:0 chroma) went through JPEG
        with_bsds = config.data == "photos"
        train = _all(BSDS300(config.data_root, "train", grey=grey)) if with_bsds else []
        train += _all(WikipediaPhotos(config.data_root, "train", grey=grey))
        if config.aerials:
            train += _all(USCSIPIAerials(config.data_root, "train", grey=grey))
        val = {"bsds300": _all(BSDS300(config.data_root, "val", grey=grey))} if with_bsds else {}
        val["wikipedia_photos"] = _all(WikipediaPhotos(config.data_root, "val", grey=grey))
    else:
        if config.data == "deadleaves":
            source = DeadLeaves("train", size=config.data_size)
        elif config.data == "brodatz":
            source = Brodatz(config.data_root, plates=[config.plate])
        else:
            source = ImageFolder(config.images, grey=grey)
        images = _all(source)
        if len(images) < 2:
            raise ValueError(f"need at least 2 images (training and validation), found {len(images)}")
        n_val = max(1, round(len(images) * config.val_fraction))
        train, val = images[:-n_val], {config.data: images[-n_val:]}
    if config.limit:
        train = train[: config.limit]
    return train, val


def _hidden_pairs(model: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Top hidden states [N, D] and whitened outputs [N, C] of every predicted pixel of images [B, C, H, W]."""
    inputs, outputs = extract_pairs(images, model.neighbourhood)
    x, y = model.preconditioner(inputs, outputs)
    hidden = model.hidden_states(x)
    return hidden.reshape(-1, hidden.shape[-1]), y.reshape(-1, y.shape[-1])


class ImageTask:
    """A whole-image model (RIDE) trained on non-overlapping square patches of the training images."""

    def __init__(self, config: TrainConfig, train: list[Tensor], val_sets: dict[str, list[Tensor]]) -> None:
        self.config, self.train, self.val_sets = config, train, val_sets
        self.val = [img for images in val_sets.values() for img in images]  # all validation images
        largest = max(config.patch_sizes)
        usable = sum(1 for img in train if img.shape[1] >= largest and img.shape[2] >= largest)
        if not train or usable == 0:
            sizes = sorted({tuple(img.shape[1:]) for img in train})[:5]
            raise ValueError(f"data set too small for the patch size: no training image holds a {largest}x{largest} "
                             f"patch (image sizes {sizes})")
        self._epoch_key: tuple[int, int] | None = None
        self._patches: Tensor | None = None

    def check_model(self, model: nn.Module) -> None:
        nb = model.neighbourhood
        smallest = min(self.config.patch_sizes)
        if smallest < nb.rows or smallest < nb.cols:
            raise ValueError(f"patch size {smallest} is smaller than the {nb.rows}x{nb.cols} neighbourhood: no pixel "
                             "would be predicted")
        if min(self.config.finetune_tile, self.config.val_tile) < nb.cols:
            raise ValueError("finetune_tile and val_tile must hold the neighbourhood")

    # ---------------------------------------------------------------- training batches

    def epoch_patches(self, stage: int, epoch: int) -> Tensor:
        """All non-overlapping PxP patches of the training images (one random grid offset per image), shuffled:
        uint8 [N, C, P, P]. Cached for the current (stage, epoch)."""
        if self._epoch_key == (stage, epoch) and self._patches is not None:
            return self._patches
        size = self.config.patch_sizes[stage]
        gen = step_generator(self.config.seed, 1, stage, epoch)
        pieces = []
        for img in self.train:
            _, h, w = img.shape
            if h < size or w < size:
                continue
            dy = int(torch.randint(h % size + 1, (), generator=gen))
            dx = int(torch.randint(w % size + 1, (), generator=gen))
            pieces.append(protocols.tiles(img[:, dy:, dx:], size))
        patches = torch.cat(pieces)
        patches = patches[torch.randperm(len(patches), generator=gen)]
        self._epoch_key, self._patches = (stage, epoch), patches
        return patches

    def num_steps(self, stage: int, epoch: int) -> int:
        steps = len(self.epoch_patches(stage, epoch)) // self.config.batch_size
        if steps == 0:
            raise ValueError(f"data set too small for the patch size: {len(self.epoch_patches(stage, epoch))} "
                             f"patches of {self.config.patch_sizes[stage]}x{self.config.patch_sizes[stage]} are fewer "
                             f"than one batch ({self.config.batch_size})")
        if self.config.max_steps_per_epoch:
            steps = min(steps, self.config.max_steps_per_epoch)
        return steps

    def batch(self, stage: int, epoch: int, step: int) -> Tensor:
        """The step's global batch: dequantised patches [batch_size, C, P, P] on [0,1), randomly flipped."""
        bs = self.config.batch_size
        values = self.epoch_patches(stage, epoch)[step * bs : (step + 1) * bs]
        gen = step_generator(self.config.seed, 2, stage, epoch, step)
        batch = dequantize(values, gen)
        if self.config.flip:
            flip = torch.rand(len(batch), generator=gen) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        return batch

    def model_extra(self) -> dict:
        """Extra entries of the saved model's checkpoint: the 8-bit marginal of the training images (the
        samplers' boundary, see `ride.marginal`)."""
        histograms = [marginal_histogram(img) for img in self.train]  # one per image: the images differ in size
        counts = torch.tensor([h["counts"] for h in histograms]).sum(0).tolist()
        return {MARGINAL_KEY: {**histograms[0], "counts": counts}}

    def nll(self, model: nn.Module, batch: Tensor) -> Tensor:
        """Mean NLL in nats per dimension (channel of a predicted pixel) of a batch [B, C, P, P]."""
        return -model.log_prob_pixels(batch).mean() / model.config.num_channels

    # ---------------------------------------------------------------- preconditioner, fine-tuning, validation

    def fit_preconditioner(self, model: nn.Module, generator: torch.Generator) -> None:
        images = [dequantize(img, generator) for img in self.train]
        model.fit_preconditioner(images, self.config.precondition_pairs, generator)

    @torch.no_grad()
    def hidden_pairs(self, model: nn.Module, num_pixels: int, generator: torch.Generator,
                     split: str = "train") -> tuple[Tensor, Tensor]:
        """Up to `num_pixels` (hidden state, whitened pixel) pairs from random finetune_tile tiles of a split."""
        size = self.config.finetune_tile
        images = self.train if split == "train" else self.val
        tiles = torch.cat([protocols.tiles(img, size) for img in images])
        if len(tiles) == 0:
            raise ValueError(f"no {size}x{size} tile fits in the {split} images")
        nb = model.neighbourhood
        per_tile = (size - nb.rows + 1) * (size - nb.cols + 1)
        count = min(len(tiles), math.ceil(num_pixels / per_tile))
        tiles = tiles[torch.randperm(len(tiles), generator=generator)[:count]]
        device = next(model.parameters()).device
        hs, ys = [], []
        for chunk in tiles.split(64):
            h, y = _hidden_pairs(model, dequantize(chunk, generator).to(device))
            hs.append(h)
            ys.append(y)
        h, y = torch.cat(hs), torch.cat(ys)
        if len(h) > num_pixels:
            keep = torch.randperm(len(h), generator=generator)[:num_pixels].to(h.device)
            h, y = h[keep], y[keep]
        return h, y

    @torch.no_grad()
    def validate(self, model: nn.Module, shard: tuple[int, int] = (0, 1), reduce: Reduce | None = None) -> dict:
        """The tiles protocol (design §9.1) on the validation images: {"val_bits_per_dim", "val_stderr", ...}.

        With several validation sets, "val_bits_per_dim" is the mean of the sets' rates (each set weighs the same,
        however many pixels it has) and "val_<name>_bits_per_dim" gives each set's own rate.
        """
        dims = model.config.num_channels
        rates, stderrs, pixels, out = [], [], 0, {}
        for name, images in self.val_sets.items():
            result = protocols.evaluate_tiles(model, self._capped(images), self.config.val_tile,
                                              seed=self.config.seed + 12345, shard=shard, reduce=reduce)
            rates.append(result.bits_per_pixel / dims)
            stderrs.append(result.stderr / dims)
            pixels += result.num_pixels
            out[f"val_{name}_bits_per_dim"] = rates[-1]
        return {"val_bits_per_dim": sum(rates) / len(rates),
                "val_stderr": math.sqrt(sum(e * e for e in stderrs)) / len(stderrs), "val_pixels": pixels,
                **(out if len(rates) > 1 else {})}

    def _capped(self, images: list[Tensor]) -> list[Tensor]:
        """The first images of a validation set that hold `val_max_tiles` tiles (all of them when 0)."""
        if not self.config.val_max_tiles:
            return images
        size = self.config.val_tile
        keep, total = [], 0
        for img in images:
            if total >= self.config.val_max_tiles:
                break
            keep.append(img)
            total += (img.shape[1] // size) * (img.shape[2] // size)
        return keep


class PatchTask:
    """The 63-dim benchmark: a `PatchRIDE` trained on the cached BSDS300 8x8 patches (design §9.2)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.train = BSDS300Patches(config.data_root, "train", num_patches=config.train_patches).patches
        self.val = BSDS300Patches(config.data_root, "val", num_patches=config.val_patches).patches
        if len(self.train) < config.batch_size:
            raise ValueError(f"data set too small: {len(self.train)} training patches, batch {config.batch_size}")

    def check_model(self, model: nn.Module) -> None:
        if not isinstance(model, PatchRIDE):
            raise ValueError(f"mode patches63 trains a PatchRIDE, found {type(model).__name__}")

    def num_steps(self, stage: int, epoch: int) -> int:
        steps = len(self.train) // self.config.batch_size
        return min(steps, self.config.max_steps_per_epoch) if self.config.max_steps_per_epoch else steps

    def _order(self, stage: int, epoch: int) -> Tensor:
        if getattr(self, "_order_key", None) != (stage, epoch):
            self._order_key = (stage, epoch)
            self._perm = torch.randperm(len(self.train), generator=step_generator(self.config.seed, 1, stage, epoch))
        return self._perm

    def batch(self, stage: int, epoch: int, step: int) -> Tensor:
        """Centred patches z [batch_size, 63] (optionally mirrored left-right before centring)."""
        bs = self.config.batch_size
        x = self.train[self._order(stage, epoch)[step * bs : (step + 1) * bs]]
        if self.config.flip:
            gen = step_generator(self.config.seed, 2, stage, epoch, step)
            flip = torch.rand(len(x), generator=gen) < 0.5
            x = torch.where(flip[:, None], x.view(-1, 8, 8).flip(-1).reshape(-1, 64), x)
        return protocols.patches_to_63(x)[0]

    def model_extra(self) -> dict:
        """The DC model (patch means, 10 Gaussians, fitted on the training patches) that `ride eval --protocol
        patches64` reads from the checkpoint."""
        if getattr(self, "_dc_model", None) is None:
            self._dc_model = protocols.DCModel.fit(protocols.patches_to_63(self.train.double())[1], num_components=10)
        return {protocols.DC_MODEL_KEY: self._dc_model.to_dict()}

    def nll(self, model: nn.Module, batch: Tensor) -> Tensor:
        """Mean NLL in nats per dimension of z [B, 63]."""
        return -model.log_prob(batch).mean() / model.dim

    def fit_preconditioner(self, model: nn.Module, generator: torch.Generator) -> None:
        n = min(len(self.train), math.ceil(self.config.precondition_pairs / model.dim))
        z = protocols.patches_to_63(self.train[torch.randperm(len(self.train), generator=generator)[:n]])[0]
        model.ride.preconditioner.fit(*model.pairs(z))

    @torch.no_grad()
    def hidden_pairs(self, model: nn.Module, num_pixels: int, generator: torch.Generator,
                     split: str = "train") -> tuple[Tensor, Tensor]:
        data = self.train if split == "train" else self.val
        n = min(len(data), math.ceil(num_pixels / model.dim))
        z = protocols.patches_to_63(data[torch.randperm(len(data), generator=generator)[:n]])[0]
        device = next(model.parameters()).device
        pairs = [model.hidden_pairs(chunk.to(device)) for chunk in z.split(4096)]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])

    @torch.no_grad()
    def validate(self, model: nn.Module, shard: tuple[int, int] = (0, 1), reduce: Reduce | None = None) -> dict:
        """Mean log-likelihood of the validation patches: nats per patch and bit per dimension."""
        device = next(model.parameters()).device
        z = protocols.patches_to_63(self.val[shard[0] :: shard[1]])[0]
        lp = torch.cat([model.log_prob(chunk.to(device)).double().cpu() for chunk in z.split(4096)])
        sums = torch.stack([torch.tensor(float(len(lp)), dtype=torch.float64), lp.sum(), lp.square().sum()])
        if reduce is not None:
            sums = reduce(sums)
        n, total, total_sq = (float(v) for v in sums)
        mean = total / n
        stderr = math.sqrt(max(total_sq / n - mean**2, 0.0) / max(n - 1, 1))
        return {"val_bits_per_dim": mean / model.dim / LN2, "val_stderr": stderr / model.dim / LN2,
                "val_nats_per_patch": mean, "val_patches": int(n)}


def make_task(config: TrainConfig) -> ImageTask | PatchTask:
    if config.mode == "patches63":
        return PatchTask(config)
    return ImageTask(config, *load_images(config))
