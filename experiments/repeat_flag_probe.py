"""Probe: would an adaptive "same as the left neighbour" flag, calibrated on the image as it is coded, shrink the
colour codec's files?

The codec codes every sub-pixel with the model's distribution alone. On flat areas (a clear sky, saturated
highlights, graphics) the model is never sure enough: a constant plane costs the grey codec 0.11-0.19 bits/px,
where PNG pays almost nothing. A classic remedy, secondary estimation: before the value, code one binary event
"x == v" (v: the same channel's left neighbour) with a probability learnt from the image so far, in a context made
of the local flatness (how many of N, NW, NE equal W) and of the model's own probability of v (bucketed); on a miss,
code x with the model's distribution with v removed (renormalised). Both sides can count hits per context in
integers, front by front, so the stream would stay portable.

This measures the ideal code length of that scheme against the model's, from the integer model's exact CDF (the
codec's engine, default stripes), per image: `-log2 P(x)` summed, against the flag's adaptive (Krichevsky-Trofimov)
cost plus the excluded model's cost on misses. Counts are updated after each front, as a decoder could.

    RIDE_DATA=../shared/data OMP_NUM_THREADS=1 python experiments/repeat_flag_probe.py --model photo_colour_nojpeg \
        --set wikipedia_val
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

import ride
from ride.codec import engine
from ride.codec.coder import _to_coded, default_stripes, integer_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_codec_colour import _rgb, aerials_whole, wikipedia_whole  # noqa: E402 - benchmarks/

BUCKETS = 16  # buckets of -log2 P(v), half a bit wide
LIMIT = 0  # halve a context's counts when they reach it (0: never)
INTER = False  # candidates 6 and 7: from the channel coded before (W + its change, N + its change)


def _probs(stepper, mix, keep: np.ndarray, values: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """P(values[q, m]) [n, m] of every kept cell q: the integer model's masses over its total (at least one unit)."""
    masses, total = stepper.value_masses(mix, keep, values)
    return np.maximum(masses, 1) / total[:, None]


def _fronts(model, image: np.ndarray):  # noqa: ANN001, ANN201
    """Front by front as the codec's encoder steps the image (default stripes): (raster index [n] of the kept cells,
    the stepper, keep, [(values [n], mixture)] of channels 0, 1, 2 in coded order, the front t); also (coded image,
    pads) first."""
    im = integer_model(model)
    coded = _to_coded(image, im.transform)
    height, width, _ = coded.shape
    stripes = engine.stripe_layout(height, default_stripes(height, colour=True))[1]
    pads = tuple(int(round(float(coded[..., k].mean()))) for k in range(3))
    yield coded, pads
    grid = engine._Canvases(im, height, width, pads, stripes, "kernels")
    grid.fill(coded)
    stepper = grid.stepper
    values = coded.reshape(-1, 3)
    pad_codes = 2 * np.asarray(pads, dtype=np.int64) + 1
    for t in range(stepper.num_fronts):
        cells = grid.cells(t)
        if cells is None:
            continue
        keep, index = cells
        hidden, base = stepper.trunk(t)
        codes = np.tile(pad_codes, (hidden.shape[0], 1))
        codes[keep] = 2 * values[index].astype(np.int64) + 1
        yield index, stepper, keep, [(values[index, k].astype(np.int64), stepper.head(k, hidden, base, codes))
                                     for k in range(3)], t
        stepper.write(t, codes)


def neighbours(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(v = W, flatness 0..3 = [W == N] + [W == NW] + [W == NE], valid) of each pixel of an [H, W] plane."""
    p = plane.astype(np.int16)
    h, w = p.shape
    v = np.full((h, w), -1, np.int16)
    flat = np.zeros((h, w), np.int8)
    v[:, 1:] = p[:, :-1]
    valid = np.zeros((h, w), bool)
    valid[1:, 1:-1] = True
    west = p[1:, :-2]
    flat[1:, 1:-1] = ((west == p[:-1, 1:-1]).astype(np.int8) + (west == p[:-1, :-2]) + (west == p[:-1, 2:]))
    return v, flat, valid


def probe(model, image: np.ndarray) -> tuple[float, float, int]:  # noqa: ANN001
    """(model bits, flag-scheme bits, sub-pixels) of one RGB image."""
    fronts = _fronts(model, image)
    coded, _ = next(fronts)
    nb = [neighbours(coded[..., k]) for k in range(3)]
    cand = np.stack([n[0].reshape(-1) for n in nb], 1)
    flat = np.stack([n[1].reshape(-1) for n in nb], 1)
    valid = np.stack([n[2].reshape(-1) for n in nb], 1)
    # contexts: channel, flatness, whether the channel before hit (channel 0: no), bucket of -log2 P(v)
    hits = np.zeros((3, 4, 2, BUCKETS))
    seen = np.zeros((3, 4, 2, BUCKETS))
    model_bits = scheme_bits = 0.0
    for index, stepper, keep, channels, _ in fronts:
        prev_hit = np.zeros(keep.shape[0], dtype=np.int64)
        updates = []
        for k, (x, mix) in enumerate(channels):
            v = np.maximum(cand[index, k], 0).astype(np.int64)
            p = _probs(stepper, mix, keep, np.stack([x, v], 1))
            model_bits += -np.log2(p[:, 0]).sum()
            ok = valid[index, k]
            hit = (x == v) & ok
            bucket = np.minimum((-2 * np.log2(p[:, 1])).astype(np.int64), BUCKETS - 1)
            f = flat[index, k].astype(np.int64)
            ctx = (np.full_like(f, k), f, prev_hit if k else np.zeros_like(f), bucket)
            ph = (hits[ctx] + 0.5) / (seen[ctx] + 1.0)
            excluded = np.log2(p[:, 0]) - np.log2(1 - np.minimum(p[:, 1], 1 - 1e-12))  # log2 P(x | x != v)
            cost = np.where(hit, -np.log2(ph), -np.log2(1 - ph) - excluded)
            scheme_bits += np.where(ok, cost, -np.log2(p[:, 0])).sum()
            updates.append((tuple(c[ok] for c in ctx), hit[ok]))
            prev_hit = hit.astype(np.int64)
        _count(hits, seen, updates)
    return model_bits, scheme_bits, image.size


def _count(hits: np.ndarray, seen: np.ndarray, updates: list) -> None:
    """A front's events, after the front (as a decoder could), then the halving at LIMIT."""
    for ctx, hit in updates:
        np.add.at(seen, ctx, 1)
        np.add.at(hits, ctx, hit)
    if LIMIT:
        over = seen >= LIMIT
        hits[over] = np.floor((hits[over] + 1) / 2)
        seen[over] = np.floor((seen[over] + 1) / 2)


def activity(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(W, N, activity 0..4 = bucket of max |W - N|, |W - NW|, |W - NE| in {0, 1, 2-3, 4-7, 8+}, valid) per pixel."""
    p = plane.astype(np.int16)
    h, w = p.shape
    west, north = np.zeros((h, w), np.int16), np.zeros((h, w), np.int16)
    act = np.zeros((h, w), np.int64)
    valid = np.zeros((h, w), bool)
    valid[1:, 1:-1] = True
    west[:, 1:] = p[:, :-1]
    north[1:] = p[:-1]
    wv = p[1:, :-2]
    d = np.maximum(np.maximum(np.abs(wv - p[:-1, 1:-1]), np.abs(wv - p[:-1, :-2])), np.abs(wv - p[:-1, 2:]))
    act[1:, 1:-1] = np.searchsorted(np.array([1, 2, 4, 8]), d, side="right")
    return west, north, act, valid


def probe_two(model, image: np.ndarray, second: bool, count: int = 2) -> tuple[float, float, int]:  # noqa: ANN001
    """The variant: activity contexts instead of flatness, and with `second` further flags, one per distinct
    candidate among N, NE, NW (the first `count` - 1 of them) after the misses before it, each value coded without
    the candidates that missed."""
    fronts = _fronts(model, image)
    coded, _ = next(fronts)
    nb = [activity(coded[..., k]) for k in range(3)]
    act, valid = (np.stack([n[j].reshape(-1) for n in nb], 1) for j in (2, 3))
    planes = []
    for k in range(3):
        p = coded[..., k].astype(np.int64)
        c = np.zeros((9,) + p.shape, np.int64)
        c[0, :, 1:] = p[:, :-1]  # W
        c[1, 1:] = p[:-1]  # N
        c[2, 1:, :-1] = p[:-1, 1:]  # NE
        c[3, 1:, 1:] = p[:-1, :-1]  # NW
        c[4] = np.clip(c[0] + c[1] - c[3], 0, 255)  # the gradient predictor
        c[5, :, 2:] = p[:, :-2]  # WW
        c[6, 2:] = p[:-2]  # NN
        if INTER and k:  # the channel coded before at this pixel: W + its change from W, N + its change from N
            q = coded[..., k - 1].astype(np.int64)
            c[5, :, 1:] = np.clip(p[:, :-1] + q[:, 1:] - q[:, :-1], 0, 255)
            c[6, 1:] = np.clip(p[:-1] + q[1:] - q[:-1], 0, 255)
        planes.append(c.reshape(9, -1))
    stages = count if second else 1
    hits = np.zeros((stages, 3, 5, 2, BUCKETS))
    seen = np.zeros((stages, 3, 5, 2, BUCKETS))
    model_bits = scheme_bits = 0.0
    global LIMIT
    LIMIT = LIMIT or 4096
    for index, stepper, keep, channels, _ in fronts:
        prev_hit = np.zeros(keep.shape[0], dtype=np.int64)
        updates = []
        for k, (x, mix) in enumerate(channels):
            cand = planes[k][:stages, index].T  # [n, stages]
            p = _probs(stepper, mix, keep, np.concatenate([x[:, None], cand], 1))
            px = p[:, 0]
            model_bits += -np.log2(px).sum()
            ok = valid[index, k]
            a = act[index, k]
            prev = prev_hit if k else np.zeros_like(a)
            cost = np.zeros(keep.shape[0])
            active = ok.copy()  # still coding flags
            removed = np.zeros(keep.shape[0])  # probability of the candidates that missed
            done = np.zeros(keep.shape[0], bool)
            hit_any = np.zeros(keep.shape[0], bool)
            for j in range(stages):
                v = cand[:, j]
                dup = np.zeros(keep.shape[0], bool)
                for i in range(j):
                    dup |= v == cand[:, i]
                use = active & ~dup
                pj = np.minimum(p[:, 1 + j] / np.maximum(1 - removed, 1e-12), 1 - 1e-9)
                b = np.minimum((-2 * np.log2(np.maximum(pj, 1e-300))).astype(np.int64), BUCKETS - 1)
                c = (np.full_like(a, j), np.full_like(a, k), a, prev, b)
                q = (hits[c] + 0.5) / (seen[c] + 1.0)
                hit = use & (x == v)
                cost += np.where(use, np.where(hit, -np.log2(q), -np.log2(1 - q)), 0)
                updates.append((tuple(cc[use] for cc in c), hit[use]))
                removed = np.where(use & ~hit, removed + p[:, 1 + j], removed)
                active &= ~hit
                hit_any |= hit
            done = hit_any
            cost += np.where(done, 0, -np.log2(px / np.maximum(1 - removed, 1e-12)))
            scheme_bits += np.where(ok, cost, -np.log2(px)).sum()
            prev_hit = hit_any.astype(np.int64)
        _count(hits, seen, updates)
    return model_bits, scheme_bits, image.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="photo_colour_nojpeg")
    parser.add_argument("--set", choices=("wikipedia_val", "aerials_val", "files"), default="wikipedia_val")
    parser.add_argument("--files", nargs="*", default=[])
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--count-limit", type=int, default=0)
    parser.add_argument("--inter", action="store_true", help="candidates 6, 7 from the channel coded before")
    parser.add_argument("--candidates", type=int, default=2,
                        help="second: how many of W, N, NE, NW, W + N - NW, WW, NN")
    parser.add_argument("--variant", choices=("flat", "activity", "second"), default="flat",
                        help="flat: the codec's contexts; activity: neighbour differences instead of equalities; "
                        "second: activity and a second flag for the upper neighbour")
    args = parser.parse_args()
    global LIMIT, INTER
    LIMIT, INTER = args.count_limit, args.inter
    model = ride.pretrained(args.model)
    if args.set == "files":
        images = [(Path(f).name, _rgb(f)) for f in args.files]
    else:
        images = wikipedia_whole(args.limit) if args.set == "wikipedia_val" else aerials_whole(args.limit)
    tot_m = tot_s = tot_n = 0.0
    for name, image in images:
        start = time.perf_counter()
        m, s, n = (probe(model, image) if args.variant == "flat"
                   else probe_two(model, image, args.variant == "second", args.candidates))
        tot_m, tot_s, tot_n = tot_m + m, tot_s + s, tot_n + n
        print(f"{name} {image.shape}: model {m / n:.4f}, with the flag {s / n:.4f} bits per sub-pixel "
              f"({100 * (s / m - 1):+.2f}%), {time.perf_counter() - start:.0f} s", flush=True)
    print(f"pooled: model {tot_m / tot_n:.4f}, with the flag {tot_s / tot_n:.4f} ({100 * (tot_s / tot_m - 1):+.2f}%)")
    assert math.isfinite(tot_s)


if __name__ == "__main__":
    main()
