"""The paper's evaluation protocols (design §9) as pure functions over tensors, with units in every name.

Tiles ("infinite-dimensional", design §9.1): each 8-bit image [C, H, W] is dequantised, x = (v + u) / 256, with
noise for the whole image from a CPU torch.Generator seeded with `image_seed(seed, image)`, a seed drawn from the
run seed and the image itself (its shape and pixels), not from its position in the iterable; results are thus
reproducible, and an image gets the same noise, hence the same rate, alone or in any list, under any batching,
limit on the number of images or split of the work across processes. The image is then cut into
non-overlapping tiles (remainder dropped), each evaluated independently. Only predicted pixels count (with an
ensemble, only the pixels predicted under every transform, design §7). The rate is the mean of log2 p over all
counted pixels, a continuous density on the [0,1) scale, in bit/px; higher is better. Its standard error is taken
over tiles (of the per-tile mean rate).

Patches (design §9.2): a dequantised 8x8 patch x [64] (raster order) is mapped to its mean m (the DC) and the 63
centred values z_i = x_i - m, i = 1..63 (the 64th centred value is -sum z_i, so it carries no information).
The map x -> (z, m) is linear with inverse x_i = z_i + m (i < 64), x_64 = m - sum_i z_i, whose matrix
[[I_63, 1], [-1^T, 1]] has determinant 1 + 63 = 64 (Schur complement 1 - (-1^T) I^-1 1). Hence
|det d(z, m)/dx| = 1/64 and, with a 63-dim model and an independent 1-D DC model,

    ln p(x) = ln p63(z) + ln p_DC(m) - ln 64                      (nats per patch)
    rate    = (L63 + L_DC - ln 64) / (64 ln 2)                    (bit/px, L = mean log-likelihood in nats)

The DC model is a 1-D mixture of Gaussians fitted by EM (`DCModel`). Ensembles of patch models average over the 8
dihedral transforms of the 8x8 patch; each permutes the centred pixels, a linear map of z with |det| = 1, and
leaves the mean unchanged.

Distributed evaluation: every function takes `shard=(rank, world_size)` (each process handles the tiles or
patches whose global index is congruent to its rank) and `reduce`, a function that sums a float64 tensor across
processes (e.g. an all-reduce); the library itself never touches torch.distributed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .ensemble import TRANSFORMS, common_pixel_mask, ensemble_log_prob, predicted_mask
from .units import dequantize

LN2 = math.log(2.0)
LN64 = math.log(64.0)
PATCH_SIZE = 8
DC_MODEL_KEY = "dc_model"  # where a patch checkpoint's `extra` holds `DCModel.to_dict()`

Reduce = Callable[[Tensor], Tensor]
Progress = Callable[[int], object]


# ---------------------------------------------------------------------------------------------- units

def nats_to_bits(nats: float | Tensor) -> float | Tensor:
    """nats -> bits (divide by ln 2)."""
    return nats / LN2


def bits_to_nats(bits: float | Tensor) -> float | Tensor:
    """bits -> nats (multiply by ln 2)."""
    return bits * LN2


def bits_per_pixel_from_nats(total_nats: float, num_pixels: int) -> float:
    """Log-likelihood rate in bit/px from a sum of ln p (nats) over `num_pixels` pixels."""
    if num_pixels <= 0:
        raise ValueError(f"num_pixels must be positive, found {num_pixels}")
    return float(total_nats) / num_pixels / LN2


def discrete_bound_bits_per_pixel(rate_bits_per_pixel: float) -> float:
    """Upper bound on the code length of the 8-bit data, -log2 P(v) <= 8 - rate (bit/px; design §1)."""
    return 8.0 - rate_bits_per_pixel


def standard_error(values: Tensor) -> float:
    """Standard error of the mean of values [N]: std (N-1 denominator) / sqrt(N); NaN for N < 2."""
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = values.numel()
    return float(values.std() / math.sqrt(n)) if n > 1 else math.nan


def _stderr_from_sums(count: float, total: float, total_sq: float) -> float:
    """Standard error of the mean from the count, sum and sum of squares of the values."""
    if count < 2:
        return math.nan
    mean = total / count
    var = max(total_sq - count * mean * mean, 0.0) / (count - 1)
    return math.sqrt(var / count)


def image_seed(seed: int, image: Tensor) -> int:
    """The dequantisation seed of an 8-bit image [C, H, W] under the run seed `seed`: numpy SeedSequence([seed, d])
    with d the first 16 bytes (little-endian) of SHA-256 over the shape (int64) and the uint8 pixels (C, H, W
    order). It depends on the image alone: the same image gets the same noise wherever it stands in a list."""
    digest = hashlib.sha256(np.asarray(tuple(image.shape), dtype=np.int64).tobytes())
    digest.update(image.detach().to("cpu", torch.uint8).contiguous().numpy().tobytes())
    content = int.from_bytes(digest.digest()[:16], "little")
    return int(np.random.SeedSequence([int(seed), content]).generate_state(1, dtype=np.uint64)[0])


# ---------------------------------------------------------------------------------------------- tiles (§9.1)

def tiles(image: Tensor, size: int = 64) -> Tensor:
    """Non-overlapping size x size tiles of image [C, H, W] in raster order, remainder dropped: [N, C, size, size].

    N = (H // size) * (W // size), possibly 0.
    """
    if not isinstance(image, Tensor) or image.dim() != 3:
        found = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a tensor [C, H, W], found {found}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"tile size must be a positive integer, found {size!r}")
    c, h, w = image.shape
    if h < size or w < size:
        return image.new_empty(0, c, size, size)
    t = image[:, : h // size * size, : w // size * size]
    t = t.unfold(1, size, size).unfold(2, size, size)  # (C, H/size, W/size, size, size)
    return t.permute(1, 2, 0, 3, 4).reshape(-1, c, size, size)


@dataclass(frozen=True)
class TileResult:
    """Result of the tile protocol; rates in bit/px on the [0,1) scale, higher is better."""

    bits_per_pixel: float  # mean over all counted pixels of log2 p(x_ij | x_<ij)
    stderr: float  # standard error over tiles of the per-tile mean rate (bit/px)
    num_pixels: int  # counted (predicted) pixels
    num_tiles: int
    pixels_per_tile: int
    ensemble: bool

    @property
    def discrete_bound_bits_per_pixel(self) -> float:
        """8 - rate: an upper bound on the 8-bit code length in bit/px."""
        return discrete_bound_bits_per_pixel(self.bits_per_pixel)

    @property
    def nats_per_pixel(self) -> float:
        return self.bits_per_pixel * LN2


def counted_pixels(model: torch.nn.Module, height: int, width: int, ensemble: bool = False) -> Tensor:
    """The pixels the tile protocol counts in an H x W tile: bool [H, W]."""
    if ensemble:
        return common_pixel_mask(model.margin, height, width, TRANSFORMS)
    return predicted_mask(model.margin, height, width)


def _tile_batches(images: Iterable[Tensor], tile_size: int, seed: int, batch_size: int,
                  shard: tuple[int, int], discrete: bool = False) -> Iterable[tuple[Tensor, Tensor]]:
    """Dequantised tiles [b, C, size, size] of this shard in batches of at most batch_size, with the index of the
    image each tile comes from (int64 [b]); with `discrete`, the uint8 tiles themselves."""
    rank, world = shard
    pending: list[Tensor] = []
    owners: list[Tensor] = []
    num_pending = 0
    global_index = 0
    any_tile = False
    for index, image in enumerate(images):
        _check_uint8_image(image, index)
        t = tiles(image, tile_size)
        if t.shape[0] == 0:
            continue
        any_tile = True
        # noise for the whole image, so it does not depend on the tiling, the batching or the shard
        ids = torch.arange(global_index, global_index + t.shape[0])
        global_index += t.shape[0]
        mine = (ids % world) == rank
        if not bool(mine.any()):
            continue
        x = t if discrete else tiles(dequantize(image, torch.Generator().manual_seed(image_seed(seed, image))),
                                     tile_size)
        pending.append(x[mine])
        owners.append(torch.full((int(mine.sum()),), index, dtype=torch.int64))
        num_pending += int(mine.sum())
        while num_pending >= batch_size:
            cat, own = torch.cat(pending), torch.cat(owners)
            yield cat[:batch_size], own[:batch_size]
            pending, owners, num_pending = [cat[batch_size:]], [own[batch_size:]], cat.shape[0] - batch_size
    if not any_tile:
        raise ValueError(f"no {tile_size}x{tile_size} tile in the images: every image is smaller than a tile, "
                         "or there is no image")
    if num_pending:
        yield torch.cat(pending), torch.cat(owners)


def _check_uint8_image(image: object, index: int) -> None:
    if not isinstance(image, Tensor) or image.dim() != 3 or image.dtype != torch.uint8:
        found = (f"{image.dtype} tensor of shape {tuple(image.shape)}" if isinstance(image, Tensor)
                 else type(image).__name__)
        raise ValueError(f"image {index} must be a uint8 tensor [C, H, W] of 8-bit values, found {found}")


@torch.no_grad()
def tile_sums(model: torch.nn.Module, images: Iterable[Tensor], tile_size: int = 64, ensemble: bool = False,
              seed: int = 0, batch_size: int = 32, device: str | torch.device | None = None,
              progress: Progress | None = None, shard: tuple[int, int] = (0, 1),
              per_image: Tensor | None = None, discrete: bool = False) -> Tensor:
    """Sums over this shard's tiles, float64 [5]: (num_tiles, num_pixels, sum ln p (nats), sum of per-tile
    rates (bit/px), sum of squared per-tile rates). See `evaluate_tiles`.

    discrete: ln P of the 8-bit values themselves (`model.log_prob_discrete_pixels` of the uint8 tiles, summed over
    a pixel's channels: an exact code length, no dequantisation noise, no seed); not with `ensemble`.

    `per_image`, a float64 tensor [num_images, 3], receives in place each image's (num_tiles, num_pixels,
    sum ln p in nats) over this shard's tiles (rows of images without tiles stay 0); sum it over shards like the
    result. Its rows add up to the result's first three entries.
    """
    _check_shard(shard)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, found {batch_size!r}")
    if device is None:
        device = _model_device(model)
    mask = counted_pixels(model, tile_size, tile_size, ensemble)
    if not bool(mask.any()):
        raise ValueError(f"a {tile_size}x{tile_size} tile has no pixel the model predicts "
                         f"(margin {tuple(model.margin)}{', under every transform' if ensemble else ''})")
    pixels_per_tile = int(mask.sum())
    top, left, right = model.margin
    if discrete and ensemble:
        raise ValueError("discrete code lengths are not available for the ensemble (a mixture of 8 models)")
    sums = torch.zeros(5, dtype=torch.float64)
    for batch, owner in _tile_batches(images, tile_size, seed, batch_size, shard, discrete):
        batch = batch.to(device)
        if discrete:
            per_tile_nats = model.log_prob_discrete_pixels(batch).double().flatten(1).sum(1)
        elif ensemble:
            per_tile_nats = ensemble_log_prob(model, batch, TRANSFORMS)
        else:
            per_tile_nats = model.log_prob_pixels(batch).double().flatten(1).sum(1)
        per_tile_nats = per_tile_nats.double().cpu()
        rates = per_tile_nats / pixels_per_tile / LN2
        sums += torch.stack([torch.tensor(float(len(rates)), dtype=torch.float64),
                             torch.tensor(float(len(rates) * pixels_per_tile), dtype=torch.float64),
                             per_tile_nats.sum(), rates.sum(), rates.square().sum()])
        if per_image is not None:
            if int(owner.max()) >= per_image.shape[0]:
                raise ValueError(f"per_image has {per_image.shape[0]} rows, image {int(owner.max())} has tiles")
            ones = torch.ones_like(per_tile_nats)
            per_image.index_add_(0, owner, torch.stack([ones, ones * pixels_per_tile, per_tile_nats], 1))
        if progress is not None:
            progress(len(rates))
    return sums


@torch.no_grad()
def whole_image_sums(model: torch.nn.Module, images: Iterable[Tensor], seed: int = 0,
                     device: str | torch.device | None = None, shard: tuple[int, int] = (0, 1),
                     per_image: Tensor | None = None) -> Tensor:
    """Sums over this shard's whole images, each one piece, float64 [5]: (num_images, num_pixels, sum ln p (nats),
    sum of per-image rates (bit/px), sum of their squares), as `tile_sums` gives for tiles.

    Each image (uint8 [C, H, W], any size) is dequantised with the noise the tile protocol gives it (seeded by
    `image_seed(seed, image)`) and evaluated in one piece: every pixel the model predicts, with the whole causal
    past, as a user scoring a photograph gets it. Image k of all images is shard k % world's. Images smaller than
    the model's window predict no pixel and are left out. `per_image` [num_images, 3] receives (1, num_pixels, sum
    ln p) in each evaluated image's row.
    """
    _check_shard(shard)
    rank, world = shard
    device = _model_device(model) if device is None else device
    top, left, right = model.margin
    sums = torch.zeros(5, dtype=torch.float64)
    for index, image in enumerate(images):
        _check_uint8_image(image, index)
        if index % world != rank or image.shape[1] <= top or image.shape[2] <= left + right:
            continue
        x = dequantize(image, torch.Generator().manual_seed(image_seed(seed, image)))
        log_p = model.log_prob_pixels(x[None].to(device)).double().cpu()
        nats = log_p.sum()
        row = torch.stack([torch.ones_like(nats), torch.full_like(nats, log_p.numel()), nats])  # images, pixels, nats
        rate = nats / row[1] / LN2
        sums += torch.cat([row, torch.stack([rate, rate.square()])])
        if per_image is not None:
            per_image[index] += row
    return sums


def tile_result(sums: Tensor, pixels_per_tile: int, ensemble: bool) -> TileResult:
    """The `TileResult` of (all shards') summed `tile_sums`."""
    num_tiles, num_pixels, total_nats, total_rate, total_rate_sq = (float(v) for v in sums)
    if num_tiles < 1:
        raise ValueError("no tile was evaluated")
    return TileResult(bits_per_pixel=bits_per_pixel_from_nats(total_nats, int(num_pixels)),
                      stderr=_stderr_from_sums(num_tiles, total_rate, total_rate_sq), num_pixels=int(num_pixels),
                      num_tiles=int(num_tiles), pixels_per_tile=pixels_per_tile, ensemble=ensemble)


def evaluate_tiles(model: torch.nn.Module, images: Iterable[Tensor], tile_size: int = 64, ensemble: bool = False,
                   seed: int = 0, batch_size: int = 32, device: str | torch.device | None = None,
                   progress: Progress | None = None, shard: tuple[int, int] = (0, 1),
                   reduce: Reduce | None = None) -> TileResult:
    """The tile protocol (design §9.1): images, an iterable of uint8 [C, H, W] (any sizes) -> `TileResult`.

    `model` needs `log_prob_pixels` ([B, C, H, W] on [0,1) -> [B, H-top, W-left-right] nats) and `margin`.
    Each image is dequantised with a generator seeded by `image_seed(seed, image)`, then cut into tile_size tiles
    (remainder dropped). With `ensemble`, each tile's log-likelihood is that of the 8-transform ensemble over the
    common pixel set (design §7). Tiles are evaluated in batches of `batch_size` on `device` (default: the model's).
    `progress(n)` is called after each batch with its number of tiles. `shard` and `reduce`: see the module notes.
    """
    sums = tile_sums(model, images, tile_size, ensemble, seed, batch_size, device, progress, shard)
    if reduce is not None:
        sums = reduce(sums)
    pixels_per_tile = int(counted_pixels(model, tile_size, tile_size, ensemble).sum())
    return tile_result(sums, pixels_per_tile, ensemble)


def _model_device(model: torch.nn.Module) -> torch.device:
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _check_shard(shard: tuple[int, int]) -> None:
    rank, world = shard
    if not (isinstance(rank, int) and isinstance(world, int) and world >= 1 and 0 <= rank < world):
        raise ValueError(f"shard must be (rank, world_size) with 0 <= rank < world_size, found {shard!r}")


# ---------------------------------------------------------------------------------------------- patches (§9.2)

def patches_to_63(x: Tensor) -> tuple[Tensor, Tensor]:
    """Centre 8x8 patches and drop the bottom-right pixel: x [N, 64] -> (z [N, 63], dc [N]), dc = patch mean."""
    _check_patches(x)
    dc = x.mean(1)
    return x[:, :63] - dc[:, None], dc


def patches_from_63(z: Tensor, dc: Tensor) -> Tensor:
    """Inverse of `patches_to_63`: z [N, 63], dc [N] -> x [N, 64] (x_64 = dc - sum z)."""
    return torch.cat([z, -z.sum(1, keepdim=True)], 1) + dc[:, None]


def _check_patches(x: object, name: str = "patches") -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != PATCH_SIZE * PATCH_SIZE:
        found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a tensor [N, 64] of 8x8 patches in raster order, found {found}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be dequantised floats on [0,1), found dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no patch")


class DCModel:
    """A 1-D mixture of Gaussians for the patch mean (DC), fitted by EM in float64.

    ln p(m) = logsumexp_k( ln w_k + ln N(m; mu_k, var_k) ) in nats. Parameters are float64 tensors [K].
    """

    FORMAT = "ride-dc-gmm"
    VERSION = 1

    def __init__(self, weights: Tensor, means: Tensor, variances: Tensor) -> None:
        weights, means, variances = (torch.as_tensor(v, dtype=torch.float64).flatten()
                                     for v in (weights, means, variances))
        if not (weights.shape == means.shape == variances.shape) or weights.numel() == 0:
            raise ValueError(f"weights, means and variances must be [K] with K >= 1, found {tuple(weights.shape)}, "
                             f"{tuple(means.shape)}, {tuple(variances.shape)}")
        if bool((weights < 0).any()) or abs(float(weights.sum()) - 1) > 1e-6 or bool((variances <= 0).any()):
            raise ValueError("a DC model needs non-negative weights summing to 1 and positive variances")
        self.weights, self.means, self.variances = weights, means, variances

    @property
    def num_components(self) -> int:
        return self.weights.numel()

    @classmethod
    def fit(cls, dc: Tensor, num_components: int = 10, max_iter: int = 500, tol: float = 1e-10,
            min_variance: float = 1e-10) -> DCModel:
        """EM on patch means dc [N] (deterministic: means start at the quantiles, variances at var(dc)/K).

        Stops when the mean log-likelihood improves by less than `tol` nats or after `max_iter` iterations.
        """
        x = torch.as_tensor(dc, dtype=torch.float64).flatten()
        if x.numel() < 2 or not bool(torch.isfinite(x).all()):
            raise ValueError(f"DCModel.fit needs at least 2 finite values, found {x.numel()}")
        k = int(num_components)
        if k < 1:
            raise ValueError(f"num_components must be positive, found {num_components!r}")
        var = float(x.var()) + min_variance
        model = cls(torch.full((k,), 1.0 / k, dtype=torch.float64),
                    torch.quantile(x, (torch.arange(k, dtype=torch.float64) + 0.5) / k),
                    torch.full((k,), var / k, dtype=torch.float64))
        previous = -math.inf
        for _ in range(max_iter):
            joint = model._log_joint(x)  # (N, K)
            log_norm = torch.logsumexp(joint, 1, keepdim=True)
            mean_ll = float(log_norm.mean())
            resp = (joint - log_norm).exp()
            nk = resp.sum(0) + 1e-300
            means = (resp * x[:, None]).sum(0) / nk
            variances = ((resp * (x[:, None] - means).square()).sum(0) / nk).clamp_min(min_variance)
            model = cls(nk / nk.sum(), means, variances)
            if mean_ll - previous < tol:
                break
            previous = mean_ll
        return model

    def _log_joint(self, x: Tensor) -> Tensor:
        d = x[:, None] - self.means
        return (self.weights.log() - 0.5 * (math.log(2 * math.pi) + self.variances.log())
                - 0.5 * d.square() / self.variances)

    def log_prob(self, dc: Tensor) -> Tensor:
        """ln p(m) in nats: dc [N] -> [N] float64."""
        x = torch.as_tensor(dc).detach().to("cpu", torch.float64).flatten()
        return torch.logsumexp(self._log_joint(x), 1)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw num_samples patch means: [num_samples] float64."""
        comp = torch.multinomial(self.weights, num_samples, replacement=True, generator=generator)
        eps = torch.randn(num_samples, generator=generator, dtype=torch.float64)
        return self.means[comp] + self.variances[comp].sqrt() * eps

    def to_dict(self) -> dict[str, object]:
        """Plain-data form for a checkpoint's `extra` (see `ride.cli.eval`): format, version and lists of floats."""
        return {"format": self.FORMAT, "version": self.VERSION, "weights": self.weights.tolist(),
                "means": self.means.tolist(), "variances": self.variances.tolist()}

    @classmethod
    def from_dict(cls, data: object) -> DCModel:
        """Inverse of `to_dict`; a ValueError names what is wrong."""
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError(f"not a DC model (expected a dict with format {cls.FORMAT!r}), found "
                             f"{data.get('format') if isinstance(data, dict) else type(data).__name__!r}")
        if data.get("version") != cls.VERSION:
            raise ValueError(f"DC model version {data.get('version')!r}; this ride reads version {cls.VERSION}")
        try:
            return cls(data["weights"], data["means"], data["variances"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"invalid DC model data: {err}") from err


@dataclass(frozen=True)
class PatchResult:
    """Result of a patch protocol. `nats` is the mean log-likelihood per patch (63-dim: of the 63 values; 64-dim:
    of the whole patch); `bits_per_pixel` = nats / (dims * ln 2) with dims = 63 or 64. Higher is better."""

    nats: float
    nats_stderr: float  # standard error over patches
    num_patches: int
    dims: int  # 63 or 64

    @property
    def bits_per_pixel(self) -> float:
        return self.nats / (self.dims * LN2)

    @property
    def stderr(self) -> float:
        """Standard error of `bits_per_pixel`."""
        return self.nats_stderr / (self.dims * LN2)

    @property
    def num_pixels(self) -> int:
        return self.num_patches * self.dims

    @property
    def discrete_bound_bits_per_pixel(self) -> float | None:
        """8 - rate for the 64-dim protocol (the 64 pixels are dequantised 8-bit values); None for 63 dims."""
        return discrete_bound_bits_per_pixel(self.bits_per_pixel) if self.dims == 64 else None


def patch_transform_63(z: Tensor, transform: object) -> Tensor:
    """Apply a dihedral transform to centred patches given as z [N, 63] -> [N, 63] (a linear map, |det| = 1)."""
    centred = torch.cat([z, -z.sum(1, keepdim=True)], 1).view(-1, PATCH_SIZE, PATCH_SIZE)
    return transform(centred).reshape(-1, PATCH_SIZE * PATCH_SIZE)[:, :63]


def log_prob_63(model63: torch.nn.Module, z: Tensor, ensemble: bool = False) -> Tensor:
    """ln p63(z) in nats, z [N, 63] -> [N]; with `ensemble`, of the mixture over the 8 dihedral transforms of
    the 8x8 patch (each a permutation of the centred pixels, so the mixture stays normalised)."""
    if not ensemble:
        return model63.log_prob(z).double()
    lps = torch.stack([model63.log_prob(patch_transform_63(z, t)).double() for t in TRANSFORMS])
    return torch.logsumexp(lps, 0) - math.log(len(TRANSFORMS))


@torch.no_grad()
def patch_sums(model63: torch.nn.Module, x: Tensor, dc_model: DCModel | None = None, ensemble: bool = False,
               batch_size: int = 10_000, device: str | torch.device | None = None, progress: Progress | None = None,
               shard: tuple[int, int] = (0, 1)) -> Tensor:
    """Sums over this shard's patches, float64 [3]: (count, sum of ln p, sum of (ln p)^2), ln p in nats per
    patch: of the 63 values, or with `dc_model` of the whole 64-pixel patch (L63 + L_DC - ln 64)."""
    _check_patches(x)
    _check_shard(shard)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, found {batch_size!r}")
    if device is None:
        device = _model_device(model63)
    rank, world = shard
    mine = x[rank::world]
    sums = torch.zeros(3, dtype=torch.float64)
    for start in range(0, mine.shape[0], batch_size):
        batch = mine[start:start + batch_size]
        z, dc = patches_to_63(batch.double())  # centring in float64: stored patches may be float32
        lp = log_prob_63(model63, z.to(device), ensemble).cpu()
        if dc_model is not None:
            lp = lp + dc_model.log_prob(dc) - LN64
        sums += torch.stack([torch.tensor(float(lp.numel()), dtype=torch.float64), lp.sum(), lp.square().sum()])
        if progress is not None:
            progress(batch.shape[0])
    return sums


def patch_result(sums: Tensor, dims: int) -> PatchResult:
    """The `PatchResult` of (all shards') summed `patch_sums`."""
    count, total, total_sq = (float(v) for v in sums)
    if count < 1:
        raise ValueError("no patch was evaluated")
    return PatchResult(nats=total / count, nats_stderr=_stderr_from_sums(count, total, total_sq),
                       num_patches=int(count), dims=dims)


def evaluate_patches63(model63: torch.nn.Module, x: Tensor, ensemble: bool = False, batch_size: int = 10_000,
                       device: str | torch.device | None = None, progress: Progress | None = None,
                       shard: tuple[int, int] = (0, 1), reduce: Reduce | None = None) -> PatchResult:
    """The 63-dim protocol: mean ln p63 in nats per patch (with standard error) of dequantised patches x [N, 64].

    `model63.log_prob(z [N, 63]) -> [N]` nats. `ensemble`, `shard`, `reduce`: see `log_prob_63` and the module.
    """
    sums = patch_sums(model63, x, None, ensemble, batch_size, device, progress, shard)
    return patch_result(reduce(sums) if reduce is not None else sums, 63)


def evaluate_patches64(model63: torch.nn.Module, dc_model: DCModel, x: Tensor, ensemble: bool = False,
                       batch_size: int = 10_000, device: str | torch.device | None = None,
                       progress: Progress | None = None, shard: tuple[int, int] = (0, 1),
                       reduce: Reduce | None = None) -> PatchResult:
    """The 64-dim protocol: per patch ln p(x) = ln p63(z) + ln p_DC(m) - ln 64 nats (module notes), x [N, 64].

    The result's `bits_per_pixel` = (L63 + L_DC - ln 64) / (64 ln 2), `stderr` its standard error over patches.
    """
    sums = patch_sums(model63, x, dc_model, ensemble, batch_size, device, progress, shard)
    return patch_result(reduce(sums) if reduce is not None else sums, 64)
