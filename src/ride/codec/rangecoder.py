"""The range coder of every codec format, compiled: `constriction`'s queue coder (32-bit words, 64-bit state,
24-bit probabilities) written out in integers, so that the compiled kernels can code a front's symbols inside
their own loops instead of handing them to the Python extension call by call.

The streams are constriction's, word for word (tests code random symbol sequences with both and compare the
words and the decoded symbols): the frequencies g of a symbol's model (integers, sum 2^24 - r over its r symbols,
as the codec makes them) become g + 1, total exactly 2^24, which is what constriction's
`Categorical(perfect=False)` gives for them; the coder's state advances as constriction's
`stream::queue::RangeEncoder` and `RangeDecoder` do (lower and range of the interval in 64 bits, a word written
whenever range falls below 2^32, the words owed by a carry held back while lower + range wraps, and one or two
words that seal the stream).

Everything is unsigned 64-bit integer arithmetic that wraps, so no machine can code a symbol differently. State
lives in small NumPy arrays (`EncoderState`, `DecoderState`) that the kernels update in place.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # the torch backend codes with constriction itself
    numba = None

PRECISION = 24
_U = np.uint64
# encoder state slots: lower, range, words held back by an open carry, the first of them, words written
LOWER, RANGE, INVERTED, FIRST, POS = 0, 1, 2, 3, 4
# decoder state slots: lower, range, point, words read, words in the stream
POINT, READ, LENGTH = 2, 3, 4
#: decoder error: a quantile outside 2^24 (only corrupted data gets there)
INVALID = -1


def _jit(fn):  # noqa: ANN001, ANN202
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn) if numba is not None else fn


@_jit
def encode_symbol(state, words, cum, prob):  # noqa: ANN001, ANN201 - uint64 [5], uint32 [capacity], int64, int64
    """Code the symbol of left cumulative `cum` and probability `prob` (both in 2^-24, prob >= 1) into `words`
    (the caller keeps room for one more word than those held back, state[INVERTED])."""
    word_bits = _U(32)
    lower, rng = state[LOWER], state[RANGE]
    scale = rng >> _U(PRECISION)
    rng = scale * _U(prob)
    new_lower = lower + scale * _U(cum)  # wraps
    if state[INVERTED] != _U(0) and new_lower + rng > new_lower:  # the held-back carry is settled
        if new_lower < lower:
            first, rest = state[FIRST] + _U(1), _U(0)
        else:
            first, rest = state[FIRST], _U(0xFFFFFFFF)
        pos = state[POS]
        words[pos] = first
        pos += _U(1)
        for _ in range(1, np.int64(state[INVERTED])):
            words[pos] = rest
            pos += _U(1)
        state[POS] = pos
        state[INVERTED] = _U(0)
    lower = new_lower
    if rng < (_U(1) << word_bits):
        rng = rng << word_bits
        lower_word = lower >> word_bits
        lower = lower << word_bits
        if state[INVERTED] != _U(0):
            state[INVERTED] += _U(1)
        elif lower + rng > lower:
            words[state[POS]] = lower_word
            state[POS] += _U(1)
        else:
            state[INVERTED] = _U(1)
            state[FIRST] = lower_word
    state[LOWER], state[RANGE] = lower, rng


@_jit
def encode_frequencies(state, words, symbol, freqs):  # noqa: ANN001, ANN201 - int64, int64 [r] (or a row)
    """Code `symbol` of a model with integer frequencies freqs [r] (sum 2^24 - r; each coded as g + 1)."""
    cum = np.int64(symbol)
    for j in range(symbol):
        cum += np.int64(freqs[j])
    encode_symbol(state, words, cum, np.int64(freqs[symbol]) + 1)


@_jit
def _encode_rows(state, words, symbols, freqs):  # noqa: ANN001, ANN202
    for i in range(symbols.shape[0]):
        encode_frequencies(state, words, symbols[i], freqs[i])


@_jit
def seal(state, words):  # noqa: ANN001, ANN201
    """Write the words that end the stream (constriction's seal: the held-back words, the point's word, and a zero
    word where the point's and the upper end's words agree); returns the stream's length in words. The state is
    left as it was, so coding may not go on after it."""
    word_bits = _U(32)
    pos = state[POS]
    if state[RANGE] == _U(0xFFFFFFFFFFFFFFFF):  # nothing coded: an empty stream
        return np.int64(pos)
    lower = state[LOWER]
    point = lower + ((_U(1) << word_bits) - _U(1))
    if state[INVERTED] != _U(0):
        if point < lower:
            first, rest = state[FIRST] + _U(1), _U(0)
        else:
            first, rest = state[FIRST], _U(0xFFFFFFFF)
        words[pos] = first
        pos += _U(1)
        for _ in range(1, np.int64(state[INVERTED])):
            words[pos] = rest
            pos += _U(1)
    point_word = point >> word_bits
    words[pos] = point_word
    pos += _U(1)
    if ((lower + state[RANGE]) >> word_bits) == point_word:
        words[pos] = _U(0)
        pos += _U(1)
    return np.int64(pos)


@_jit
def _read_word(state, words):  # noqa: ANN001, ANN202
    """The next word of the stream, 0 past its end (as constriction reads nothing there)."""
    if state[READ] < state[LENGTH]:
        w = _U(words[state[READ]])
        state[READ] += _U(1)
        return w
    return _U(0)


@_jit
def start_decoder(state, words):  # noqa: ANN001, ANN201
    """Read the first two words into the point (constriction's read_point: a shorter stream is shifted up)."""
    state[LOWER], state[RANGE], state[READ] = _U(0), _U(0xFFFFFFFFFFFFFFFF), _U(0)
    point = _U(0)
    available = min(state[LENGTH], _U(2))
    for _ in range(np.int64(available)):
        point = (point << _U(32)) | _read_word(state, words)
    if available == _U(1):
        point = point << _U(32)
    state[POINT] = point


@_jit
def decode_frequencies(state, words, freqs):  # noqa: ANN001, ANN201 - int64 [r] (or a row)
    """The next symbol of a model with integer frequencies freqs [r] (sum 2^24 - r; each coded as g + 1), or
    INVALID where the stream cannot be the encoder's."""
    lower, rng = state[LOWER], state[RANGE]
    scale = rng >> _U(PRECISION)
    quantile = (state[POINT] - lower) // scale  # wraps as constriction's wrapping_sub
    if quantile >= (_U(1) << _U(PRECISION)):
        return np.int64(INVALID)
    q = np.int64(quantile)
    cum = np.int64(0)
    symbol = freqs.shape[0] - 1
    for j in range(freqs.shape[0]):
        g = np.int64(freqs[j]) + 1
        if q < cum + g:
            symbol = j
            break
        cum += g
    prob = np.int64(freqs[symbol]) + 1
    lower = lower + scale * _U(cum)
    rng = scale * _U(prob)
    if rng < (_U(1) << _U(32)):
        lower = lower << _U(32)
        rng = rng << _U(32)
        state[POINT] = (state[POINT] << _U(32)) | _read_word(state, words)
    state[LOWER], state[RANGE] = lower, rng
    return np.int64(symbol)


@_jit
def _decode_rows(state, words, freqs, out):  # noqa: ANN001, ANN202
    for i in range(freqs.shape[0]):
        s = decode_frequencies(state, words, freqs[i])
        if s < 0:
            return False
        out[i] = s
    return True


class CorruptStream(ValueError):
    """The range decoder met data that no encoder writes."""


class RangeEncoder:
    """A growing stream of 32-bit words and the coder's state; `encode(symbols, freqs)` codes rows of integer
    frequencies (as `engine` calls constriction's encoder), kernels code into `state` and `words` directly after
    `reserve`."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self.state = np.zeros(5, dtype=np.uint64)
        self.state[RANGE] = np.uint64(0xFFFFFFFFFFFFFFFF)
        self.words = np.zeros(max(16, capacity), dtype=np.uint32)

    def reserve(self, symbols: int) -> None:
        """Room for `symbols` more symbols (each writes at most one word, besides the held-back ones) and the
        seal."""
        need = int(self.state[POS]) + int(self.state[INVERTED]) + symbols + 4
        if need > self.words.shape[0]:
            grown = np.zeros(max(need, 2 * self.words.shape[0]), dtype=np.uint32)
            grown[: self.words.shape[0]] = self.words
            self.words = grown

    def encode(self, symbols: np.ndarray, freqs: np.ndarray) -> None:
        """Code symbols [m] (int) with the integer frequency rows freqs [m, r] (sum 2^24 - r each)."""
        symbols = np.ascontiguousarray(symbols, dtype=np.int64)
        self.reserve(symbols.shape[0])
        _encode_rows(self.state, self.words, symbols, np.ascontiguousarray(freqs, dtype=np.int64))

    def get_compressed(self) -> np.ndarray:
        """uint32 [words]: the sealed stream (the encoder's state is left as it was)."""
        self.reserve(0)
        return self.words[: seal(self.state, self.words)].copy()


class RangeDecoder:
    """The decoder of a `RangeEncoder`'s (or constriction's) stream of 32-bit words."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = np.ascontiguousarray(words, dtype=np.uint32)
        self.state = np.zeros(5, dtype=np.uint64)
        self.state[LENGTH] = np.uint64(self.words.shape[0])
        start_decoder(self.state, self.words)

    def decode(self, freqs: np.ndarray) -> np.ndarray:
        """int64 [m]: the next m symbols, with the integer frequency rows freqs [m, r]. CorruptStream where the
        data cannot be an encoder's."""
        freqs = np.ascontiguousarray(freqs, dtype=np.int64)
        out = np.empty(freqs.shape[0], dtype=np.int64)
        if not _decode_rows(self.state, self.words, freqs, out):
            raise CorruptStream("corrupted ride codec stream: the range decoder met data no encoder writes")
        return out
