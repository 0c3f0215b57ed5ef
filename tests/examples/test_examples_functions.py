"""Tier 1: the examples composite's plain functions (the pair cap, files for readers,
display properties, index lookups)."""

import pytest
import numpy as np
import pyarrow as pa

from transforms.examples import composite as ex, draws, params, shard, skipgram
from transforms.graph import index_store
from transforms.examples.example_proto import decode_example

pytestmark = pytest.mark.functions

PARAMS = params.ExampleParams(run_date="2026-11-26", day_start_us=0, day_end_us=86_400_000_000,
                          negatives=2, same_region_share=0.5, pairs_per_record=3)


def pairs_of(n, seed=3):
    rng = np.random.default_rng(seed)
    target = rng.integers(1, 6, n)
    context = (target % 5) + 1
    return {"target": target.astype(np.int64), "context": context.astype(np.int64),
            "side": (rng.random(n) < 0.3).astype(np.int8),
            "target_key": rng.integers(0, 2 ** 63, n).astype(np.uint64),
            "context_key": rng.integers(0, 2 ** 63, n).astype(np.uint64)}


def sampler():
    return skipgram.NegativeSampler(np.arange(1, 9), np.arange(1, 9) * 10,
                                    ["r1"] * 4 + ["r2"] * 4)


def decoded_pairs(batches):
    got = []
    for batch in batches:
        for record in batch.records.to_pylist():
            f = decode_example(record)
            n = len(f["negatives"][1]) // len(f["target"][1])
            got += [(batch.split, t, c, tuple(f["negatives"][1][i * n:(i + 1) * n]))
                    for i, (t, c) in enumerate(zip(f["target"][1], f["context"][1]))]
    return got


def test_the_pair_cap_keeps_exactly_the_pairs_drawn_below_the_rate():
    pairs = pairs_of(400)
    batches, counts = shard.skipgram_records(pairs, sampler(), 0.25, PARAMS)
    u = draws.uniform(draws.base_key(0, "2026-11-26", "cap"), pairs["target_key"],
                      pairs["context_key"])
    keep = u < 0.25
    expected = sorted(("eval" if s else "train", int(t), int(c))
                      for t, c, s in zip(pairs["target"][keep], pairs["context"][keep],
                                         pairs["side"][keep]))
    got = decoded_pairs(batches)
    assert sorted(g[:3] for g in got) == expected
    assert 60 < len(expected) < 140
    assert counts["skipgram_pairs_train"] + counts["skipgram_pairs_eval"] == len(expected)
    assert all(len(n) == 2 and t not in n and c not in n for _, t, c, n in got)
    # At rate 1 every pair is kept; records hold at most pairs_per_record pairs.
    batches, counts = shard.skipgram_records(pairs, sampler(), 1.0, PARAMS)
    assert len(decoded_pairs(batches)) == 400
    assert all(len(decode_example(r)["target"][1]) <= 3
               for b in batches for r in b.records.to_pylist())


def test_files_follow_the_bytes_and_a_file_is_in_key_order_whatever_the_arrival():
    assert shard.files_per_split({("ranking", "train"): 10, ("ranking", "eval"): 0,
                               ("skipgram", "train"): 25}, 10) == {
        ("ranking", "train"): 1, ("ranking", "eval"): 1, ("skipgram", "train"): 3}
    keys = np.array([9, 3, 7, 1, 12, 5], np.uint64)
    records = pa.array([b"r9", b"r3", b"r7", b"r1", b"r12", b"r5"], pa.large_binary())
    batch = shard.Batch("ranking", "train", keys, records)
    parts = list(shard.assign_files(batch, {("ranking", "train"): 2}))
    assert sorted(k for k, _ in parts) == [("ranking", "train", 0, 2), ("ranking", "train", 1, 2)]
    for key, (got_keys, got_records) in parts:
        assert all(int(k) % 2 == key[2] for k in got_keys)
    files = {}
    for key, value in parts:
        files.setdefault(key, []).append(value)
    # Split a file's part in two and deliver the halves in both orders: same file.
    key, [(k, r)] = next(iter(files.items()))
    halves = [(k[:1], r.slice(0, 1)), (k[1:], r.slice(1))]
    one = shard.order_file((key, halves))
    two = shard.order_file((key, halves[::-1]))
    assert one[0] == "ranking" and one[1][0] == "train" and one[1][1] == (key[2], 2)
    assert one[1][2].to_pylist() == two[1][2].to_pylist() == \
        [b"r%d" % v for v in sorted(int(x) for x in k)]


def test_display_properties_are_parsed_once_per_distinct_value():
    props = pa.array(['{"surface":"home_feed","position":3}', None, '{"position":"3"}',
                      '{"surface":7,"position":true}', '{"surface":"search"}', "[1, 2]",
                      '{"surface":"home_feed","position":3}', '{"surface":"made up"}'])
    surface, position = shard.parse_display_properties(props)
    # A surface outside the contract's values reads as "other" (never the string sent).
    assert surface.to_pylist() == ["home_feed", None, None, None, "search", None, "home_feed",
                                   "other"]
    assert position.tolist() == [3, -1, -1, -1, -1, -1, 3, -1]


def test_lookup_indexes_gives_0_for_unknown_and_null_ids():
    got = index_store.lookup_indexes(pa.array(["b", None, "z", "a"]), pa.array(["a", "b"]),
                            np.array([4, 9]))
    assert got.tolist() == [9, 0, 0, 4]
    assert index_store.lookup_indexes(pa.array(["a"]), pa.array([], pa.string()),
                             np.zeros(0, np.int64)).tolist() == [0]


def test_regions_of_looks_each_index_up_in_the_nodes_chunks():
    chunks = [(np.array([3, 1]), pa.array(["r3", None])), (np.array([5]), pa.array(["r5"]))]
    assert ex.regions_of(np.array([5, 1, 9, 3]), chunks) == ["r5", "", "", "r3"]
    assert ex.regions_of(np.array([2]), []) == [""]
    assert ex.regions_of(np.zeros(0, np.int64), chunks) == []
