"""Probe (issue 31): would secondary estimation (an adaptive probability map, APM / SSE) of the value's binary
decisions shrink the colour codec's files beyond the repeat flags?

The colour heads are under-confident on never-JPEG photographs (a per-image precision factor wanted sharper
densities on 8 of 10 photographs; the repeat flags, learnt on the image, took 1.5%). Context-mixing coders refine
every binary decision with a table learnt on the image so far: p' = APM[context](stretch(p)), interpolated between
buckets of stretch(p), and code with a mix of p and p'. Here each value that the repeat flags do not code (no
candidate hit) is decomposed into its 8 binary decisions (most significant bit first) under the integer model's
distribution without the candidates (as the codec's digits are), and the ideal code length of those decisions is
measured with the model's probabilities and with the APM's, the table updated after each front (as a decoder
could). The flags' own cost is unchanged by the APM, so the saving is reported against the codec's whole file of the
same image (format 6: the flags without the maps). Format 8 (2026-12-08) ships the design "level+activity, memory
1024, mix 1/2" in integers (`ride.codec.apm`).

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/sse_probe.py --crop 384
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from PIL import Image

from ride.codec import compress, engine, kernels
from ride.codec.coder import default_stripes, integer_model
from ride.codec.fixedpoint import CELL_CLIP_INT
from ride.model_zoo import pretrained

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import repeat_flag_probe  # noqa: E402 - experiments/, beside this file
from bench_codec_colour import wikipedia_whole  # noqa: E402 - benchmarks/

STRETCH_CLIP = 8.0
#: the smallest probability of a decision: 2^-12, so that a value of no model mass costs about what the codec's
#: 2-bit digits pay for it (a digit's frequency is at least 1 in 2^24: 24 bits for its two decisions). With 1e-9
#: (until 2026-12-08) the probe charged such values up to 30 bits per decision, which overstated the model's cost
#: and the maps' saving on photographs that have many (028's crop: -14% in the probe, -3.5% in the codec)
FLOOR = 2.0**-12
#: designs: name -> the APM's memory in events; the context is the channel and the bit's position ("level"), and
#: the activity class of the repeat flags; the last part of the name is the APM's share in the coded probability
DESIGNS = {"level": 128.0, "level+activity": 128.0, "level+activity, mix 1/2": 128.0,
           "level+activity, memory 32": 32.0, "level+activity, memory 1024": 1024.0,
           "level+activity, memory 1024, mix 1/2": 1024.0, "level+activity, memory 1024, mix 3/4": 1024.0,
           "level+activity+previous, memory 1024, mix 1/2": 1024.0,
           "level+activity, 65 knots, memory 1024, mix 1/2": 1024.0}
#: --designs short: the shipped design (format 8) and two variants of it
SHORT = ("level+activity, memory 1024, mix 1/2", "level+activity+previous, memory 1024, mix 1/2",
         "level+activity, 65 knots, memory 1024, mix 1/2")
MIX = {"mix 1/2": 0.5, "mix 3/4": 0.75}


@numba.njit(cache=False)
def _path(count, offset, weights, step, total, phi, keep, values, skip, skip_mass, p_one, bits):  # noqa: ANN001, ANN202
    """P(bit = 1) [n, 8] of each cell's 8 binary decisions along its value's path (values [n]) under the mixture
    without the values skip[q] (masses skip_mass[q]), and the bits [n, 8]."""
    ext = np.empty(2, dtype=np.int64)
    for q in range(keep.shape[0]):
        i, v = keep[q], values[q]
        low, high, start = np.int64(0), total[i] - skip_mass[q].sum(), np.int64(0)
        for level in range(8):
            width = 7 - level
            kernels._cdf_edges(count, offset, weights, step, phi, i, start, width, 2, ext)
            mid_edge = start + (np.int64(1) << width)
            mid = ext[1]
            for m in range(skip.shape[1]):
                if skip_mass[q, m] != 0 and skip[q, m] < mid_edge:
                    mid -= skip_mass[q, m]
            bit = (v >> width) & 1
            p_one[q, level] = (high - mid) / max(high - low, 1)
            bits[q, level] = bit
            if bit:
                low, start = mid, mid_edge
            else:
                high = mid


class APM:
    """An adaptive probability map per context: `buckets` knots over stretch(p) in [-8, 8], interpolated. A front's
    events update each knot at once, as the running mean of its events (weighted by the interpolation's shares),
    the knot's past weighing at most `memory` events: the same table whatever the events' order in the front."""

    def __init__(self, contexts: int, buckets: int = 33, memory: float = 128.0) -> None:
        knots = np.linspace(-STRETCH_CLIP, STRETCH_CLIP, buckets)
        self.table = np.tile(1 / (1 + np.exp(-knots)), (contexts, 1))
        self.seen = np.full((contexts, buckets), 1.5)  # the knot's start weighs 1.5 events
        self.buckets, self.memory = buckets, memory

    def locate(self, context: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = np.clip(np.log(p / (1 - p)), -STRETCH_CLIP, STRETCH_CLIP)
        pos = (s + STRETCH_CLIP) / (2 * STRETCH_CLIP) * (self.buckets - 1)
        j = np.minimum(pos.astype(np.int64), self.buckets - 2)
        w = pos - j
        return context, j, w

    def predict(self, where: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        c, j, w = where
        return (1 - w) * self.table[c, j] + w * self.table[c, j + 1]

    def update(self, events: list[tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]]) -> None:
        ones, weight = np.zeros_like(self.table), np.zeros_like(self.table)
        for (c, j, w), bit in events:
            for k, share in ((j, 1 - w), (j + 1, w)):
                np.add.at(ones, (c, k), share * bit)
                np.add.at(weight, (c, k), share)
        past = np.minimum(self.seen, self.memory)
        self.table = (self.table * past + ones) / (past + weight)
        self.seen += weight


class Mixer:
    """Logistic mixing of stretched probabilities (the context-mixing coders' last stage): per context a weight per
    input and a bias, p = squash(w . [s_1, .., s_m, 1]), the weights moved after each front by lr times the sum of
    the front's gradients of the log-loss, (bit - p) x (the same whatever the events' order)."""

    def __init__(self, contexts: int, inputs: int, lr: float) -> None:
        self.w = np.zeros((contexts, inputs + 1))
        self.w[:, :inputs] = 1.0 / inputs
        self.lr = lr

    def predict(self, context: np.ndarray, probs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        x = np.stack([np.clip(np.log(q / (1 - q)), -STRETCH_CLIP, STRETCH_CLIP) for q in probs]
                     + [np.ones_like(probs[0])], 1)
        return 1 / (1 + np.exp(-(self.w[context] * x).sum(1))), x

    def update(self, events: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        for context, x, p, bit in events:
            np.add.at(self.w, context, self.lr * (bit - p)[:, None] * x)


#: mixer designs (--mixers): name -> learning rate; each mixes the model's p with format 8's map and, for "+map2",
#: a second map of context (channel, bit position, the previous channel's hit)
MIXERS = {"mixer p+map, lr 0.0005": 0.0005, "mixer p+map, lr 0.002": 0.002, "mixer p+map, lr 0.008": 0.008,
          "mixer p+map+map2, lr 0.002": 0.002}


def _fronts(model, image: np.ndarray):  # noqa: ANN001, ANN201
    """The codec's encoder's view, front by front (default stripes): (stepper, keep, [(channel k, mixture, values
    [n])] in coded order); grey images [H, W] under a grey model, RGB [H, W, 3] under a colour one."""
    im = integer_model(model)
    if image.ndim == 2:
        bounded = im.cell_clip < CELL_CLIP_INT
        stripes = engine.stripe_layout(image.shape[0], default_stripes(image.shape[0], False, bounded))[1]
        grid = engine._Canvases(im, *image.shape, int(round(float(image.mean()))), stripes, "kernels")
        grid.fill(image)
        values = image.reshape(-1)
        for t in range(grid.stepper.num_fronts):
            cells = grid.cells(t)
            if cells is not None:
                yield grid.stepper, t, cells[0], [(0, grid.stepper.front(t), values[cells[1]].astype(np.int64))]
        return
    fronts = repeat_flag_probe._fronts(model, image)  # the colour codec's encoder, as the flags' probe steps it
    next(fronts)
    for _, stepper, keep, channels, t in fronts:
        yield stepper, t, keep, [(k, mix, x) for k, (x, mix) in enumerate(channels)]


def probe(model, image: np.ndarray, short: bool = False, mixers: bool = False) -> dict[str, float]:  # noqa: ANN001
    """Ideal bits of the no-hit values' binary decisions: the model's, and with APMs of a few designs (and, with
    `mixers`, logistic mixers of the model and the maps)."""
    designs = {name: APM(3 * 8 * (1 if name == "level" else 10 if "previous" in name else 5), memory=memory,
                         buckets=65 if "65 knots" in name else 33)
               for name, memory in DESIGNS.items() if name in (SHORT if short else DESIGNS)}
    shipped = "level+activity, memory 1024, mix 1/2"
    if mixers:
        designs.setdefault(shipped, APM(3 * 8 * 5, memory=1024.0))
        second = APM(3 * 8 * 2, memory=1024.0)
    mixes = {name: Mixer(3 * 8, 3 if "map2" in name else 2, lr) for name, lr in MIXERS.items()} if mixers else {}
    cost = dict.fromkeys(["model", *designs, *mixes], 0.0)
    decisions = 0
    for stepper, t, keep, channels in _fronts(model, image):
        pending: dict[str, list] = {name: [] for name in [*designs, *mixes, "map2"]}
        previous = np.zeros(keep.size, dtype=np.int64)  # the channel before hit (the flags' context)
        for k, mix, x in channels:
            cands, active, first = engine._candidates(stepper, t, keep, k)
            miss = ~((cands == x[:, None]) & first).any(1)
            rest = np.flatnonzero(miss)
            before, previous = previous, (~miss).astype(np.int64)
            if rest.size == 0:
                continue
            masses, _ = stepper.value_masses(mix, keep[rest], cands[rest], first[rest])
            skip = np.where(first[rest], cands[rest], -1)
            p_one = np.empty((rest.size, 8))
            bits = np.empty((rest.size, 8), dtype=np.int64)
            _path(mix.count, mix.offset, mix.weights, mix.step, mix.total, stepper.phi, keep[rest], x[rest],
                  np.ascontiguousarray(skip), np.ascontiguousarray(masses), p_one, bits)
            p = np.clip(p_one, FLOOR, 1 - FLOOR).reshape(-1)
            bit = bits.reshape(-1)
            level = np.tile(np.arange(8), rest.size)
            act = np.repeat(active[rest], 8)
            prev = np.repeat(before[rest], 8)
            cost["model"] += -np.log2(np.where(bit == 1, p, 1 - p)).sum()
            decisions += bit.size
            for name, apm in designs.items():
                context = k * 8 + level if name == "level" else (k * 8 + level) * 5 + act
                if "previous" in name:
                    context = 2 * context + prev
                where = apm.locate(context, p)
                q = apm.predict(where)
                share = MIX.get(name.split(", ")[-1], 1.0)
                q = np.clip(share * q + (1 - share) * p, FLOOR, 1 - FLOOR)
                cost[name] += -np.log2(np.where(bit == 1, q, 1 - q)).sum()
                pending[name].append((where, bit))
            if mixes:
                where1 = designs[shipped].locate((k * 8 + level) * 5 + act, p)
                shipped_q = np.clip(designs[shipped].predict(where1), FLOOR, 1 - FLOOR)  # the map alone
                where2 = second.locate((k * 8 + level) * 2 + prev, p)
                q2 = np.clip(second.predict(where2), FLOOR, 1 - FLOOR)
                pending["map2"].append((where2, bit))
                for name, mixer in mixes.items():
                    inputs = [p, shipped_q, q2] if "map2" in name else [p, shipped_q]
                    q, x = mixer.predict(k * 8 + level, inputs)
                    q = np.clip(q, FLOOR, 1 - FLOOR)
                    cost[name] += -np.log2(np.where(bit == 1, q, 1 - q)).sum()
                    pending[name].append((k * 8 + level, x, q, bit))
        for name, apm in designs.items():  # after the front, as a decoder could
            if pending[name]:
                apm.update(pending[name])
        for name, mixer in mixes.items():
            mixer.update(pending[name])
        if mixes and pending["map2"]:
            second.update(pending["map2"])
    cost["decisions"] = decisions
    return cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="photo_colour_nojpeg")
    parser.add_argument("--crop", type=int, default=384, help="central crop side (0: whole photographs)")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--short", action="store_true", help="only the shipped design and two variants of it")
    parser.add_argument("--mixers", action="store_true", help="also logistic mixers of the model and the maps")
    parser.add_argument("--grey", action="store_true", help="grey photographs (luma) under a grey model "
                        "(--model photo_grey_nojpeg): the codec's format 7 file against the maps")
    args = parser.parse_args()
    model = pretrained(args.model)
    totals: dict[str, float] = {}
    file_bits = 0
    for name, image in wikipedia_whole(args.limit):
        if args.grey:
            image = np.asarray(Image.fromarray(image).convert("L")).copy()
        if args.crop:
            h, w = image.shape[:2]
            top, left = (h - args.crop) // 2, (w - args.crop) // 2
            image = np.ascontiguousarray(image[top : top + args.crop, left : left + args.crop])
        started = time.perf_counter()
        bits = 8 * len(compress(model, image, maps=False))  # format 6 (7 grey): the flags without the maps
        cost = probe(model, image, args.short, args.mixers)
        file_bits += bits
        for key, value in cost.items():
            totals[key] = totals.get(key, 0.0) + value
        saved = "  ".join(f"{key} {(cost[key] - cost['model']) / bits * 100:+.2f}%" for key in cost
                          if key not in ("model", "decisions"))
        print(f"{name}: file {bits / image.size:.4f} bits/sub-px, digits {cost['model'] / bits * 100:.1f}% of it; "
              f"saved of the file: {saved}  ({time.perf_counter() - started:.0f} s)", flush=True)
    saved = "  ".join(f"{key} {(totals[key] - totals['model']) / file_bits * 100:+.2f}%" for key in totals
                      if key not in ("model", "decisions"))
    print(f"all: digits {totals['model'] / file_bits * 100:.1f}% of the files; saved of the files: {saved}")


if __name__ == "__main__":
    main()
