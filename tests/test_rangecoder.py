"""The compiled range coder (`ride.codec.rangecoder`) against constriction's: the same words for the same symbols,
and its decoder reads constriction's streams back."""

from __future__ import annotations

import constriction
import numpy as np
import pytest

from ride.codec import kernels, rangecoder

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the compiled range coder needs numba")
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def _tables(rng: np.random.Generator, m: int, radix: int, concentration: float) -> np.ndarray:
    """int64 [m, radix]: random frequency rows with the codec's sum 2^24 - radix (zeros included)."""
    free = (1 << 24) - radix
    p = rng.dirichlet(np.full(radix, concentration), size=m)
    cum = np.floor(np.cumsum(p, 1) * free).astype(np.int64)
    cum[:, -1] = free
    return np.diff(np.concatenate([np.zeros((m, 1), np.int64), cum], 1), 1)


def _symbols(rng: np.random.Generator, freqs: np.ndarray) -> np.ndarray:
    """Mostly drawn from the rows' distributions, one in five uniform (improbable symbols too)."""
    p = (freqs + 1) / (1 << 24)
    drawn = (rng.random((freqs.shape[0], 1)) > np.cumsum(p, 1)).sum(1)
    uniform = rng.integers(0, freqs.shape[1], freqs.shape[0])
    return np.where(rng.random(freqs.shape[0]) < 0.8, np.minimum(drawn, freqs.shape[1] - 1), uniform)


@pytest.mark.parametrize("seed", range(6))
def test_same_words_as_constriction_and_decodes_both(seed: int) -> None:
    rng = np.random.default_rng(seed)
    theirs, ours = constriction.stream.queue.RangeEncoder(), rangecoder.RangeEncoder(capacity=16)
    chunks = []
    for _ in range(40):  # chunks of different radices, as a front's flags and digits alternate
        radix = int(rng.choice([2, 4, 16, 256]))
        freqs = _tables(rng, int(rng.integers(0, 300)), radix, float(rng.choice([0.01, 0.1, 1.0])))
        symbols = _symbols(rng, freqs)
        theirs.encode(symbols.astype(np.int32), _CATEGORICAL, freqs.astype(np.float64))
        ours.encode(symbols, freqs)
        chunks.append((symbols, freqs))
    words = np.asarray(theirs.get_compressed(), dtype=np.uint32)
    assert np.array_equal(ours.get_compressed(), words)
    assert np.array_equal(ours.get_compressed(), words)  # sealing leaves the encoder as it was
    decoder = rangecoder.RangeDecoder(words)
    for symbols, freqs in chunks:
        assert np.array_equal(decoder.decode(freqs), symbols)


def test_carries_held_back() -> None:
    """Near-certain symbols shrink the range a little at a time, so lower + range wraps often: the words held back
    by an open carry must come out as constriction writes them."""
    rng = np.random.default_rng(7)
    freqs = np.zeros((200_000, 2), dtype=np.int64)
    freqs[:, 1] = rng.integers(0, 64, freqs.shape[0])
    freqs[:, 0] = (1 << 24) - 2 - freqs[:, 1]
    symbols = (rng.random(freqs.shape[0]) < 0.002).astype(np.int64)
    theirs, ours = constriction.stream.queue.RangeEncoder(), rangecoder.RangeEncoder()
    theirs.encode(symbols.astype(np.int32), _CATEGORICAL, freqs.astype(np.float64))
    ours.encode(symbols, freqs)
    held = 0
    for cut in range(0, freqs.shape[0], 5_000):  # the state crosses an open carry somewhere in here
        partial = rangecoder.RangeEncoder()
        partial.encode(symbols[:cut], freqs[:cut])
        held += int(partial.state[rangecoder.INVERTED] > 0)
    words = np.asarray(theirs.get_compressed(), dtype=np.uint32)
    assert np.array_equal(ours.get_compressed(), words)
    assert np.array_equal(rangecoder.RangeDecoder(words).decode(freqs), symbols)
    assert held > 0, "no open carry was met: the test does not reach the held-back words"


def test_empty_and_short_streams() -> None:
    assert rangecoder.RangeEncoder().get_compressed().size == 0
    one = rangecoder.RangeEncoder()
    one.encode(np.array([1]), np.array([[(1 << 24) - 4 - 5, 5, 0, 0]]))
    theirs = constriction.stream.queue.RangeEncoder()
    theirs.encode(np.array([1], dtype=np.int32), _CATEGORICAL, np.array([[(1 << 24) - 9.0, 5, 0, 0]]))
    words = np.asarray(theirs.get_compressed(), dtype=np.uint32)
    assert np.array_equal(one.get_compressed(), words)
    assert rangecoder.RangeDecoder(words).decode(np.array([[(1 << 24) - 9, 5, 0, 0]]))[0] == 1


def test_corrupt_data_is_refused_or_decodes_deterministically() -> None:
    """Garbage words either decode to some symbols (the range coder is not injective) or raise CorruptStream;
    never anything else."""
    rng = np.random.default_rng(3)
    freqs = _tables(rng, 2000, 4, 0.3)
    for _ in range(50):
        words = rng.integers(0, 1 << 32, int(rng.integers(0, 40)), dtype=np.uint64).astype(np.uint32)
        try:
            out = rangecoder.RangeDecoder(words).decode(freqs)
        except rangecoder.CorruptStream:
            continue
        assert out.min() >= 0 and out.max() < 4
