"""Tier 1: the stable article index by a keyed join and a sample sort
(transforms/article_index.py).

Small literal inputs with exact expected outputs, and seeded randomized comparisons
with plain-Python references written here (dicts, lists and loops). Rules:
1. Index 0 is reserved; a known article keeps its index; an index < 1 or an article
   listed twice in the published index is an error.
2. New articles get start + their position among all new articles sorted by
   (frequency descending, id bytes ascending), start = largest known index + 1,
   however the articles are spread over partitions and id ranges.
3. Id ranges: splitters are every 16th distinct sampled id in byte order; an id's
   range is the number of splitters <= it (an id equal to a splitter goes right).
4. A node's region is its most frequent region, ties to the smaller id (byte order);
   null when no row had one.
"""

import collections
import random
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pytest

from transforms.common.sharding import stable_hash
from transforms.graph import article_index as ai
from transforms.graph.pairs import Part

pytestmark = pytest.mark.functions

ODD_IDS = ["B", "a", "é", "Z9", "", "ab", "a\x00", "\x7f", "\uff61", "\U0001F600", "中"]
ALPHABET = ["a", "b", "B", "Z", "9", "é", "ü", "中", "\U0001F600", "\x7f", "-"]


def key(text: str) -> bytes:
    return text.encode("utf-8")


def byte_sorted(values) -> List[str]:
    return sorted(set(values), key=key)


def random_ids(rng: random.Random, n: int) -> List[str]:
    out = list(ODD_IDS[:n])
    seen = set(out)
    while len(out) < n:
        s = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6)))
        if s not in seen:
            seen.add(s)
            out.append(s)
    rng.shuffle(out)
    return out


def random_frequency(rng: random.Random) -> int:
    """Many ties: mostly 1, then 2, a few larger."""
    r = rng.random()
    if r < 0.55:
        return 1
    if r < 0.75:
        return 2
    if r < 0.95:
        return rng.randint(3, 8)
    return rng.randint(9, 500)


def node_part(freq: Dict[str, int]) -> Part:
    ids = byte_sorted(freq)
    return Part(pa.array(ids, pa.string()),
                {"article": np.arange(len(ids), dtype=np.int32),
                 "frequency": np.array([freq[a] for a in ids], np.int64)}, ("article",))


def region_table(rows) -> pa.Table:
    return pa.table({"n": pa.array([r[0] for r in rows], pa.int64()),
                     "article_id": pa.array([r[1] for r in rows], pa.string()),
                     "region_id": pa.array([r[2] for r in rows], pa.string())})


def sample_reference(ids: List[str], rows_per_bucket: int) -> List[str]:
    """rows_per_bucket a power of two: the ids whose stable hash is below
    2**64 * 16 / rows_per_bucket (all of them from 16 down)."""
    if rows_per_bucket <= ai.SPLITTER_EVERY:
        threshold = 2**64 - 1
    else:
        threshold = 2**64 * ai.SPLITTER_EVERY // rows_per_bucket
    return [s for s in ids if int(stable_hash(pa.array([s], pa.string()))[0]) < threshold]


# ------------------------------------------------------------------ merge_nodes

def by_id(nodes: ai.Nodes) -> ai.Nodes:
    """merge_nodes gives its articles in no particular order: byte order, to compare."""
    ids = nodes.ids.to_pylist()
    order = sorted(range(len(ids)), key=lambda i: ids[i].encode())
    take = pa.array(order, pa.int64())
    return ai.Nodes(nodes.ids.take(take), nodes.frequency[order], nodes.region.take(take))


def test_merge_nodes_literal():
    shard1 = node_part({"B": 2, "a": 1})
    shard2 = node_part({"a": 3, "é": 4})
    regions = [region_table([(2, "B", "r9"), (1, "B", "r10"), (1, "a", "r2")]),
               region_table([(1, "B", "r10"), (1, "a", "r1"), (5, "zz", "r1")]),
               region_table([])]
    nodes = by_id(ai.merge_nodes([shard1, shard2], regions))
    assert nodes.ids.to_pylist() == ["B", "a", "é"]
    assert nodes.frequency.tolist() == [2, 4, 4]
    assert nodes.frequency.dtype == np.int64
    # B: r9 2, r10 2 -> r10 (byte order); a: r1 1, r2 1 -> r1; é: no region.
    assert nodes.region.to_pylist() == ["r10", "r1", None]


def test_merge_nodes_without_region_rows_and_of_nothing():
    nodes = by_id(ai.merge_nodes([node_part({"b": 1, "a": 2})], []))
    assert nodes.ids.to_pylist() == ["a", "b"]
    assert nodes.frequency.tolist() == [2, 1]
    assert nodes.region.to_pylist() == [None, None]
    assert nodes.region.type == pa.string()
    nothing = by_id(ai.merge_nodes([], []))
    assert nothing.ids.to_pylist() == [] and nothing.frequency.tolist() == []
    assert nothing.region.to_pylist() == []


def test_merge_nodes_randomized():
    rng = random.Random(11)
    for _ in range(30):
        pool = random_ids(rng, rng.randint(1, 25))
        regions_pool = ["r1", "r10", "r2", "R", "é"]
        parts, tables = [], []
        freq = collections.defaultdict(int)
        region_counts = collections.defaultdict(lambda: collections.defaultdict(int))
        for _ in range(rng.randint(1, 5)):
            local = {a: rng.randint(1, 9) for a in rng.sample(pool, rng.randint(1, len(pool)))}
            for a, f in local.items():
                freq[a] += f
            parts.append(node_part(local))
            rows = []
            for a in local:
                for _ in range(rng.randint(0, 2)):
                    r, n = rng.choice(regions_pool), rng.randint(1, 3)
                    rows.append((n, a, r))
                    region_counts[a][r] += n
            tables.append(region_table(rows))
        rng.shuffle(parts)
        nodes = by_id(ai.merge_nodes(parts, tables))
        ids = byte_sorted(freq)
        assert nodes.ids.to_pylist() == ids
        assert nodes.frequency.tolist() == [freq[a] for a in ids]
        expected_region = []
        for a in ids:
            if region_counts[a]:
                expected_region.append(sorted(region_counts[a].items(),
                                              key=lambda t: (-t[1], key(t[0])))[0][0])
            else:
                expected_region.append(None)
        assert nodes.region.to_pylist() == expected_region


# ------------------------------------------------------------------ join_known

def test_join_known_literal():
    nodes = ai.Nodes(pa.array(["B", "a", "é", "z"]), np.array([1, 2, 3, 4]),
                     pa.nulls(4, pa.string()))
    joined = ai.join_known(nodes, [(pa.array(["a", "q"]), np.array([5, 2])),
                                   (pa.array(["z"]), np.array([9])),
                                   (pa.array([], pa.string()), np.zeros(0, np.int64))])
    assert joined.known_ids.to_pylist() == ["a", "q", "z"]
    assert joined.known_index.tolist() == [5, 2, 9]
    assert joined.day_known.tolist() == [1, 3]
    assert joined.day_known_index.tolist() == [5, 9]
    assert joined.day_new.tolist() == [0, 2]


def test_join_known_with_nothing_known():
    nodes = ai.Nodes(pa.array(["", "é"]), np.array([1, 1]), pa.nulls(2, pa.string()))
    joined = ai.join_known(nodes, [])
    assert joined.known_ids.to_pylist() == [] and joined.known_index.tolist() == []
    assert joined.day_known.tolist() == [] and joined.day_known_index.tolist() == []
    assert joined.day_new.tolist() == [0, 1]


@pytest.mark.parametrize("bad", [0, -3])
def test_join_known_rejects_an_index_below_one(bad):
    nodes = ai.Nodes(pa.array(["a"]), np.array([1]), pa.nulls(1, pa.string()))
    with pytest.raises(ValueError, match="index < 1"):
        ai.join_known(nodes, [(pa.array(["a", "b"]), np.array([4, bad]))])
    with pytest.raises(ValueError, match="index < 1"):
        ai.join_known(nodes, [(pa.array(["b"]), np.array([2])),
                              (pa.array(["c"]), np.array([bad]))])


def test_join_known_rejects_an_article_listed_twice():
    nodes = ai.Nodes(pa.array(["a"]), np.array([1]), pa.nulls(1, pa.string()))
    with pytest.raises(ValueError, match="twice"):
        ai.join_known(nodes, [(pa.array(["x", "x"]), np.array([1, 2]))])
    with pytest.raises(ValueError, match="twice"):   # across chunks, not in the day
        ai.join_known(nodes, [(pa.array(["b", "é"]), np.array([1, 2])),
                              (pa.array(["é"]), np.array([3]))])
    with pytest.raises(ValueError, match="twice"):   # the same index twice is no excuse
        ai.join_known(nodes, [(pa.array(["a"]), np.array([7])),
                              (pa.array(["a"]), np.array([7]))])


def test_join_known_randomized():
    rng = random.Random(22)
    for _ in range(40):
        pool = random_ids(rng, rng.randint(1, 30))
        day = byte_sorted(rng.sample(pool, rng.randint(0, len(pool))))
        known_ids = rng.sample(pool, rng.randint(0, len(pool)))
        indexes = rng.sample(range(1, 1000), len(known_ids))
        known = dict(zip(known_ids, indexes))
        chunks, i = [], 0
        while i < len(known_ids):
            j = i + rng.randint(0, 5)
            chunks.append((pa.array(known_ids[i:j], pa.string()), np.array(indexes[i:j])))
            i = j
        nodes = ai.Nodes(pa.array(day, pa.string()), np.ones(len(day), np.int64),
                         pa.nulls(len(day), pa.string()))
        joined = ai.join_known(nodes, chunks)
        assert joined.known_ids.to_pylist() == known_ids
        assert joined.known_index.tolist() == indexes
        assert joined.day_known.tolist() == [p for p, a in enumerate(day) if a in known]
        assert joined.day_known_index.tolist() == [known[a] for a in day if a in known]
        assert joined.day_new.tolist() == [p for p, a in enumerate(day) if a not in known]


# ------------------------------------------------------------------ sampling and ranges

@pytest.mark.parametrize("rows_per_bucket", [1, 16, 32, 64, 256])
def test_sample_ids_against_the_hash_threshold(rows_per_bucket):
    rng = random.Random(33)
    ids = random_ids(rng, 600)
    got = ai.sample_ids(pa.array(ids, pa.string()), rows_per_bucket).to_pylist()
    expected = sample_reference(ids, rows_per_bucket)
    assert got == expected
    if rows_per_bucket <= 16:
        assert got == ids
    else:   # the rate is 16 / rows_per_bucket
        rate = 16 / rows_per_bucket
        assert abs(len(got) - rate * len(ids)) < 5 * (rate * len(ids)) ** 0.5 + 5
    # A pure function of each id: the sample of a split is the split of the sample.
    halves = [ids[:250], ids[250:]]
    assert [x for h in halves for x in ai.sample_ids(pa.array(h), rows_per_bucket)
            .to_pylist()] == expected


def test_splitters_from_sample_every_sixteenth_distinct_id_in_byte_order():
    sample = [f"{c}{i:02d}" for c in ("a", "B", "é") for i in range(12)]   # 36 ids
    sample = sample + sample[:10]   # duplicates do not count
    random.Random(44).shuffle(sample)
    ordered = byte_sorted(sample)
    assert ordered[0] == "B00" and ordered[12] == "a00" and ordered[24] == "é00"
    assert ai.splitters_from_sample(sample) == [ordered[15], ordered[31]]
    assert ai.splitters_from_sample(sample) == ["a03", "é07"]
    assert ai.splitters_from_sample(ordered[:15]) == []
    assert ai.splitters_from_sample(ordered[:16]) == [ordered[15]]
    assert ai.splitters_from_sample([]) == []


def test_bucket_of_byte_order_and_splitters_go_right():
    splitters = ["B", "a", "é"]
    ids = ["", "A", "B", "B\x00", "Z9", "a", "ab", "é", "中", "\U0001F600", "Ba"]
    got = ai.bucket_of(pa.array(ids), splitters)
    assert got.tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 1]
    assert got.dtype == np.int64
    assert ai.bucket_of(pa.array(ids), []).tolist() == [0] * len(ids)
    assert ai.bucket_of(pa.array([], pa.string()), splitters).tolist() == []


def test_bucket_of_randomized():
    rng = random.Random(55)
    for _ in range(30):
        pool = random_ids(rng, 80)
        splitters = byte_sorted(rng.sample(pool, rng.randint(0, 10)))
        ids = pool[: rng.randint(0, 80)]
        got = ai.bucket_of(pa.array(ids, pa.string()), splitters).tolist()
        assert got == [sum(1 for s in splitters if key(s) <= key(a)) for a in ids]


def test_cell_counts_and_offsets_literal():
    cells = ai.cell_counts(np.array([3, 1, 1, 3, 1, 7]), np.array([0, 1, 0, 0, 1, 2]))
    assert cells == {(3, 0): 2, (1, 1): 2, (1, 0): 1, (7, 2): 1}
    assert ai.cell_counts(np.zeros(0, np.int64), np.zeros(0, np.int64)) == {}
    offsets = ai.cell_offsets({(1, 0): 1, (1, 1): 2, (3, 0): 2, (2, 5): 1, (3, 2): 4})
    # frequency descending, then range: (3,0) (3,2) (2,5) (1,0) (1,1)
    assert offsets == {(3, 0): 0, (3, 2): 2, (2, 5): 6, (1, 0): 7, (1, 1): 8}
    assert ai.cell_offsets({}) == {}


def test_rank_new_literal():
    # Two ranges split at "b"; range 1 holds "b", "c", "é", "bb"; range 0 holds "a", "B".
    ids_0, f_0 = ["a", "B"], [1, 2]
    ids_1, f_1 = ["é", "b", "c", "bb"], [1, 2, 1, 1]
    cells = {(2, 0): 1, (1, 0): 1, (2, 1): 1, (1, 1): 3}
    offsets = ai.cell_offsets(cells)
    # all by (f desc, id bytes): B(2) b(2) a(1) bb(1) c(1) é(1) -> 10..15
    order, index = ai.rank_new(pa.array(ids_1), np.array(f_1), 1, offsets, 10)
    assert [ids_1[i] for i in order] == ["b", "bb", "c", "é"]
    assert index.tolist() == [11, 13, 14, 15]
    order, index = ai.rank_new(pa.array(ids_0), np.array(f_0), 0, offsets, 10)
    assert [ids_0[i] for i in order] == ["B", "a"]
    assert index.tolist() == [10, 12]
    order, index = ai.rank_new(pa.array([], pa.string()), np.zeros(0, np.int64), 0, offsets, 10)
    assert order.tolist() == [] and index.tolist() == []


# ------------------------------------------------------------------ the whole ranking

def random_day(rng: random.Random, n_known: int, n_day: int, n_new_only: int):
    """(known {id: index}, day frequency {id: f}): some day articles are known."""
    pool = random_ids(rng, n_known + n_new_only)
    known_ids = pool[:n_known]
    indexes = rng.sample(range(1, 4 * n_known + 10), n_known)
    known = dict(zip(known_ids, indexes))
    day_ids = rng.sample(known_ids, min(n_day, n_known)) + pool[n_known:]
    return known, {a: random_frequency(rng) for a in day_ids}


@pytest.mark.parametrize("rows_per_bucket", [32, 64, 128])
def test_new_articles_over_partitions_and_ranges_match_the_global_order(rows_per_bucket):
    rng = random.Random(1000 + rows_per_bucket)
    for trial in range(3):
        known, frequency = random_day(rng, 300, 200, 1600)
        start = max(known.values()) + 1
        n_partitions = rng.choice([3, 5, 8])
        partition = {a: rng.randrange(n_partitions) for a in list(known) + list(frequency)}
        # Day nodes per partition from several user shards' partials; known rows likewise.
        new_per_partition = []
        for p in range(n_partitions):
            day = {a: f for a, f in frequency.items() if partition[a] == p}
            parts = []
            for a, f in day.items():   # split each frequency over up to 3 shards
                cuts = sorted(rng.randint(0, f) for _ in range(2))
                for piece in (cuts[0], cuts[1] - cuts[0], f - cuts[1]):
                    if piece:
                        parts.append(node_part({a: piece}))
            rng.shuffle(parts)
            nodes = by_id(ai.merge_nodes(parts, []))
            assert nodes.ids.to_pylist() == byte_sorted(day)
            mine = [a for a in known if partition[a] == p]
            rng.shuffle(mine)
            chunks = [(pa.array(mine[i:i + 40], pa.string()),
                       np.array([known[a] for a in mine[i:i + 40]]))
                      for i in range(0, len(mine), 40)]
            joined = ai.join_known(nodes, chunks)
            ids = nodes.ids.to_pylist()
            assert [ids[i] for i in joined.day_known] == [a for a in ids if a in known]
            assert joined.day_known_index.tolist() == [known[a] for a in ids if a in known]
            new_ids = nodes.ids.take(pa.array(joined.day_new, pa.int64()))
            new_per_partition.append((new_ids, nodes.frequency[joined.day_new]))

        new = {a: f for a, f in frequency.items() if a not in known}
        assert sorted(new, key=key) == sorted(
            [a for ids, _ in new_per_partition for a in ids.to_pylist()], key=key)
        # Sample per partition, splitters from the union.
        sample = [a for ids, _ in new_per_partition
                  for a in ai.sample_ids(ids, rows_per_bucket).to_pylist()]
        assert sorted(sample, key=key) == sorted(sample_reference(list(new), rows_per_bucket),
                                                 key=key)
        splitters = ai.splitters_from_sample(sample)
        assert len(splitters) == len(set(sample)) // 16
        assert splitters == byte_sorted(sample)[15::16]
        # Ranges and cells per partition, cells merged.
        cells = collections.defaultdict(int)
        by_bucket = collections.defaultdict(list)
        for ids, freq in new_per_partition:
            bucket = ai.bucket_of(ids, splitters)
            for cell, n in ai.cell_counts(freq, bucket).items():
                cells[cell] += n
            for a, f, b in zip(ids.to_pylist(), freq.tolist(), bucket.tolist()):
                by_bucket[b].append((a, f))
        assert sum(cells.values()) == len(new)
        n_buckets = len(splitters) + 1
        assert sorted(by_bucket) == list(range(n_buckets))
        assert n_buckets >= {32: 40, 64: 20, 128: 9}[rows_per_bucket]
        offsets = ai.cell_offsets(dict(cells))
        # Rank each range over the union of its articles.
        got = {}
        for b, rows in by_bucket.items():
            rng.shuffle(rows)
            ids = pa.array([a for a, _ in rows], pa.string())
            freq = np.array([f for _, f in rows], np.int64)
            order, index = ai.rank_new(ids, freq, b, offsets, start)
            ranked = [rows[i] for i in order]
            assert ranked == sorted(rows, key=lambda t: (-t[1], key(t[0])))
            for (a, _), i in zip(ranked, index.tolist()):
                assert a not in got
                got[a] = i
        expected_order = sorted(new, key=lambda a: (-new[a], key(a)))
        assert got == {a: start + i for i, a in enumerate(expected_order)}
        assert sorted(got.values()) == list(range(start, start + len(new)))
        # Many ties: most new articles share frequency 1.
        assert sum(1 for f in new.values() if f == 1) > len(new) // 3
