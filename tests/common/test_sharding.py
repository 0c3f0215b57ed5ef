"""Tier 1: the stable string hash and row sharding."""

import pytest

import os
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa

from transforms.common import sharding
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.functions

M64 = (1 << 64) - 1
_POWERS = [pow(0x100000001B3, i, 1 << 64) for i in range(64)]


def _mix(h: int) -> int:
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & M64
    h ^= h >> 31
    return h


def reference_hash(text) -> int:
    """The documented hash, one string at a time, in Python integers."""
    data = (text or "").encode("utf-8")
    h = (len(data) * 0x9E3779B97F4A7C15) & M64
    for pos, byte in enumerate(data):
        h += (byte + 1) * _POWERS[pos & 63] * (1 + (pos >> 6) * 0x632BE59BD9B4E019)
    h &= M64
    return _mix(h)


def random_strings(rng: random.Random, n: int, null_rate: float = 0.0):
    alphabet = "abcXYZ019_-é한글😀"
    out = []
    for _ in range(n):
        if rng.random() < null_rate:
            out.append(None)
            continue
        length = rng.choice([0, 0, 0, 1, 1, 2, 3, 5, 8, 17, 63, 64, 65, 130])
        out.append("".join(rng.choice(alphabet) for _ in range(length)))
    return out


def test_empty_string_hashes_to_zero_and_empty_array_gives_empty_result():
    assert sharding.stable_hash(pa.array([""], pa.string())).tolist() == [0]
    out = sharding.stable_hash(pa.array([], pa.string()))
    assert out.dtype == np.uint64 and out.tolist() == []


def test_stable_hash_matches_the_reference_across_blocks():
    rng = random.Random(7)
    # More than one block of 16384 strings, with empty strings, nulls and strings over
    # 64 bytes (the byte-position multiplier wraps at 64).
    values = random_strings(rng, 20000, null_rate=0.05)
    got = sharding.stable_hash(pa.array(values, pa.string()))
    assert got.dtype == np.uint64
    assert got.tolist() == [reference_hash(v) for v in values]


def test_stable_hash_is_deterministic_and_ignores_slicing_chunking_and_string_type():
    rng = random.Random(11)
    values = random_strings(rng, 3000, null_rate=0.1)
    arr = pa.array(values, pa.string())
    whole = sharding.stable_hash(arr)
    assert sharding.stable_hash(arr).tolist() == whole.tolist()
    assert sharding.stable_hash(pa.array(values, pa.large_string())).tolist() == whole.tolist()
    for lo, hi in [(0, 1), (1, 2), (5, 17), (17, 2999), (1234, 3000), (2999, 3000)]:
        assert sharding.stable_hash(arr.slice(lo, hi - lo)).tolist() == whole[lo:hi].tolist()
    chunked = pa.chunked_array([arr.slice(0, 7), arr.slice(7, 0), arr.slice(7, 1000),
                                arr.slice(1007)])
    assert sharding.stable_hash(chunked).tolist() == whole.tolist()
    # A slice of a chunk of a sliced array.
    nested = pa.chunked_array([arr.slice(100, 50).slice(10, 20)])
    assert sharding.stable_hash(nested).tolist() == whole[110:130].tolist()


def test_nulls_hash_as_empty_string():
    got = sharding.stable_hash(pa.array([None, "", "a", None, ""], pa.string())).tolist()
    assert got[0] == got[1] == got[3] == got[4] == reference_hash("")
    assert got[2] == reference_hash("a") != got[0]
    assert sharding.stable_hash(pa.array([None, None], pa.string())).tolist() == [0, 0]


def test_distinct_short_strings_do_not_collide():
    values = [f"u{i}" for i in range(50000)] + ["a", "b", "ab", "ba", "aa", "a" * 64, "a" * 65]
    got = sharding.stable_hash(pa.array(values))
    assert len(np.unique(got)) == len(values)


def test_stable_hash_is_the_same_in_another_process():
    values = ["user-1", "", "사용자", "x" * 100]
    expected = sharding.stable_hash(pa.array(values)).tolist()
    code = ("import pyarrow as pa; from transforms.common import sharding; "
            f"print(sharding.stable_hash(pa.array({values!r})).tolist())")
    root = ROOT
    out = subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == str(expected)


def test_shard_ids_spread_roughly_uniformly():
    num_shards = 16
    ids = pa.array([f"user-{i:07d}" for i in range(100_000)])
    shards = sharding.shard_ids(ids, num_shards)
    assert shards.dtype == np.int64
    assert shards.min() >= 0 and shards.max() < num_shards
    counts = np.bincount(shards, minlength=num_shards)
    expected = 100_000 / num_shards
    assert counts.sum() == 100_000
    # 6250 per shard, sd about 77: every shard within 5 %, and a chi-square far below
    # the 0.001 critical value for 15 degrees of freedom (37.7).
    assert np.all(np.abs(counts - expected) < 0.05 * expected), counts.tolist()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 37.7, (chi2, counts.tolist())


def test_shard_ids_are_hash_mod_shards():
    values = ["a", "b", "", None, "user-42"]
    got = sharding.shard_ids(pa.array(values, pa.string()), 7).tolist()
    assert got == [reference_hash(v) % 7 for v in values]
    assert sharding.shard_ids(pa.array(values, pa.string()), 1).tolist() == [0] * 5


def test_split_by_shard_keeps_every_row_in_order():
    table = pa.table({"row": list(range(10)),
                      "user_id": ["u0", "u1", "u2", "u0", "u3", "u1", "u0", "u4", "u2", "u3"]})
    shards = np.array([2, 0, 2, 2, 4, 0, 2, 0, 2, 4], dtype=np.int64)
    got = [(shard, part.column("row").to_pylist())
           for shard, part in sharding.split_by_shard(table, shards, 5)]
    assert got == [(0, [1, 5, 7]), (2, [0, 2, 3, 6, 8]), (4, [4, 9])]
    for shard, part in sharding.split_by_shard(table, shards, 5):
        assert part.schema == table.schema


def test_split_by_shard_by_user_hash_groups_whole_users():
    rng = random.Random(3)
    users = [f"u{rng.randrange(40)}" for _ in range(500)]
    table = pa.table({"row": list(range(500)), "user_id": users})
    shards = sharding.shard_ids(table.column("user_id"), 4)
    parts = list(sharding.split_by_shard(table, shards, 4))
    rows = [r for _, part in parts for r in part.column("row").to_pylist()]
    assert sorted(rows) == list(range(500))
    seen = {}
    for shard, part in parts:
        assert part.column("row").to_pylist() == sorted(part.column("row").to_pylist())
        for user in part.column("user_id").to_pylist():
            assert seen.setdefault(user, shard) == shard
            assert reference_hash(user) % 4 == shard


def test_split_by_shard_of_an_empty_table_yields_nothing():
    table = pa.table({"user_id": pa.array([], pa.string())})
    assert list(sharding.split_by_shard(table, np.zeros(0, dtype=np.int64), 3)) == []
