"""Tier 1: edge weights, top-K, regions, and whole graphs through the stage's own DoFns.

The end-to-end tests call the graph stage's own DoFns directly (CountShardPairs ->
MergeArticlePartition -> RankPartition, over several user shards and article
partitions) and compare them with `reference_graph`, the one independent
dict-and-loop reading of the graph rules (tests/helpers/graph_reference.py):

1. Interactions are article_view, article_like and chat_start rows.
2. Per user, by (event_timestamp, event_id), ids in byte order; a session ends
   where the gap to the next interaction is strictly greater than the gap.
3. Consecutive repeats of an article collapse to one position (largest weight).
4. Positions i != j of a session with |i - j| <= window and different articles
   add 1 to c(a_i, a_j) (so A B A B gives c(A, B) = 4).
5. Pairs with c >= min_pair_count are kept; weights use c(a), N computed before
   that filter; float64 then float32; ppmi drops weight-0 edges; each source
   keeps its top_k by rank value descending, then dst ascending (byte order).
6. max_session_length cuts collapsed sessions; max_events_per_user keeps a
   user's first N interactions; with event weights the weightings use the sum
   of w_i * w_j instead of c.
"""

import collections
import math
import random
from typing import Dict, List, NamedTuple, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.helpers import graph_reference as shared
from transforms.graph import weights as graph

pytestmark = pytest.mark.functions

MIN = 60_000_000
GAP = 30 * MIN
INTERACTIONS = ("article_view", "article_like", "chat_start")
# Dyadic weights: every product and sum below is exact in float64, so the
# reference and the module agree to the last bit whatever order they sum in.
WEIGHTS = {"article_view": 1.0, "article_like": 3.0, "chat_start": 0.5}


class Row(NamedTuple):
    user: str
    ts: int          # microseconds
    event_id: str
    article: str
    name: str = "article_view"
    region: Optional[str] = None


class Params(NamedTuple):
    gap_us: int = GAP
    window: int = 5
    min_pair_count: int = 1
    weighting: str = "count"
    rank_by: str = "weight"
    top_k: int = 50
    max_session_length: int = 0
    max_events_per_user: int = 0
    weights: Optional[Dict[str, float]] = None


def key(text: str) -> bytes:
    return text.encode("utf-8")


# ---------------------------------------------------------------- the reference
# Thin adapters from Row/Params to the one reference of the rules, tests/helpers/graph_reference.py.

def as_dicts(rows: List[Row]) -> List[dict]:
    return [{"user_id": r.user, "event_id": r.event_id, "ts": r.ts, "article_id": r.article,
             "event_name": r.name, "region_id": r.region} for r in rows]


def reference_sessions(rows: List[Row], p: Params) -> List[List[list]]:
    """Sessions as lists of [article, weight] positions."""
    return shared.reference_sessions(as_dicts(rows), gap_us=p.gap_us,
                                     max_events_per_user=p.max_events_per_user,
                                     max_session_length=p.max_session_length,
                                     event_weights=p.weights)


def reference_counts(rows: List[Row], p: Params):
    counts, _ = shared.reference_counts(reference_sessions(rows, p), p.window)
    return counts, None


def reference_graph(rows: List[Row], p: Params):
    """[(src, dst, count, float32 weight)] by src (byte order), then rank."""
    edges, neighbours, _, _ = shared.reference_graph(
        as_dicts(rows), gap_us=p.gap_us, window=p.window, min_pair_count=p.min_pair_count,
        weighting=p.weighting, rank_by=p.rank_by, top_k=p.top_k,
        max_session_length=p.max_session_length, max_events_per_user=p.max_events_per_user,
        event_weights=p.weights)
    return [(a, b) + edges[(a, b)] for a in sorted(neighbours, key=key) for b in neighbours[a]]


def reference_frequency(rows: List[Row], p: Params) -> Dict[str, int]:
    return shared.reference_graph(
        as_dicts(rows), gap_us=p.gap_us, window=p.window,
        max_session_length=p.max_session_length, max_events_per_user=p.max_events_per_user,
        event_weights=p.weights)[2]


def reference_region_mode(rows: List[Row]) -> Dict[str, str]:
    return shared.reference_region(as_dicts(rows))


def reference_index(frequency: Dict[str, int], known: Dict[str, int]):
    return shared.reference_index(frequency, known)


# ---------------------------------------------------------------- the module, composed

def module_graph(rows: List[Row], p: Params, parts: int = 3, partitions: int = 4):
    """The graph stage's own DoFns, called directly (tier 1) the way the pipeline wires
    them: users sharded into `parts` user shards, whose partial counts meet in
    `partitions` article partitions, whose kept edges are ranked where their source is."""
    from transforms.graph.cooccurrence import CountShardPairs, GraphParams, \
        MergeArticlePartition, RankPartition, pair_total, select_interactions, shard_by_user
    from transforms.graph.pairs import weight_classes
    params = GraphParams(session_gap_minutes=p.gap_us / 60_000_000, window=p.window,
                         min_pair_count=p.min_pair_count, weighting=p.weighting,
                         rank_by=p.rank_by, top_k=p.top_k,
                         max_session_length=p.max_session_length,
                         max_events_per_user=p.max_events_per_user, event_weights=p.weights)
    assert params.gap_us == p.gap_us
    table = select_interactions(pa.table({
        "user_id": pa.array([r.user for r in rows], pa.string()),
        "event_id": pa.array([r.event_id for r in rows], pa.string()),
        "event_timestamp": pa.array([r.ts for r in rows], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "article_id": pa.array([r.article for r in rows], pa.string()),
        "event_name": pa.array([r.name for r in rows], pa.string()),
        "region_id": pa.array([r.region for r in rows], pa.string()),
    }))
    by_partition = collections.defaultdict(list)
    count = CountShardPairs(params)
    for shard, payload in shard_by_user(table, parts):
        for target, value in count.process((shard, [payload]), num_partitions=partitions):
            by_partition[target].append(value)
    merge = MergeArticlePartition(params)
    rank_inputs, class_totals = collections.defaultdict(list), []
    frequency = {}
    for partition in sorted(by_partition):
        for out in merge.process((partition, by_partition[partition]),
                                 num_partitions=partitions):
            if not isinstance(out, beam.pvalue.TaggedOutput):
                continue   # pieces of the known articles' nodes and index: none known here
            if out.tag == MergeArticlePartition.RANK_INPUT:
                rank_inputs[out.value[0]].append(out.value[1])
            elif out.tag == MergeArticlePartition.CLASS_TOTALS:
                class_totals.append(out.value)
            else:   # NEW: the day's articles (no index is known here)
                ids, freq, _ = out.value
                frequency.update(zip(ids.to_pylist(), freq.tolist()))
    products = weight_classes(params.event_weights).products
    total = pair_total(sum(class_totals, np.zeros(len(products), np.int64)), products)
    per_source = {}
    rank = RankPartition(params)
    for partition in sorted(rank_inputs):
        for file_set, _, batch in rank.process((partition, rank_inputs[partition]), total):
            if file_set == "edges":
                for r in batch.to_pylist():
                    per_source.setdefault(r["src_article_id"].decode(), []).append(
                        (r["src_article_id"].decode(), r["dst_article_id"].decode(),
                         int(r["count"]), float(r["weight"])))
    edges = [edge for source in sorted(per_source, key=key) for edge in per_source[source]]
    return edges, frequency


def assert_same_graph(rows: List[Row], p: Params):
    got, frequency = module_graph(rows, p)
    assert got == reference_graph(rows, p), p
    assert frequency == reference_frequency(rows, p), p
    return got


def session(user: str, articles: str, start_minute: int = 0, names=None) -> List[Row]:
    """One session of one user: one row per character, a minute apart."""
    names = names or ["article_view"] * len(articles)
    return [Row(user, (start_minute + i) * MIN, f"{user}-{start_minute + i:05d}", a, name)
            for i, (a, name) in enumerate(zip(articles, names))]


def approx_eq(got: float, expected: float) -> bool:
    return got == float(np.float32(expected))


# ---------------------------------------------------------------- edge_weights / top_k

def test_edge_weights_formulas():
    m = np.array([4, 1, 3])
    a = np.array([4, 4, 5])
    b = np.array([4, 8, 3])
    n = 20
    assert graph.edge_weights(m, a, b, n, "count").tolist() == [4.0, 1.0, 3.0]
    assert graph.edge_weights(m, a, b, n, "ppmi").tolist() == [
        math.log(4 * 20 / 16), 0.0, math.log(3 * 20 / 15)]   # ln(20 / 32) < 0 -> 0
    assert graph.edge_weights(m, a, b, n, "jaccard").tolist() == [4 / 4, 1 / 11, 3 / 5]
    assert graph.edge_weights(m, a, b, n, "cosine").tolist() == [
        4 / math.sqrt(16), 1 / math.sqrt(32), 3 / math.sqrt(15)]
    for weighting in graph.WEIGHTINGS:
        assert graph.edge_weights(m, a, b, n, weighting).dtype == np.float64


def test_edge_weights_ppmi_clips_negative_pmi_to_zero():
    # c = 1, c(a) = c(b) = 4, N = 14: ln(14 / 16) < 0.
    got = graph.edge_weights(np.array([1, 3]), np.array([4, 4]), np.array([4, 3]), 14.0, "ppmi")
    assert got.tolist() == [0.0, math.log(3 * 14 / 12)]


def test_edge_weights_unknown_weighting():
    with pytest.raises(ValueError, match="--weighting='tfidf'"):
        graph.edge_weights(np.ones(1), np.ones(1), np.ones(1), 1.0, "tfidf")


def test_top_k_by_rank_then_dst_within_each_source():
    src = np.array([2, 0, 0, 0, 0, 2, 1, 0])
    dst = np.array([5, 4, 3, 7, 1, 6, 0, 2])
    rank = np.array([1.0, 0.5, 0.5, 0.9, 0.1, 1.0, 3.0, 0.5], dtype=np.float32)
    got = graph.top_k(src, dst, rank, 2)
    # source 0: 0.9 (7), then the 0.5 tie broken by dst: 2, 3, 4 -> keeps 7, 2.
    assert got.tolist() == [3, 7, 6, 0, 5]
    assert graph.top_k(src, dst, rank, 10).tolist() == [3, 7, 2, 1, 4, 6, 0, 5]
    assert graph.top_k(src, dst, rank, 1).tolist() == [3, 6, 0]


def test_top_k_with_integer_counts_and_nothing():
    got = graph.top_k(np.array([0, 0, 0]), np.array([9, 8, 7]), np.array([2, 5, 2]), 2)
    assert got.tolist() == [1, 2]
    assert graph.top_k(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), 3).tolist() \
        == []


# ---------------------------------------------------------------- hand-computed graphs

def test_abab_gives_count_four_every_weighting():
    rows = session("u", "ABAB")
    expected = {"count": 4.0, "ppmi": math.log(2.0), "jaccard": 1.0, "cosine": 1.0}
    for weighting, weight in expected.items():
        got = assert_same_graph(rows, Params(weighting=weighting))
        assert got == [("A", "B", 4, float(np.float32(weight))),
                       ("B", "A", 4, float(np.float32(weight)))]


def test_abc_window_one_and_two():
    rows = session("u", "ABC")
    # window 1: c(A,B) = c(B,C) = 1 both ways; c(A) = c(C) = 1, c(B) = 2, N = 4.
    got = assert_same_graph(rows, Params(window=1, weighting="jaccard"))
    assert got == [("A", "B", 1, 0.5), ("B", "A", 1, 0.5), ("B", "C", 1, 0.5),
                   ("C", "B", 1, 0.5)]
    got = assert_same_graph(rows, Params(window=1, weighting="cosine"))
    r = float(np.float32(1 / math.sqrt(2)))
    assert got == [("A", "B", 1, r), ("B", "A", 1, r), ("B", "C", 1, r), ("C", "B", 1, r)]
    ln2 = float(np.float32(math.log(2)))
    got = assert_same_graph(rows, Params(window=1, weighting="ppmi"))
    assert got == [("A", "B", 1, ln2), ("B", "A", 1, ln2), ("B", "C", 1, ln2),
                   ("C", "B", 1, ln2)]
    # window 2: every pair once; c(x) = 2, N = 6, ppmi = ln(1.5).
    got = assert_same_graph(rows, Params(window=2, weighting="ppmi"))
    w = float(np.float32(math.log(1.5)))
    assert got == [(a, b, 1, w) for a in "ABC" for b in "ABC" if a != b]


def test_ppmi_drops_negative_edges_and_totals_ignore_the_min_pair_count():
    # A B x3, C D x3, A C x1 (separate users): c(A,B) = 3, c(C,D) = 3, c(A,C) = 1,
    # c(A) = 4, c(B) = 3, c(C) = 4, c(D) = 3, N = 14.
    rows = (session("u1", "AB") + session("u2", "AB") + session("u3", "AB")
            + session("u4", "CD") + session("u5", "CD") + session("u6", "CD")
            + session("u7", "AC"))
    ab = float(np.float32(math.log(3 * 14 / 12)))
    # ppmi(A,C) = ln(14/16) < 0: dropped even with min_pair_count 1.
    assert assert_same_graph(rows, Params(weighting="ppmi")) == [
        ("A", "B", 3, ab), ("B", "A", 3, ab), ("C", "D", 3, ab), ("D", "C", 3, ab)]
    # The count weighting keeps A-C; min_pair_count 2 removes it but not from c(A), N.
    assert assert_same_graph(rows, Params(weighting="count")) == [
        ("A", "B", 3, 3.0), ("A", "C", 1, 1.0), ("B", "A", 3, 3.0), ("C", "D", 3, 3.0),
        ("C", "A", 1, 1.0), ("D", "C", 3, 3.0)]
    jab = float(np.float32(3 / (4 + 3 - 3)))
    assert assert_same_graph(rows, Params(weighting="jaccard", min_pair_count=2)) == [
        ("A", "B", 3, jab), ("B", "A", 3, jab), ("C", "D", 3, jab), ("D", "C", 3, jab)]


def test_gap_and_collapse_and_event_names():
    rows = [
        Row("u", 0, "e1", "A"), Row("u", 1 * MIN, "e2", "A", "article_like"),
        Row("u", 2 * MIN, "e3", "X", "impression"),        # not an interaction
        Row("u", 2 * MIN, "e4", "B", "chat_start"),
        Row("u", 2 * MIN + GAP, "e5", "C"),                # gap == 30 min: same session
        Row("u", 3 * MIN + 2 * GAP + 1, "e6", "D"),        # gap > 30 min: new session
        Row("u", 3 * MIN + 2 * GAP + 1, "e7", "E", "search"),
    ]
    got = assert_same_graph(rows, Params(window=1))
    assert got == [("A", "B", 1, 1.0), ("B", "A", 1, 1.0), ("B", "C", 1, 1.0),
                   ("C", "B", 1, 1.0)]
    assert module_graph(rows, Params(window=1))[1] == {"A": 1, "B": 1, "C": 1, "D": 1}


def test_equal_timestamps_are_ordered_by_event_id_bytes():
    # At the same instant "Z" < "a" in byte order: the session is B A C, not A B C.
    rows = [Row("u", 0, "a", "A"), Row("u", 0, "Z", "B"), Row("u", MIN, "b", "C")]
    assert assert_same_graph(rows, Params(window=1)) == [
        ("A", "B", 1, 1.0), ("A", "C", 1, 1.0), ("B", "A", 1, 1.0), ("C", "A", 1, 1.0)]


def test_event_weights_replace_counts_in_the_weightings():
    # like(A) view(B) chat(C), window 2: w(A,B) = 3, w(B,C) = 0.5, w(A,C) = 1.5.
    rows = session("u", "ABC", names=["article_like", "article_view", "chat_start"])
    p = Params(window=2, weights=WEIGHTS)
    assert assert_same_graph(rows, p._replace(weighting="count")) == [
        ("A", "B", 1, 3.0), ("A", "C", 1, 1.5), ("B", "A", 1, 3.0), ("B", "C", 1, 0.5),
        ("C", "A", 1, 1.5), ("C", "B", 1, 0.5)]
    # c(A) = 4.5, c(B) = 3.5, c(C) = 2, N = 10.
    cos = {("A", "B"): 3 / math.sqrt(4.5 * 3.5), ("A", "C"): 1.5 / math.sqrt(9.0),
           ("B", "C"): 0.5 / math.sqrt(7.0)}
    got = assert_same_graph(rows, p._replace(weighting="cosine"))
    assert got == [("A", "B", 1, float(np.float32(cos["A", "B"]))),
                   ("A", "C", 1, float(np.float32(cos["A", "C"]))),
                   ("B", "A", 1, float(np.float32(cos["A", "B"]))),
                   ("B", "C", 1, float(np.float32(cos["B", "C"]))),
                   ("C", "A", 1, float(np.float32(cos["A", "C"]))),
                   ("C", "B", 1, float(np.float32(cos["B", "C"])))]
    # rank by count: all counts are 1, so the order is by dst.
    got = assert_same_graph(rows, p._replace(weighting="count", rank_by="count", top_k=1))
    assert got == [("A", "B", 1, 3.0), ("B", "A", 1, 3.0), ("C", "A", 1, 1.5)]


def test_collapsed_run_keeps_the_largest_weight():
    rows = [Row("u", 0, "e1", "A", "chat_start"), Row("u", MIN, "e2", "A", "article_like"),
            Row("u", 2 * MIN, "e3", "A"), Row("u", 3 * MIN, "e4", "B")]
    got = assert_same_graph(rows, Params(weights=WEIGHTS))
    assert got == [("A", "B", 1, 3.0), ("B", "A", 1, 3.0)]


def test_max_session_length_and_max_events_per_user():
    rows = session("u", "AABCDE")   # collapsed: A B C D E
    assert assert_same_graph(rows, Params(window=5, max_session_length=2)) == [
        ("A", "B", 1, 1.0), ("B", "A", 1, 1.0), ("C", "D", 1, 1.0), ("D", "C", 1, 1.0)]
    # First 4 rows: A A B C.
    assert assert_same_graph(rows, Params(window=5, max_events_per_user=4)) == [
        ("A", "B", 1, 1.0), ("A", "C", 1, 1.0), ("B", "A", 1, 1.0), ("B", "C", 1, 1.0),
        ("C", "A", 1, 1.0), ("C", "B", 1, 1.0)]
    assert module_graph(rows, Params(max_events_per_user=4))[1] == {"A": 1, "B": 1, "C": 1}


def test_top_k_ties_go_to_the_smaller_dst_in_byte_order():
    # Source "h" meets "a", "Z", "é" and "b" once each: counts tie.
    rows = (session("u1", "hZ") + session("u2", "ha") + session("u3", "hé")
            + session("u4", "hb"))
    got = assert_same_graph(rows, Params(weighting="count", top_k=2))
    assert [e for e in got if e[0] == "h"] == [("h", "Z", 1, 1.0), ("h", "a", 1, 1.0)]


def test_rank_by_count_differs_from_rank_by_weight():
    # H-A three times, H-B once, B-C once: jaccard(H,B) = 1/(4+2-1) = 0.2 and
    # jaccard(H,A) = 3/(4+3-3) = 0.75; from B: jaccard(B,H) = 0.2, jaccard(B,C) = 1/(2+1-1).
    rows = (session("u1", "HA") + session("u2", "HA") + session("u3", "HA")
            + session("u4", "HB") + session("u5", "BC"))
    by_weight = assert_same_graph(rows, Params(weighting="jaccard", top_k=1))
    by_count = assert_same_graph(rows, Params(weighting="jaccard", rank_by="count", top_k=1))
    assert [e[:2] for e in by_weight] == [("A", "H"), ("B", "C"), ("C", "B"), ("H", "A")]
    assert [e[:2] for e in by_count] == [("A", "H"), ("B", "C"), ("C", "B"), ("H", "A")]
    by_weight = assert_same_graph(rows, Params(weighting="ppmi", top_k=1))
    by_count = assert_same_graph(rows, Params(weighting="ppmi", rank_by="count", top_k=1))
    # ppmi: c(H) = 4, c(A) = 3, c(B) = 2, c(C) = 1, N = 10.
    # From B: ppmi(B,H) = ln(10/8), ppmi(B,C) = ln(10/2): weight picks C, count ties -> C.
    # From H: ppmi(H,A) = ln(30/12), ppmi(H,B) = ln(10/8): both pick A.
    assert [e[:2] for e in by_weight] == [("A", "H"), ("B", "C"), ("C", "B"), ("H", "A")]
    assert by_weight == by_count


# ---------------------------------------------------------------- randomized comparison

def random_rows(rng: random.Random, n_users: int, pool: List[str], hot: Optional[str] = None,
                hot_rate: float = 0.0) -> List[Row]:
    names = list(INTERACTIONS) * 3 + ["impression", "search", "article_created"]
    regions = ["r1", "r2", "R0", "é", None]
    steps = [0, 0, 1, MIN, 5 * MIN, GAP - 1, GAP, GAP, GAP + 1, 3 * GAP]
    rows = []
    serial = 0
    for u in range(n_users):
        user = rng.choice(["u", "U", "ü"]) + str(u)
        ts = rng.randrange(0, 10 * GAP)
        article = rng.choice(pool)
        for _ in range(rng.randrange(1, 26)):
            ts += rng.choice(steps)
            r = rng.random()
            if hot is not None and r < hot_rate:
                article = hot
            elif r > 0.7:
                pass    # repeat the previous article
            else:
                article = rng.choice(pool)
            serial += 1
            event_id = rng.choice(["e", "E", "é"]) + str(rng.randrange(1000)) + f"-{serial}"
            rows.append(Row(user, ts, event_id, article, rng.choice(names), rng.choice(regions)))
    rng.shuffle(rows)
    return rows


OPTIONS = [
    {},
    {"max_session_length": 3},
    {"max_events_per_user": 7},
    {"weights": WEIGHTS},
    {"weights": WEIGHTS, "max_session_length": 2, "max_events_per_user": 12},
]


def test_randomized_graphs_match_the_reference():
    rng = random.Random(20261126)
    pool = ["A", "B", "a", "b", "Z", "é", "a1", "A0", "한"]
    seen = collections.Counter()
    for trial in range(40):
        rows = random_rows(rng, rng.randrange(1, 7), pool[:rng.randrange(2, len(pool) + 1)])
        base = Params(window=rng.randrange(1, 5), min_pair_count=rng.randrange(1, 4),
                      top_k=rng.randrange(1, 5))
        for options in OPTIONS:
            for weighting in graph.WEIGHTINGS:
                for rank_by in graph.RANK_BY:
                    p = base._replace(weighting=weighting, rank_by=rank_by, **options)
                    edges = assert_same_graph(rows, p)
                    seen["edges"] += len(edges)
                    count, _ = reference_counts(rows, p)
                    seen["pairs"] += len(count)
                    per_src = collections.Counter(e[0] for e in edges)
                    seen["full_top_k"] += sum(1 for v in per_src.values() if v == p.top_k)
    # The trials are not degenerate: edges, truncation and filtering all happen.
    assert seen["edges"] > 1000 and seen["full_top_k"] > 200
    assert seen["pairs"] * 8 > seen["edges"] * 8 + 1000


def test_hot_article_in_most_sessions():
    rng = random.Random(99)
    pool = [f"art{i:02d}" for i in range(15)]
    rows = random_rows(rng, 60, pool, hot="HOT", hot_rate=0.45)
    sessions_with_hot = sum(1 for s in reference_sessions(rows, Params())
                            if any(a == "HOT" for a, _ in s))
    all_sessions = len(reference_sessions(rows, Params()))
    assert sessions_with_hot * 2 > all_sessions
    for options in OPTIONS:
        for weighting in graph.WEIGHTINGS:
            for rank_by in graph.RANK_BY:
                p = Params(window=3, min_pair_count=2, top_k=3, weighting=weighting,
                           rank_by=rank_by, **options)
                edges = assert_same_graph(rows, p)
                hot_edges = [e for e in edges if e[0] == "HOT"]
                assert len(hot_edges) == 3, p
                if weighting == "count" and rank_by == "count" and not options:
                    # HOT's neighbours are its three most frequent co-occurring articles.
                    count, _ = reference_counts(rows, p)
                    best = sorted(((-c, b) for (a, b), c in count.items() if a == "HOT"))[:3]
                    assert [(e[1], e[2]) for e in hot_edges] == [(b, -c) for c, b in best]


# ---------------------------------------------------------------- nodes: region and index

def region_table(table: pa.Table) -> Dict[str, str]:
    assert table.schema.names == ["article_id", "region_id"]
    return dict(zip(table.column("article_id").to_pylist(), table.column("region_id").to_pylist()))


def test_region_mode_literal():
    article = pa.array(["a", "a", "a", "b", "b", "b", "c", "d", "d", "e"])
    region = pa.array(["r2", "r1", "r2", "r2", "r1", None, None, "Z", "a", "x"])
    got = graph.region_mode(article, region)
    # a: r2 twice; b: r1/r2 tie -> r1; c: no region -> absent; d: "Z" < "a" in byte order.
    assert region_table(got) == {"a": "r2", "b": "r1", "d": "Z", "e": "x"}
    assert got.column("article_id").to_pylist() == ["a", "b", "d", "e"]


def test_region_mode_of_nothing():
    got = graph.region_mode(pa.array([], pa.string()), pa.array([], pa.string()))
    assert region_table(got) == {}
    got = graph.region_mode(pa.array(["a"]), pa.array([None], pa.string()))
    assert region_table(got) == {}
    assert got.schema == pa.schema([("article_id", pa.string()), ("region_id", pa.string())])


def test_region_mode_from_counts_sums_partial_counts():
    counts = pa.table({"n": pa.array([2, 1, 2, 1, 3], pa.int64()),
                       "article_id": ["a", "a", "a", "b", "b"],
                       "region_id": ["r1", "r2", "r2", "r9", "r0"]})
    # a: r1 = 2, r2 = 3 -> r2; b: r0 = 3.
    assert region_table(graph.region_mode_from_counts(counts)) == {"a": "r2", "b": "r0"}


def test_region_mode_randomized_against_the_reference():
    rng = random.Random(4)
    for _ in range(30):
        rows = random_rows(rng, rng.randrange(1, 8), ["A", "B", "a", "é", "Z", "ab"])
        rows = [r for r in rows if r.name in INTERACTIONS]
        expected = reference_region_mode(rows)
        article = pa.array([r.article for r in rows], pa.string())
        region = pa.array([r.region for r in rows], pa.string())
        assert region_table(graph.region_mode(article, region)) == expected
        # The same from partial counts of three parts (as the shards send them).
        partial = []
        for part in range(3):
            t = pa.table({"article_id": article, "region_id": region}).filter(
                pa.array([i % 3 == part for i in range(len(rows))]))
            t = t.filter(pc.is_valid(t.column("region_id")))
            agg = t.group_by(["article_id", "region_id"]).aggregate([("region_id", "count")])
            partial.append(pa.table({"n": agg.column("region_id_count"),
                                     "article_id": agg.column("article_id"),
                                     "region_id": agg.column("region_id")}))
        assert region_table(graph.region_mode_from_counts(pa.concat_tables(partial))) == expected


# ---------------------------------------------------------------- the graph's parameters
# (transforms/cooccurrence.py checks what these functions receive.)

def test_event_weights_must_be_finite():
    # BUG: float("inf") > 0, so "inf" (and "1e400") pass as a <positive number>;
    # an infinite weight makes every weighted measure inf and ppmi/jaccard/cosine NaN.
    from transforms.graph.weights import parse_event_weights
    for text in ("article_view:inf,article_like:3,chat_start:5",
                 "article_view:1,article_like:1e400,chat_start:5"):
        with pytest.raises(ValueError, match="--event_weights="):
            parse_event_weights(text)


def test_session_gap_must_be_finite():
    # BUG: check() accepts session_gap_minutes=inf (inf >= 0), then gap_us raises
    # OverflowError on a worker instead of a ValueError naming the option at start.
    from transforms.graph.cooccurrence import GraphParams
    with pytest.raises(ValueError, match="--session_gap_minutes="):
        GraphParams(session_gap_minutes=float("inf")).check()
