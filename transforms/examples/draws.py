"""Seeded, keyed, vectorised uniform draws.

Every random draw of the examples stage is a pure function of (seed, run date,
a purpose, and stable keys of what is drawn): a rerun, another shard count or
another worker count gives the same draws, because no draw depends on a
generator's state or on the order in which rows reach a worker.

    base = base_key(seed, run_date, "negatives")       # one uint64 per purpose
    u = uniform(base, pair_key, draw_number, attempt)   # float64 in [0, 1) per row

A value depends only on the base and its own keys, never on its neighbours.
"""

import numpy as np
import pyarrow as pa

from transforms.common.sharding import mix64, stable_hash

# An odd multiplier (2^64 / golden ratio): multiplying by it is a bijection of
# uint64, so distinct keys stay distinct before each mix.
_KEY_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1
_TWO_POW_MINUS_53 = 1.0 / float(1 << 53)


def base_key(seed: int, run_date: str, purpose: str) -> np.uint64:
    """The uint64 that seeds every draw of one purpose on one run date:
    stable_hash of f"{seed}|{run_date}|{purpose}"."""
    return stable_hash(pa.array([f"{int(seed)}|{run_date}|{purpose}"], pa.string()))[0]


def _as_uint64(key) -> np.ndarray:
    if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
        return np.asarray(int(key) & _MASK64, dtype=np.uint64)
    arr = np.asarray(key)
    if arr.dtype == np.uint64:
        return arr
    if arr.dtype.kind not in "iu":
        raise TypeError(f"draw keys must be integer arrays, got dtype {arr.dtype}")
    # Signed keys wrap to their two's-complement bit pattern.
    return arr.astype(np.int64, copy=False).view(np.uint64)


def keyed_uint64(base, *keys) -> np.ndarray:
    """h = base; for each key k: h = mix64(h ^ k * 0x9E3779B97F4A7C15), vectorised.

    `keys` are uint64/int64 arrays or ints, broadcast against each other (int64 keys
    are taken as their bit pattern). With no key the result is `base` itself."""
    h = np.asarray(base, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in keys:
            h = mix64(h ^ (_as_uint64(key) * _KEY_MULTIPLIER))
    return np.asarray(h, dtype=np.uint64)


def uniform(base, *keys) -> np.ndarray:
    """float64 in [0, 1) from the top 53 bits of keyed_uint64(base, *keys)."""
    h = keyed_uint64(base, *keys)
    return (h >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53


def string_keys(strings) -> np.ndarray:
    """uint64 key of each string of an Arrow string array (stable_hash; nulls as '')."""
    return stable_hash(strings)
