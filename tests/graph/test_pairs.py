"""Tier 1: the article-keyed parts of the co-occurrence graph (transforms/pairs.py).

Small literal inputs with exact expected outputs, and seeded randomized comparisons
with plain-Python references written here (dicts, lists and loops; nothing shared
with transforms/). The partition of an article id is, by definition,
`shard_ids(pa.array([id]), n)[0]`.

Rules checked:
1. Dictionaries are the sorted distinct ids in UTF-8 byte order; codes are positions.
2. A part's dictionary holds exactly the ids its code columns use.
3. Merging parts from any split of the users into shards, in any order, gives the
   same distinct pairs, integer counts per class and marginals as counting at once.
4. Weighted counts are sum_k n_k * w_k in class order over exact integer n_k, so they
   are bit-identical whatever the split and the order of the parts.
5. mirrored_edges sends each kept (a, b) to b's partition as (b, a) with c(a) (the
   marginal before the min filter); rank_edges weighs (ppmi, count, jaccard, cosine),
   drops ppmi-0 edges and keeps each source's top k by rank value descending, then
   destination id bytes, weights stored float32.
"""

import collections
import math
import random
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pytest

from tests.helpers import graph_reference
from transforms.common.sharding import shard_ids
from transforms.graph import pairs

pytestmark = pytest.mark.functions

INTERACTIONS = ("article_view", "article_like", "chat_start")
# Weights whose products and sums are not exact in float64: a sum in another order
# or grouping would differ in the last bits.
WEIGHTS = {"article_view": 0.1, "article_like": 0.7, "chat_start": 1.3}
WEIGHT_SETS = {
    "unweighted": None,
    "distinct": WEIGHTS,
    "two_equal": {"article_view": 0.1, "article_like": 1.3, "chat_start": 0.1},
    "uniform_one": {"article_view": 1.0, "article_like": 1.0, "chat_start": 1.0},
    "uniform_two": {"article_view": 2.0, "article_like": 2.0, "chat_start": 2.0},
}
# Ids whose byte order differs from a case-insensitive or locale order, prefixes,
# the empty id and multi-byte UTF-8.
ODD_IDS = ["B", "a", "é", "Z9", "", "ab", "a\x00", "\x7f", "\uff61", "\U0001F600", "中"]
ALPHABET = ["a", "b", "B", "Z", "9", "é", "ü", "中", "\U0001F600", "\x7f"]


def key(text: str) -> bytes:
    return text.encode("utf-8")


def byte_sorted(values) -> List[str]:
    return sorted(set(values), key=key)


def partition_of(article: str, n: int) -> int:
    return int(shard_ids(pa.array([article], pa.string()), n)[0])


def random_ids(rng: random.Random, n: int) -> List[str]:
    """n distinct ids from ODD_IDS then random strings of the alphabet."""
    out = list(ODD_IDS[:n])
    seen = set(out)
    while len(out) < n:
        s = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 4)))
        if s not in seen:
            seen.add(s)
            out.append(s)
    rng.shuffle(out)
    return out


def decode(ids: pa.Array, codes) -> List[str]:
    values = ids.cast(pa.string()).to_pylist()
    return [values[int(c)] for c in codes]


def part_rows(part: pairs.Part) -> List[tuple]:
    """Rows of a part with code columns decoded to ids, columns in name order."""
    names = sorted(part.cols)
    cols = [decode(part.ids, part.cols[n]) if n in part.codes else part.cols[n].tolist()
            for n in names]
    return list(zip(*cols)) if cols else []


def assert_compact(part: pairs.Part):
    """The dictionary is distinct and exactly the ids the codes use."""
    ids = part.ids.cast(pa.string()).to_pylist()
    assert len(set(ids)) == len(ids)
    used = set()
    for name in part.codes:
        used.update(decode(part.ids, part.cols[name]))
    assert set(ids) == used


def same_bits(got: np.ndarray, expected: List[float]) -> bool:
    return np.asarray(got, np.float64).tobytes() == np.array(expected, np.float64).tobytes()


# ------------------------------------------------------------------ the references

class RefClasses:
    """Weight classes by hand: sorted distinct weights, pair classes (lo, hi) in
    lexicographic order, their products w_lo * w_hi."""

    def __init__(self, weights: Optional[Dict[str, float]]):
        if not weights:
            self.distinct = [1.0]
            self.of_event = {name: 0 for name in INTERACTIONS}
        else:
            self.distinct = sorted(set(weights.values()))
            self.of_event = {name: self.distinct.index(w) for name, w in weights.items()}
        m = len(self.distinct)
        self.pairs = [(lo, hi) for lo in range(m) for hi in range(lo, m)]
        self.products = [self.distinct[lo] * self.distinct[hi] for lo, hi in self.pairs]
        self.index = {pair: k for k, pair in enumerate(self.pairs)}

    def pair(self, ci: int, cj: int) -> int:
        return self.index[(min(ci, cj), max(ci, cj))]

    def weigh(self, per_class: Dict[int, int]) -> float:
        total = 0.0
        for k, product in enumerate(self.products):
            total += float(per_class.get(k, 0)) * product
        return total


def reference_class_counts(sessions, window: int, ref: RefClasses):
    """sessions: lists of (article, event) positions (no consecutive repeats) ->
    {(a, b): {class: n}} over ordered pairs of positions i != j, |i - j| <= window,
    different articles."""
    counts = collections.defaultdict(lambda: collections.defaultdict(int))
    for s in sessions:
        for i in range(len(s)):
            for j in range(max(0, i - window), min(len(s), i + window + 1)):
                if i != j and s[i][0] != s[j][0]:
                    cls = ref.pair(ref.of_event[s[i][1]], ref.of_event[s[j][1]])
                    counts[(s[i][0], s[j][0])][cls] += 1
    return counts


# The weightings' formulas: the one reference of the graph rules.
reference_weight = graph_reference.edge_weight


def reference_rank(candidates: Dict[str, List[tuple]], rank_by: str, top_k: int):
    """{src: [(dst, count, weight32)]} -> {(src, dst): (count, weight32)} of the top k."""
    edges = {}
    for a, items in candidates.items():
        if rank_by == "weight":
            ordered = sorted(items, key=lambda t: (-t[2], key(t[0])))
        else:
            ordered = sorted(items, key=lambda t: (-t[1], key(t[0])))
        for b, c, w in ordered[:top_k]:
            edges[(a, b)] = (c, w)
    return edges


def reference_graph(class_counts, ref: RefClasses, weighted: bool, min_pair_count: int,
                    weighting: str, rank_by: str, top_k: int):
    """Ranked edges {(a, b): (count, float32 weight)} of {(a, b): {class: n}}."""
    source_classes = collections.defaultdict(lambda: collections.defaultdict(int))
    class_totals = collections.defaultdict(int)
    for (a, _), per_class in class_counts.items():
        for k, n in per_class.items():
            source_classes[a][k] += n
            class_totals[k] += n
    if weighted:
        marginal = {a: ref.weigh(pc) for a, pc in source_classes.items()}
        total = ref.weigh(class_totals)
    else:
        marginal = {a: sum(pc.values()) for a, pc in source_classes.items()}
        total = sum(class_totals.values())
    candidates = collections.defaultdict(list)
    for (a, b), per_class in class_counts.items():
        c = sum(per_class.values())
        if c < min_pair_count:
            continue
        measure = ref.weigh(per_class) if weighted else c
        w = reference_weight(weighting, measure, marginal[a], marginal[b], total)
        if weighting == "ppmi" and w == 0.0:
            continue
        candidates[a].append((b, c, float(np.float32(w))))
    return reference_rank(candidates, rank_by, top_k)


def ranked_dict(ranked: pairs.RankedEdges) -> Dict[Tuple[str, str], Tuple[int, float]]:
    src = [s.decode("utf-8") for s in ranked.src_ids.to_pylist()]
    dst = [s.decode("utf-8") for s in ranked.dst_ids.to_pylist()]
    assert ranked.weight.dtype == np.float32
    out = {}
    for a, b, c, w in zip(src, dst, ranked.count.tolist(), ranked.weight.tolist()):
        assert (a, b) not in out
        out[(a, b)] = (int(c), float(w))
    return out


def ranked_order_ok(ranked: pairs.RankedEdges, rank_by: str):
    """Rows are grouped by source, then in rank order within each source."""
    src = ranked.src_ids.to_pylist()
    dst = ranked.dst_ids.to_pylist()
    value = ranked.weight.tolist() if rank_by == "weight" else ranked.count.tolist()
    for i in range(1, len(src)):
        assert src[i - 1] <= src[i]
        if src[i - 1] == src[i]:
            assert (-value[i - 1], dst[i - 1]) < (-value[i], dst[i])


# ------------------------------------------------------------------ compact / split / merge

def test_compact_part_keeps_only_the_used_ids():
    ids = pa.array(["", "B", "Z9", "a", "ab", "é"])
    cols = {"src": np.array([5, 1, 5]), "dst": np.array([1, 1, 3]),
            "w": np.array([10, 20, 30])}
    part = pairs.compact_part(ids, cols, ("src", "dst"))
    assert part.ids.to_pylist() == ["B", "a", "é"]
    assert part.cols["src"].tolist() == [2, 0, 2]
    assert part.cols["dst"].tolist() == [0, 0, 1]
    assert part.cols["w"].tolist() == [10, 20, 30]
    # Codes in the narrowest unsigned type for the dictionary's size.
    assert part.cols["src"].dtype == np.uint8
    assert part.codes == ("src", "dst")
    assert part.num_rows == 3


@pytest.mark.parametrize("size, dtype", [(1, np.uint8), (256, np.uint8), (257, np.uint16),
                                         (65536, np.uint16), (65537, np.uint32),
                                         (2**32, np.uint32), (2**32 + 1, np.int64)])
def test_narrow_picks_the_smallest_type_that_holds_the_size(size, dtype):
    values = np.array([0, size - 1], np.int64)
    narrowed = pairs.narrow(values, size)
    assert narrowed.dtype == dtype
    assert narrowed.tolist() == [0, size - 1]


def test_compact_part_of_no_rows():
    ids = pa.array(["a", "b"])
    part = pairs.compact_part(ids, {"src": np.zeros(0, np.int64), "c": np.zeros(0)}, ("src",))
    assert part.ids.to_pylist() == []
    assert part.cols["src"].tolist() == [] and part.cols["c"].tolist() == []
    assert part.num_rows == 0


def test_compact_part_randomized():
    rng = random.Random(202)
    for _ in range(50):
        pool = byte_sorted(random_ids(rng, rng.randint(1, 25)))
        n = rng.randint(0, 40)
        cols = {"src": np.array([rng.randrange(len(pool)) for _ in range(n)], np.int64),
                "dst": np.array([rng.randrange(len(pool)) for _ in range(n)], np.int64),
                "count": np.array([rng.randint(1, 9) for _ in range(n)], np.int64)}
        part = pairs.compact_part(pa.array(pool, pa.string()), cols, ("src", "dst"))
        expected_rows = [(int(c), pool[d], pool[s]) for s, d, c in
                         zip(cols["src"], cols["dst"], cols["count"])]
        assert part_rows(part) == expected_rows
        assert part.ids.to_pylist() == byte_sorted(
            [pool[i] for i in cols["src"]] + [pool[i] for i in cols["dst"]])
        assert_compact(part)


def test_split_part_literal():
    ids = pa.array(["", "B", "Z9", "a", "é"])
    cols = {"src": np.array([0, 4, 1, 4, 2]), "dst": np.array([1, 1, 3, 0, 4]),
            "n": np.array([1, 2, 3, 4, 5])}
    target = np.array([7, 2, 7, 2, 0])
    got = list(pairs.split_part(ids, cols, ("src", "dst"), target))
    assert [t for t, _ in got] == [0, 2, 7]
    assert [part_rows(p) for _, p in got] == [
        [("é", 5, "Z9")],
        [("B", 2, "é"), ("", 4, "é")],
        [("B", 1, ""), ("a", 3, "B")],
    ]
    assert [p.ids.to_pylist() for _, p in got] == [["Z9", "é"], ["", "B", "é"],
                                                   ["", "B", "a"]]


def test_split_part_of_no_rows_yields_nothing():
    assert list(pairs.split_part(pa.array(["a"]), {"src": np.zeros(0, np.int64)}, ("src",),
                                 np.zeros(0, np.int64))) == []


def test_split_part_randomized():
    rng = random.Random(303)
    for _ in range(40):
        pool = byte_sorted(random_ids(rng, rng.randint(1, 20)))
        n = rng.randint(1, 50)
        src = [rng.randrange(len(pool)) for _ in range(n)]
        val = [rng.randint(0, 100) for _ in range(n)]
        target = [rng.randrange(5) for _ in range(n)]
        got = list(pairs.split_part(pa.array(pool), {"src": np.array(src), "v": np.array(val)},
                                    ("src",), np.array(target)))
        expected = collections.defaultdict(list)
        for s, v, t in zip(src, val, target):
            expected[t].append((pool[s], v))
        assert [t for t, _ in got] == sorted(expected)
        for t, part in got:
            assert part_rows(part) == expected[t]
            assert_compact(part)


def test_merge_dictionaries_literal():
    merged, maps = pairs.merge_dictionaries(
        [pa.array(["B", "a"]), pa.array(["", "a", "é"]), pa.array([], pa.string())])
    assert merged.to_pylist() == ["", "B", "a", "é"]
    assert [m.tolist() for m in maps] == [[1, 2], [0, 2, 3], []]


def test_merge_dictionaries_of_nothing_and_of_binary():
    merged, maps = pairs.merge_dictionaries([])
    assert merged.to_pylist() == [] and maps == []
    merged, maps = pairs.merge_dictionaries([pa.array([b"ab", b"b"], pa.binary())])
    assert merged.to_pylist() == ["ab", "b"]
    assert [m.tolist() for m in maps] == [[0, 1]]


def test_merge_dictionaries_randomized():
    rng = random.Random(404)
    for _ in range(40):
        pool = random_ids(rng, rng.randint(1, 30))
        dicts = [byte_sorted(rng.sample(pool, rng.randint(0, len(pool))))
                 for _ in range(rng.randint(1, 5))]
        merged, maps = pairs.merge_dictionaries([pa.array(d, pa.string()) for d in dicts])
        expected = byte_sorted([x for d in dicts for x in d])
        assert merged.to_pylist() == expected
        assert [m.tolist() for m in maps] == [[expected.index(x) for x in d] for d in dicts]


def test_merge_parts_literal():
    p1 = pairs.Part(pa.array(["B", "a"]), {"src": np.array([1, 0], np.int32),
                                           "c": np.array([5, 6])}, ("src",))
    p2 = pairs.Part(pa.array(["", "é"]), {"src": np.array([1, 0, 1], np.int32),
                                          "c": np.array([7, 8, 9])}, ("src",))
    empty = pairs.Part(pa.array([], pa.string()), {"src": np.zeros(0, np.int32),
                                                   "c": np.zeros(0, np.int64)}, ("src",))
    merged = pairs.merge_parts([empty, p1, empty, p2], ("src",))
    assert merged.ids.to_pylist() == ["", "B", "a", "é"]
    assert merged.cols["src"].tolist() == [2, 1, 3, 0, 3]
    assert merged.cols["c"].tolist() == [5, 6, 7, 8, 9]
    nothing = pairs.merge_parts([empty], ("src",))
    assert nothing.ids.to_pylist() == [] and nothing.num_rows == 0


def test_merge_parts_randomized():
    rng = random.Random(505)
    for _ in range(40):
        pool = random_ids(rng, rng.randint(1, 25))
        parts, rows = [], []
        for _ in range(rng.randint(1, 6)):
            n = rng.randint(0, 12)
            r = [(rng.choice(pool), rng.choice(pool), rng.randint(1, 50)) for _ in range(n)]
            rows.extend(r)
            local = byte_sorted([x for a, b, _ in r for x in (a, b)])
            parts.append(pairs.Part(
                pa.array(local, pa.string()),
                {"src": np.array([local.index(a) for a, _, _ in r], np.int32),
                 "dst": np.array([local.index(b) for _, b, _ in r], np.int32),
                 "count": np.array([c for _, _, c in r], np.int64)}, ("src", "dst")))
        merged = pairs.merge_parts(parts, ("src", "dst"))
        assert merged.ids.to_pylist() == byte_sorted([x for a, b, _ in rows for x in (a, b)])
        assert part_rows(merged) == [(c, b, a) for a, b, c in rows]


# ------------------------------------------------------------------ weight classes

def test_weight_classes_literal():
    classes = pairs.weight_classes({"article_view": 1.0, "article_like": 3.0,
                                    "chat_start": 5.0})
    assert classes.of_event == {"article_view": 0, "article_like": 1, "chat_start": 2}
    assert classes.weights.tolist() == [1.0, 3.0, 5.0]
    assert classes.products.tolist() == [1.0, 3.0, 5.0, 9.0, 15.0, 25.0]
    assert classes.num_pair_classes == 6


def test_weight_classes_equal_weights_share_a_class():
    classes = pairs.weight_classes({"article_view": 1.5, "article_like": 0.5,
                                    "chat_start": 1.5})
    assert classes.of_event == {"article_view": 1, "article_like": 0, "chat_start": 1}
    assert classes.weights.tolist() == [0.5, 1.5]
    assert classes.products.tolist() == [0.25, 0.75, 2.25]


def test_weight_classes_unweighted_is_one_class_of_product_one():
    for weights in (None, {}):
        classes = pairs.weight_classes(weights)
        assert classes.of_event == {}
        assert classes.weights.tolist() == [1.0]
        assert classes.products.tolist() == [1.0]
        assert classes.num_pair_classes == 1


def test_weight_classes_against_the_reference():
    for weights in WEIGHT_SETS.values():
        if not weights:
            continue
        got, ref = pairs.weight_classes(weights), RefClasses(weights)
        assert got.of_event == ref.of_event
        assert got.weights.tolist() == ref.distinct
        assert same_bits(got.products, ref.products)


def test_pair_class_enumerates_unordered_class_pairs():
    for m in range(1, 6):
        order = [(lo, hi) for lo in range(m) for hi in range(lo, m)]
        ci = np.array([i for i in range(m) for _ in range(m)])
        cj = np.array([j for _ in range(m) for j in range(m)])
        got = pairs.pair_class(ci, cj, m).tolist()
        assert got == [order.index((min(i, j), max(i, j))) for i, j in zip(ci, cj)]
        assert sorted(set(got)) == list(range(m * (m + 1) // 2))


def test_weighted_sum_is_the_class_order_sum_to_the_last_bit():
    counts = np.array([[1, 2, 3], [0, 0, 0], [7, 0, 11]], dtype=np.int64)
    products = np.array([0.1, 0.2, 0.3])
    got = pairs.weighted_sum(counts, products)
    assert same_bits(got, [((0.0 + 0.1) + 2 * 0.2) + 3 * 0.3, 0.0, (7 * 0.1 + 0.0) + 11 * 0.3])
    assert pairs.weighted_sum(np.zeros((0, 3), np.int64), products).tolist() == []


def test_weighted_sum_randomized():
    rng = random.Random(606)
    for _ in range(30):
        k = rng.randint(1, 6)
        products = [rng.uniform(0.01, 10.0) for _ in range(k)]
        counts = [[rng.randint(0, 10**9) for _ in range(k)] for _ in range(rng.randint(1, 20))]
        got = pairs.weighted_sum(np.array(counts, np.int64), np.array(products))
        expected = []
        for row in counts:
            total = 0.0
            for n, p in zip(row, products):
                total += float(n) * p
            expected.append(total)
        assert same_bits(got, expected)


# ------------------------------------------------------------------ counting pairs

def test_count_pairs_literal():
    got = pairs.count_pairs(np.array([2, 0, 2, 0, 2]), np.array([1, 1, 1, 1, 0]),
                            np.array([1, 0, 0, 0, 1]), np.array([1, 2, 3, 4, 5]), 3, 2)
    assert got["src"].tolist() == [0, 2, 2, 2]
    assert got["dst"].tolist() == [1, 0, 1, 1]
    assert got["cls"].tolist() == [0, 1, 0, 1]
    assert got["count"].tolist() == [6, 5, 3, 1]
    assert got["count"].dtype == np.int64


def test_count_pairs_of_nothing():
    empty = np.zeros(0, np.int64)
    got = pairs.count_pairs(empty, empty, empty, empty, 4, 3)
    assert all(len(v) == 0 for v in got.values())


def test_count_pairs_randomized():
    rng = random.Random(707)
    for _ in range(40):
        n_ids, n_classes = rng.randint(1, 12), rng.choice([1, 3, 6])
        n = rng.randint(0, 80)
        rows = [(rng.randrange(n_ids), rng.randrange(n_ids), rng.randrange(n_classes),
                 rng.randint(1, 2**40)) for _ in range(n)]
        expected = collections.Counter()
        for s, d, c, k in rows:
            expected[(s, d, c)] += k
        cols = [np.array([r[i] for r in rows], np.int64) for i in range(4)]
        got = pairs.count_pairs(*cols, n_ids, n_classes)
        assert list(zip(got["src"].tolist(), got["dst"].tolist(), got["cls"].tolist(),
                        got["count"].tolist())) == \
            [(s, d, c, expected[(s, d, c)]) for s, d, c in sorted(expected)]


def test_shard_pair_part_counts_both_directions_per_pair_class():
    # Positions: A(class 0) B(class 1) A(class 1) C(class 0); pairs (0,1), (1,2), (0,3).
    article = np.array([0, 1, 0, 2])
    wclass = np.array([0, 1, 1, 0])
    got = pairs.shard_pair_part(article, wclass, np.array([0, 1, 0]), np.array([1, 2, 3]),
                                3, 2)
    rows = list(zip(got["src"].tolist(), got["dst"].tolist(), got["cls"].tolist(),
                    got["count"].tolist()))
    # Classes of 2 weights: (0,0)=0, (0,1)=1, (1,1)=2.
    assert rows == [(0, 1, 1, 1), (0, 1, 2, 1), (0, 2, 0, 1),
                    (1, 0, 1, 1), (1, 0, 2, 1), (2, 0, 0, 1)]


def test_shard_pair_part_unweighted_is_one_class():
    # A B A B with window 3: position pairs (0,1) (1,2) (2,3) (0,3) of different
    # articles; each counts for (A, B) and (B, A).
    got = pairs.shard_pair_part(np.array([0, 1, 0, 1]), np.zeros(4, np.int64),
                                np.array([0, 1, 2, 0]), np.array([1, 2, 3, 3]), 2, 1)
    rows = list(zip(got["src"].tolist(), got["dst"].tolist(), got["cls"].tolist(),
                    got["count"].tolist()))
    assert rows == [(0, 1, 0, 4), (1, 0, 0, 4)]


# ------------------------------------------------------------------ random sessions

def random_sessions(rng: random.Random, n_users: int, pool: List[str]):
    """{user: [session, ...]}; a session is a list of (article, event), no consecutive
    repeats of an article (already collapsed)."""
    hot = pool[: max(2, len(pool) // 4)]
    users = {}
    for u in range(n_users):
        sessions = []
        for _ in range(rng.randint(1, 3)):
            s = []
            for _ in range(rng.randint(1, 8)):
                article = rng.choice(hot) if rng.random() < 0.5 else rng.choice(pool)
                if s and s[-1][0] == article:
                    continue
                s.append((article, rng.choice(INTERACTIONS)))
            sessions.append(s)
        users[f"u{u}"] = sessions
    return users


def shard_inputs(sessions: List[list], window: int, weights):
    """One user shard's sessions -> (ids, article codes, weight classes, left, right), built
    with loops: the shard's own byte-sorted dictionary, position pairs i < j <= i + window
    of different articles."""
    ids = byte_sorted([a for s in sessions for a, _ in s])
    code = {a: i for i, a in enumerate(ids)}
    ref = RefClasses(weights)
    article, wclass, left, right = [], [], [], []
    for s in sessions:
        base = len(article)
        for a, event in s:
            article.append(code[a])
            wclass.append(ref.of_event[event])
        for i in range(len(s)):
            for j in range(i + 1, min(len(s), i + window + 1)):
                if s[i][0] != s[j][0]:
                    left.append(base + i)
                    right.append(base + j)
    return (pa.array(ids, pa.string()), np.array(article, np.int64), np.array(wclass, np.int64),
            np.array(left, np.int64), np.array(right, np.int64))


def pair_parts_by_partition(users, shards: List[List[str]], window: int, weights,
                            num_partitions: int):
    """shard_pair_part per user shard, split by the partition of the source."""
    classes = pairs.weight_classes(weights)
    by_partition = collections.defaultdict(list)
    for shard_users in shards:
        sessions = [s for u in shard_users for s in users[u]]
        ids, article, wclass, left, right = shard_inputs(sessions, window, weights)
        counted = pairs.shard_pair_part(article, wclass, left, right, len(ids),
                                        len(classes.weights))
        if not len(counted["src"]):
            continue
        target = shard_ids(ids, num_partitions)[counted["src"]]
        for t, part in pairs.split_part(ids, counted, ("src", "dst"), target):
            assert_compact(part)
            by_partition[t].append(part)
    return by_partition


def random_split(rng: random.Random, items: List[str], n: int) -> List[List[str]]:
    groups = [[] for _ in range(n)]
    for x in items:
        groups[rng.randrange(n)].append(x)
    return [g for g in groups if g]


def merged_pairs_dict(m: pairs.MergedPairs):
    src, dst = decode(m.ids, m.src), decode(m.ids, m.dst)
    return {(a, b): (int(c), None if m.wcount is None else float(w))
            for a, b, c, w in zip(src, dst, m.count.tolist(),
                                  m.wcount.tolist() if m.wcount is not None
                                  else [None] * len(src))}


def test_merge_pair_parts_literal_unweighted():
    ids = pa.array(["B", "a", "é"])
    p1 = pairs.Part(ids, {"src": np.array([0, 0, 1], np.int32),
                          "dst": np.array([1, 2, 0], np.int32),
                          "cls": np.zeros(3, np.int8), "count": np.array([2, 1, 2])},
                    ("src", "dst"))
    p2 = pairs.Part(pa.array(["B", "a"]), {"src": np.array([0], np.int32),
                                           "dst": np.array([1], np.int32),
                                           "cls": np.zeros(1, np.int8),
                                           "count": np.array([3])}, ("src", "dst"))
    m = pairs.merge_pair_parts([p2, p1], np.ones(1))
    assert m.ids.to_pylist() == ["B", "a", "é"]
    assert decode(m.ids, m.src) == ["B", "B", "a"]
    assert decode(m.ids, m.dst) == ["a", "é", "B"]
    assert m.count.tolist() == [5, 1, 2]
    assert m.wcount is None and m.wc_total is None
    assert decode(m.ids, m.sources) == ["B", "a"]
    assert m.c_total.tolist() == [6, 2]
    assert m.class_totals.tolist() == [8]


def test_merge_pair_parts_literal_weighted():
    products = np.array([0.01, 0.07, 0.49])   # weights 0.1 and 0.7
    ids = pa.array(["a", "b"])
    p1 = pairs.Part(ids, {"src": np.array([0, 0, 1], np.int32),
                          "dst": np.array([1, 1, 0], np.int32),
                          "cls": np.array([0, 2, 2], np.int8),
                          "count": np.array([3, 1, 1])}, ("src", "dst"))
    p2 = pairs.Part(ids, {"src": np.array([0, 1], np.int32), "dst": np.array([1, 0], np.int32),
                          "cls": np.array([0, 1], np.int8), "count": np.array([2, 4])},
                    ("src", "dst"))
    m = pairs.merge_pair_parts([p1, p2], products)
    assert m.count.tolist() == [6, 5]
    # (a, b): class 0: 5, class 2: 1; (b, a): class 1: 4, class 2: 1.
    assert same_bits(m.wcount, [(0.0 + 5 * 0.01) + 0.0 * 0.07 + 1 * 0.49,
                                (0.0 + 0 * 0.01) + 4 * 0.07 + 1 * 0.49])
    assert same_bits(m.wc_total, m.wcount)   # one destination per source
    assert m.class_totals.tolist() == [5, 4, 2]


def test_one_weight_class_of_product_four_is_still_weighted():
    """Event weights all 2.0: one pair class of product 4.0. The job's N is then
    sum_k T_k * w_k = 4 * (pairs counted), so the pair and source counts the weightings
    use must be 4 * c as well (wcount = sum_k n_k w_k), or ppmi is shifted by log 4 and
    the count weighting is c instead of the weighted 4c."""
    classes = pairs.weight_classes({name: 2.0 for name in INTERACTIONS})
    assert classes.products.tolist() == [4.0]
    ids = pa.array(["a", "b"])
    part = pairs.Part(ids, {"src": np.array([0, 1], np.int32), "dst": np.array([1, 0], np.int32),
                            "cls": np.zeros(2, np.int8), "count": np.array([3, 3])},
                      ("src", "dst"))
    m = pairs.merge_pair_parts([part], classes.products)
    assert m.count.tolist() == [3, 3]
    assert m.class_totals.tolist() == [6]
    assert m.wcount is not None and m.wcount.tolist() == [12.0, 12.0]
    assert m.wc_total is not None and m.wc_total.tolist() == [12.0, 12.0]


def test_merge_pair_parts_of_nothing():
    for products in (np.ones(1), np.array([0.01, 0.07, 0.49])):
        m = pairs.merge_pair_parts([], products)
        assert len(m.ids) == 0 and len(m.src) == 0 and len(m.sources) == 0
        assert m.class_totals.tolist() == [0] * len(products)


@pytest.mark.parametrize("name", ["unweighted", "distinct", "two_equal"])
def test_merging_any_split_in_any_order_equals_counting_at_once(name):
    """One partition of everything: the pairs, integer counts, marginals and class totals
    equal the reference, and weighted sums are bit-identical for every split and order."""
    weights = WEIGHT_SETS[name]
    ref = RefClasses(weights)
    products = pairs.weight_classes(weights).products
    rng = random.Random(808)
    for trial in range(6):
        users = random_sessions(rng, 30, random_ids(rng, 15))
        window = rng.choice([1, 2, 4])
        counts = reference_class_counts([s for ss in users.values() for s in ss], window, ref)
        source_classes = collections.defaultdict(lambda: collections.defaultdict(int))
        class_totals = [0] * len(ref.products)
        for (a, _), per_class in counts.items():
            for k, n in per_class.items():
                source_classes[a][k] += n
                class_totals[k] += n
        expected = {ab: (sum(pc.values()), ref.weigh(pc) if weights else None)
                    for ab, pc in counts.items()}
        for n_shards in (1, 2, 5, 30):
            parts = pair_parts_by_partition(users, random_split(rng, sorted(users), n_shards),
                                            window, weights, 1)[0]
            rng.shuffle(parts)
            m = pairs.merge_pair_parts(parts, products)
            got = merged_pairs_dict(m)
            assert got.keys() == expected.keys()
            for ab in expected:
                assert got[ab][0] == expected[ab][0]
                if weights:
                    assert same_bits(np.array([got[ab][1]]), [expected[ab][1]]), ab
            # Rows sorted by (src, dst) codes; the merged dictionary is in no particular
            # order (only the ranking step needs byte order), each id once.
            codes = list(zip(m.src.tolist(), m.dst.tolist()))
            assert codes == sorted(codes) and len(set(codes)) == len(codes)
            assert len(set(m.ids.to_pylist())) == len(m.ids)
            assert m.sources.tolist() == sorted(set(m.src.tolist()))
            assert sorted(decode(m.ids, m.sources), key=key) == byte_sorted(source_classes)
            assert dict(zip(decode(m.ids, m.sources), m.c_total.tolist())) == {
                a: sum(source_classes[a].values()) for a in source_classes}
            if weights:
                assert same_bits(m.wc_total, [ref.weigh(source_classes[a])
                                              for a in decode(m.ids, m.sources)])
            assert m.class_totals.tolist() == class_totals
            assert m.count.dtype == np.int64 and m.c_total.dtype == np.int64


# ------------------------------------------------------------------ mirrored edges

def random_merged(rng: random.Random, weights, n_ids: int = 14, n_rows: int = 60):
    """A MergedPairs of random symmetric partial counts, and the reference
    {(a, b): {class: n}}."""
    ref = RefClasses(weights)
    pool = random_ids(rng, n_ids)
    counts = collections.defaultdict(lambda: collections.defaultdict(int))
    for _ in range(n_rows):
        a, b = rng.sample(pool, 2)
        k = rng.randrange(len(ref.products))
        n = rng.choice([1, 1, 1, 2, 3, 5])
        counts[(a, b)][k] += n
        counts[(b, a)][k] += n
    parts = []
    items = [(a, b, k, n) for (a, b), pc in counts.items() for k, n in pc.items()]
    rng.shuffle(items)
    for i in range(0, len(items), 7):
        chunk = items[i:i + 7]
        local = byte_sorted([x for a, b, _, _ in chunk for x in (a, b)])
        parts.append(pairs.Part(pa.array(local, pa.string()), {
            "src": np.array([local.index(a) for a, _, _, _ in chunk], np.int32),
            "dst": np.array([local.index(b) for _, b, _, _ in chunk], np.int32),
            "cls": np.array([k for _, _, k, _ in chunk], np.int8),
            "count": np.array([n for _, _, _, n in chunk], np.int32)}, ("src", "dst")))
    return pairs.merge_pair_parts(parts, pairs.weight_classes(weights).products), counts


def test_mirrored_edges_literal():
    ids = pa.array(["a", "b", "c"])
    m = pairs.MergedPairs(ids, src=np.array([0, 0, 1, 2]), dst=np.array([1, 2, 0, 0]),
                          count=np.array([3, 1, 3, 1]), wcount=None,
                          sources=np.array([0, 1, 2]), c_total=np.array([4, 3, 1]),
                          wc_total=None, class_totals=np.array([8]))
    got = list(pairs.mirrored_edges(m, 2, 1))
    assert len(got) == 1 and got[0][0] == 0
    part = got[0][1]
    assert part_rows(part) == [(4, 3, "a", "b"), (3, 3, "b", "a")]   # c_dst, count, dst, src
    assert list(pairs.mirrored_edges(m, 4, 3)) == []


@pytest.mark.parametrize("name", ["unweighted", "distinct"])
def test_mirrored_edges_randomized(name):
    weights = WEIGHT_SETS[name]
    ref = RefClasses(weights)
    rng = random.Random(909)
    for trial in range(10):
        m, counts = random_merged(rng, weights)
        marginal = collections.defaultdict(lambda: collections.defaultdict(int))
        for (a, _), pc in counts.items():
            for k, n in pc.items():
                marginal[a][k] += n
        for min_count in (1, 2, 4):
            for n in (1, 3, 7):
                expected = collections.defaultdict(list)
                for (a, b), pc in counts.items():
                    c = sum(pc.values())
                    if c < min_count:
                        continue
                    row = {"src": b, "dst": a, "count": c, "c_dst": sum(marginal[a].values())}
                    if weights:
                        row["wcount"] = ref.weigh(pc)
                        row["wc_dst"] = ref.weigh(marginal[a])
                    expected[partition_of(b, n)].append(row)
                got = list(pairs.mirrored_edges(m, min_count, n))
                assert [t for t, _ in got] == sorted(expected)
                for t, part in got:
                    assert_compact(part)
                    assert set(part.codes) == {"src", "dst"}
                    names = ["src", "dst", "count", "c_dst"] + \
                        (["wcount", "wc_dst"] if weights else [])
                    assert sorted(part.cols) == sorted(names)
                    src, dst = decode(part.ids, part.cols["src"]), decode(part.ids,
                                                                          part.cols["dst"])
                    rows = {(s, d): i for i, (s, d) in enumerate(zip(src, dst))}
                    assert len(rows) == len(src)
                    want = {(r["src"], r["dst"]): r for r in expected[t]}
                    assert rows.keys() == want.keys()
                    for sd, i in rows.items():
                        r = want[sd]
                        assert int(part.cols["count"][i]) == r["count"]
                        assert int(part.cols["c_dst"][i]) == r["c_dst"]
                        if weights:
                            assert same_bits(part.cols["wcount"][i:i + 1], [r["wcount"]])
                            assert same_bits(part.cols["wc_dst"][i:i + 1], [r["wc_dst"]])


def test_source_totals_is_a_compact_part_of_the_marginals():
    rng = random.Random(1010)
    for name in ("unweighted", "distinct"):
        weights = WEIGHT_SETS[name]
        ref = RefClasses(weights)
        m, counts = random_merged(rng, weights)
        marginal = collections.defaultdict(lambda: collections.defaultdict(int))
        for (a, _), pc in counts.items():
            for k, n in pc.items():
                marginal[a][k] += n
        part = pairs.source_totals(m)
        assert part.codes == ("article",)
        assert_compact(part)
        articles = decode(part.ids, part.cols["article"])
        assert sorted(articles, key=key) == byte_sorted(marginal)
        assert part.cols["c"].tolist() == [sum(marginal[a].values()) for a in articles]
        if weights:
            assert same_bits(part.cols["wc"], [ref.weigh(marginal[a]) for a in articles])
        else:
            assert "wc" not in part.cols


# ------------------------------------------------------------------ rank_edges

def edge_part(rows, weighted: bool) -> pairs.Part:
    """rows (src, dst, count, c_dst[, wcount, wc_dst]) -> a compact part."""
    local = byte_sorted([x for r in rows for x in r[:2]])
    cols = {"src": np.array([local.index(r[0]) for r in rows], np.int32),
            "dst": np.array([local.index(r[1]) for r in rows], np.int32),
            "count": np.array([r[2] for r in rows], np.int64),
            "c_dst": np.array([r[3] for r in rows], np.int64)}
    if weighted:
        cols["wcount"] = np.array([r[4] for r in rows], np.float64)
        cols["wc_dst"] = np.array([r[5] for r in rows], np.float64)
    return pairs.Part(pa.array(local, pa.string()), cols, ("src", "dst"))


def totals_part(marginals: Dict[str, tuple], weighted: bool) -> pairs.Part:
    local = byte_sorted(marginals)
    cols = {"article": np.arange(len(local), dtype=np.int32),
            "c": np.array([marginals[a][0] for a in local], np.int64)}
    if weighted:
        cols["wc"] = np.array([marginals[a][1] for a in local], np.float64)
    return pairs.Part(pa.array(local, pa.string()), cols, ("article",))


LITERAL_EDGES = [("X", "b", 2, 4), ("X", "a", 2, 6), ("X", "é", 1, 2), ("Y", "a", 3, 6)]
LITERAL_MARGINALS = {"X": (5,), "Y": (3,)}


@pytest.mark.parametrize("weighting", ["ppmi", "count", "jaccard", "cosine"])
def test_rank_edges_literal(weighting):
    total = 20.0
    ranked = pairs.rank_edges([totals_part(LITERAL_MARGINALS, False)],
                              [edge_part(LITERAL_EDGES[:2], False),
                               edge_part(LITERAL_EDGES[2:], False)],
                              total, weighting, "weight", 2)
    w = {}
    for a, b, c, cb in LITERAL_EDGES:
        ca = LITERAL_MARGINALS[a][0]
        w[(a, b)] = {"ppmi": max(0.0, math.log(c * total / (ca * cb))), "count": float(c),
                     "jaccard": c / (ca + cb - c), "cosine": c / math.sqrt(ca * cb)}[weighting]
    # ppmi: X-b log(2), X-a log(4/3), X-é log(2), Y-a log(60/18): X-b and X-é tie, by id.
    # jaccard: X-b 2/7, X-a 2/9, X-é 1/6; cosine: X-b 2/sqrt(20), X-a 2/sqrt(30), X-é
    # 1/sqrt(10); count: X-a and X-b tie at 2, by id.
    expected_order = {"ppmi": [("X", "b"), ("X", "é"), ("Y", "a")],
                      "count": [("X", "a"), ("X", "b"), ("Y", "a")],
                      "jaccard": [("X", "b"), ("X", "a"), ("Y", "a")],
                      "cosine": [("X", "b"), ("X", "a"), ("Y", "a")]}[weighting]
    got = list(zip([s.decode() for s in ranked.src_ids.to_pylist()],
                   [s.decode() for s in ranked.dst_ids.to_pylist()]))
    assert got == expected_order
    counts = {(a, b): c for a, b, c, _ in LITERAL_EDGES}
    assert ranked.count.tolist() == [counts[e] for e in expected_order]
    assert ranked.weight.dtype == np.float32
    assert ranked.weight.tolist() == [float(np.float32(w[e])) for e in expected_order]


def test_rank_edges_ppmi_drops_zero_weights_and_rank_by_count():
    # N = 12: X-a log(2*12/(6*6)) < 0 -> 0, dropped; X-b log(1*12/(6*2)) = 0, dropped;
    # X-c log(1*12/(6*1)) = log(2), kept.
    edges = [("X", "a", 2, 6), ("X", "b", 1, 2), ("X", "c", 1, 1)]
    ranked = pairs.rank_edges([totals_part({"X": (6,)}, False)], [edge_part(edges, False)],
                              12.0, "ppmi", "weight", 5)
    assert [s.decode() for s in ranked.dst_ids.to_pylist()] == ["c"]
    assert ranked.weight.tolist() == [float(np.float32(math.log(2.0)))]
    ranked = pairs.rank_edges([totals_part({"X": (6,)}, False)], [edge_part(edges, False)],
                              12.0, "cosine", "count", 2)
    assert [s.decode() for s in ranked.dst_ids.to_pylist()] == ["a", "b"]
    assert ranked.count.tolist() == [2, 1]


def test_rank_edges_of_no_edges():
    ranked = pairs.rank_edges([totals_part({"X": (6,)}, False)], [], 6.0, "ppmi", "weight", 5)
    assert ranked.src_ids.to_pylist() == [] and ranked.dst_ids.to_pylist() == []
    assert ranked.count.tolist() == [] and ranked.weight.dtype == np.float32


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("weighting", ["ppmi", "count", "jaccard", "cosine"])
@pytest.mark.parametrize("rank_by", ["weight", "count"])
def test_rank_edges_randomized(weighted, weighting, rank_by):
    rng = random.Random(f"{weighted}-{weighting}-{rank_by}")
    for _ in range(15):
        sources = random_ids(rng, rng.randint(1, 6))
        others = random_ids(rng, 12)
        marginals, dst_marginal, rows = {}, {}, []
        for a in sources:
            marginals[a] = (rng.randint(5, 30), rng.randint(10, 40) * 0.1)
        for b in others:
            dst_marginal[b] = (rng.randint(5, 30), rng.randint(10, 40) * 0.1)
        for a in sources:
            for b in rng.sample(others, rng.randint(0, len(others))):
                if b == a:
                    continue
                c = rng.randint(1, 5)
                rows.append((a, b, c, dst_marginal[b][0], rng.randint(1, 5) * 0.1,
                             dst_marginal[b][1]))
        rng.shuffle(rows)
        total = rng.choice([50.0, 400.0, 12.3])
        top_k = rng.choice([1, 3, 50])
        cut = sorted([rng.randint(0, len(rows)), rng.randint(0, len(rows))])
        edge_parts = [edge_part(r, weighted) for r in
                      (rows[:cut[0]], rows[cut[0]:cut[1]], rows[cut[1]:]) if r]
        srcs = byte_sorted(marginals)
        half = rng.randint(0, len(srcs))
        tot_parts = [totals_part({a: marginals[a] for a in chunk}, weighted)
                     for chunk in (srcs[:half], srcs[half:]) if chunk]
        ranked = pairs.rank_edges(tot_parts, edge_parts, total, weighting, rank_by, top_k)
        candidates = collections.defaultdict(list)
        for a, b, c, cb, wc, wcb in rows:
            if weighted:
                w = reference_weight(weighting, wc, marginals[a][1], wcb, total)
            else:
                w = reference_weight(weighting, c, marginals[a][0], cb, total)
            if weighting == "ppmi" and w == 0.0:
                continue
            candidates[a].append((b, c, float(np.float32(w))))
        expected = reference_rank(candidates, rank_by, top_k)
        assert ranked_dict(ranked) == expected
        ranked_order_ok(ranked, rank_by)


# ------------------------------------------------------------------ end to end

def run_graph(users, shards, window, weights, num_partitions, min_pair_count, weighting,
              rank_by, top_k):
    """The graph stage's plain functions in its order, per shard and per partition."""
    products = pairs.weight_classes(weights).products
    by_partition = pair_parts_by_partition(users, shards, window, weights, num_partitions)
    class_totals = np.zeros(len(products), np.int64)
    totals, edges = collections.defaultdict(list), collections.defaultdict(list)
    for p, parts in by_partition.items():
        merged = pairs.merge_pair_parts(parts, products)
        class_totals += merged.class_totals
        if len(merged.sources):
            totals[p].append(pairs.source_totals(merged))
        for target, part in pairs.mirrored_edges(merged, min_pair_count, num_partitions):
            assert_compact(part)
            assert all(partition_of(a, num_partitions) == target
                       for a in decode(part.ids, part.cols["src"]))
            edges[target].append(part)
    total = 0.0
    for k, product in enumerate(products.tolist()):
        total += float(class_totals[k]) * product
    out = {}
    for p in range(num_partitions):
        ranked = pairs.rank_edges(totals[p], edges[p], total, weighting, rank_by, top_k)
        ranked_order_ok(ranked, rank_by)
        got = ranked_dict(ranked)
        assert all(partition_of(a, num_partitions) == p for a, _ in got)
        assert not (got.keys() & out.keys())
        out.update(got)
    return out


@pytest.mark.parametrize("name", list(WEIGHT_SETS))
@pytest.mark.parametrize("weighting", ["ppmi", "count", "jaccard", "cosine"])
def test_graph_over_shards_and_partitions_matches_the_reference(name, weighting):
    weights = WEIGHT_SETS[name]
    ref = RefClasses(weights)
    rng = random.Random(1234 + len(name) * 7 + len(weighting))
    for trial in range(3):
        users = random_sessions(rng, 40, random_ids(rng, 20))
        window = rng.choice([2, 3, 5])
        min_pair_count = rng.choice([1, 2])
        rank_by = rng.choice(["weight", "count"])
        top_k = rng.choice([2, 4, 50])
        counts = reference_class_counts([s for ss in users.values() for s in ss], window, ref)
        expected = reference_graph(counts, ref, bool(weights), min_pair_count, weighting,
                                   rank_by, top_k)
        assert expected
        for n_shards in (1, 3, 8):
            shards = random_split(rng, sorted(users), n_shards)
            for num_partitions in (1, 3, 7):
                got = run_graph(users, shards, window, weights, num_partitions,
                                min_pair_count, weighting, rank_by, top_k)
                assert got == expected, (name, weighting, n_shards, num_partitions)
