"""BuildCooccurrenceGraph under the FnApiRunner (tier 2), compared with the
independent reference in tests/graph_reference.py; CountShardPairs and the
parameter checks called directly (tier 1).

The hot-key test makes the point of the stage's design: an article that is in
nearly every session never becomes a hot shuffle key, because keys are shard
numbers and each user shard sends one pre-aggregated row per distinct pair.
"""

import collections
import math
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas import contract
from tests.graph_reference import reference_graph
from transforms.cooccurrence import (
    BuildCooccurrenceGraph,
    CountShardPairs,
    GraphParams,
    parse_event_weights,
    select_interactions,
)
from transforms.sharding import to_ipc

RUNNER = "FnApiRunner"
MIN = 60_000_000
GAP = 30 * MIN
T0 = 1_795_000_000_000_000   # 2026-11-18, microseconds since the epoch
NON_INTERACTIONS = ("impression", "search", "article_created")


def make_row(user, ts, event_id, article, name="article_view", region="r1"):
    return {"user_id": user, "event_id": event_id, "ts": ts, "article_id": article,
            "event_name": name, "region_id": region}


def to_table(rows):
    """Reference rows -> a valid-rows table (an extra contract column rides along)."""
    return pa.table({
        "event_id": pa.array([r["event_id"] for r in rows], pa.string()),
        "event_timestamp": pa.array([r["ts"] for r in rows], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")),
        "event_name": pa.array([r["event_name"] for r in rows], pa.string()),
        "user_id": pa.array([r["user_id"] for r in rows], pa.string()),
        "article_id": pa.array([r["article_id"] for r in rows], pa.string()),
        "region_id": pa.array([r["region_id"] for r in rows], pa.string()),
        "price": pa.array([1000] * len(rows), pa.int64()),
    })


def random_rows(rng, n_users, pool, seed_label="e"):
    names = list(contract.INTERACTION_EVENTS) * 4 + list(NON_INTERACTIONS)
    regions = ["r1", "r2", "R0", None]
    steps = [0, 1, MIN, 5 * MIN, GAP - 1, GAP, GAP + 1, 3 * GAP]
    rows, serial = [], 0
    for u in range(n_users):
        ts = T0 + rng.randrange(0, 10 * GAP)
        article = rng.choice(pool)
        for _ in range(rng.randrange(1, 20)):
            ts += rng.choice(steps)
            if rng.random() < 0.7:
                article = rng.choice(pool)
            serial += 1
            name = rng.choice(names)
            rows.append(make_row(f"u{u}", ts, f"{seed_label}{rng.randrange(100)}-{serial}",
                                 None if name == "search" else article, name,
                                 rng.choice(regions)))
    rng.shuffle(rows)
    return rows


def split(rows, parts):
    """Rows -> `parts` tables, each user's rows scattered over several of them."""
    return [to_table(rows[i::parts]) for i in range(parts)]


# ---------------------------------------------------------------------- outputs as plain values

def edge_rows(element):
    _, batch = element
    return [(r["src_article_id"].decode(), r["dst_article_id"].decode(), r["count"], r["weight"])
            for r in batch.to_pylist()]


def neighbor_rows(element):
    _, batch = element
    out = []
    for r in batch.to_pylist():
        assert len(r["neighbor_ids"]) == len(r["neighbor_weights"]) == len(r["neighbor_counts"])
        out.append((r["article_id"].decode(), tuple(b.decode() for b in r["neighbor_ids"])))
    return out


def node_rows(batch):
    return [(r["article_id"].decode(), r["frequency"],
             None if r["region_id"] is None else r["region_id"].decode(), r["index"])
            for r in batch.to_pylist()]


def index_rows(batch):
    """The whole index, in its order (sorted by index)."""
    return [(r["article_id"].decode(), r["index"]) for r in batch.to_pylist()]


def empty_previous(p, label):
    return p | label >> beam.Create([(pa.array([], pa.string()), np.zeros(0, np.int64))])


def check_graph(p, label, elements, params, expected, previous=None):
    """Apply the graph stage to `elements` and assert its four outputs equal `expected`:
    (edges {(a, b): (count, weight)}, neighbours {a: [b, ...]}, nodes [...], index [...])."""
    edges, neighbours, nodes, index = expected
    source = p | f"Create{label}" >> beam.Create(elements)
    previous = previous if previous is not None else empty_previous(p, f"Previous{label}")
    out = source | f"Graph{label}" >> BuildCooccurrenceGraph(params, previous)
    assert_that(out["edges"] | f"Edges{label}" >> beam.FlatMap(edge_rows),
                equal_to([(a, b, c, w) for (a, b), (c, w) in edges.items()]),
                label=f"CheckEdges{label}")
    assert_that(out["neighbors"] | f"Neighbors{label}" >> beam.FlatMap(neighbor_rows),
                equal_to([(a, tuple(bs)) for a, bs in neighbours.items()]),
                label=f"CheckNeighbors{label}")
    assert_that(out["nodes"] | f"Nodes{label}" >> beam.Map(lambda b: sorted(node_rows(b))),
                equal_to([sorted(nodes)]), label=f"CheckNodes{label}")
    assert_that(out["index"] | f"Index{label}" >> beam.Map(index_rows),
                equal_to([index]), label=f"CheckIndex{label}")
    # Each source's neighbours are in exactly one batch, that of its source shard: its
    # position in the day's article dictionary (byte order) modulo num_shards.
    dictionary = sorted(a for a, _, _, _ in nodes)
    sources = sorted(neighbours)

    def shard_of_sources(element):
        shard, batch = element
        return [(a.decode(), shard) for a in batch.column("article_id").to_pylist()]
    assert_that(out["neighbors"] | f"Shards{label}" >> beam.FlatMap(shard_of_sources),
                equal_to([(a, dictionary.index(a) % params.num_shards) for a in sources]),
                label=f"CheckShards{label}")


def expected_first_day(rows, **graph_args):
    """The reference graph plus first-day nodes and index (1.. by frequency desc, then id)."""
    edges, neighbours, frequency, region = reference_graph(rows, **graph_args)
    order = sorted(frequency, key=lambda a: (-frequency[a], a.encode()))
    index = {a: i + 1 for i, a in enumerate(order)}
    nodes = [(a, frequency[a], region.get(a), index[a]) for a in frequency]
    return edges, neighbours, nodes, [(a, index[a]) for a in order]


COUNT_PARAMS = dict(weighting="count", rank_by="count", min_pair_count=1)


# ---------------------------------------------------------------------- (a) against the reference

def test_graph_matches_the_reference_for_defaults_and_counts_with_1_and_4_shards():
    rng = random.Random(20261126)
    rows = random_rows(rng, 40, ["A", "B", "a", "b", "Z", "a1", "A0", "k", "m", "n", "q"])
    tables = split(rows, 3)
    default = expected_first_day(rows)
    counted = expected_first_day(rows, **COUNT_PARAMS)
    # The case is not degenerate: ppmi drops pairs that count keeps, top-K is not reached.
    assert 30 < len(default[0]) < len(counted[0])
    assert len(default[2]) == 11
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        for shards in (1, 4):
            check_graph(p, f"Default{shards}", tables, GraphParams(num_shards=shards), default)
            check_graph(p, f"Count{shards}", tables,
                        GraphParams(num_shards=shards, **COUNT_PARAMS), counted)
        # (key, table) elements, as CheckEvents' "valid" output gives them, work the same.
        check_graph(p, "Keyed", [(k, t) for k, t in enumerate(tables)],
                    GraphParams(num_shards=3), default)


def test_top_k_and_window_options_match_the_reference():
    rng = random.Random(7)
    rows = random_rows(rng, 25, [f"x{i}" for i in range(12)])
    args = dict(gap_minutes=10, window=2, min_pair_count=1, weighting="cosine", top_k=2)
    expected = expected_first_day(rows, **args)
    assert any(len(v) == 2 for v in expected[1].values())
    params = GraphParams(session_gap_minutes=10, window=2, min_pair_count=1, weighting="cosine",
                         top_k=2, num_shards=2)
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        check_graph(p, "Cosine", split(rows, 2), params, expected)


def test_a_day_without_interactions_gives_an_empty_graph():
    rows = [make_row("u1", T0, "e1", "A", "impression"),
            make_row("u1", T0 + 1, "e2", None, "search")]
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        check_graph(p, "Empty", [to_table(rows)], GraphParams(num_shards=2), ({}, {}, [], []))


# ---------------------------------------------------------------------- (b) the hot key

HOT = "HOT"


def hot_rows(n_users=300, share=0.9, seed=11):
    """One session per user; `share` of them hold HOT (two or three times, apart)."""
    rng = random.Random(seed)
    pool = [f"p{i:02d}" for i in range(30)]
    rows = []
    with_hot = 0
    for u in range(n_users):
        session = [rng.choice(pool) for _ in range(rng.randrange(6, 12))]
        if rng.random() < share:
            with_hot += 1
            for pos in sorted(rng.sample(range(0, len(session) + 1, 3), 2), reverse=True):
                session.insert(pos, HOT)
        ts = T0 + rng.randrange(0, 100 * GAP)
        for i, article in enumerate(session):
            rows.append(make_row(f"user{u:03d}", ts + i * MIN, f"e{u}-{i}", article,
                                 rng.choice(contract.INTERACTION_EVENTS), f"r{u % 3}"))
    return rows, with_hot


def test_hot_article_graph_matches_the_reference():
    rows, with_hot = hot_rows()
    assert with_hot >= 0.85 * 300
    default = expected_first_day(rows)
    counted = expected_first_day(rows, **COUNT_PARAMS)
    assert len(counted[1][HOT]) == 30    # HOT neighbours every pool article
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        check_graph(p, "HotDefault", split(rows, 4), GraphParams(), default)
        check_graph(p, "HotCount", split(rows, 4), GraphParams(**COUNT_PARAMS), counted)


def test_hot_article_sends_one_preaggregated_part_per_user_shard():
    rows, _ = hot_rows()
    num_shards = 4
    params = GraphParams(num_shards=num_shards)
    articles = pa.array(sorted({r["article_id"] for r in rows}), pa.string())
    hot_code = articles.to_pylist().index(HOT)
    users = sorted({r["user_id"] for r in rows})
    fn = CountShardPairs(params)
    total_parts = 0
    for user_shard in range(num_shards):
        # Whole users per shard (any partition of users will do).
        mine = {u for i, u in enumerate(users) if i % num_shards == user_shard}
        shard_rows = [r for r in rows if r["user_id"] in mine]
        table = select_interactions(to_table(shard_rows))
        halves = [to_ipc(table.slice(0, table.num_rows // 2)),
                  to_ipc(table.slice(table.num_rows // 2))]
        outputs = list(fn.process((user_shard, halves), articles=articles))
        tagged = [o for o in outputs if isinstance(o, beam.pvalue.TaggedOutput)]
        main = [o for o in outputs if not isinstance(o, beam.pvalue.TaggedOutput)]
        assert [o.tag for o in tagged] == [CountShardPairs.PARTIALS]
        # Exactly one element per target source shard, each tagged with this user shard.
        assert sorted(target for target, _ in main) == list(range(num_shards))
        total_parts += len(main)
        for target, (shard, part) in main:
            assert shard == user_shard
            assert np.all(part.src % num_shards == target)
            keys = part.src * len(articles) + part.dst
            assert len(np.unique(keys)) == len(keys)     # one row per distinct pair
        # HOT's rows in its part: one per distinct neighbour, counts summed already.
        _, (_, part) = next(m for m in main if m[0] == hot_code % num_shards)
        is_hot = part.src == hot_code
        got = {articles[int(d)].as_py(): int(c) for d, c in zip(part.dst[is_hot],
                                                              part.count[is_hot])}
        ref_edges, _, _, _ = reference_graph(shard_rows, weighting="count", rank_by="count",
                                             min_pair_count=1, top_k=10 ** 6)
        expected = {b: c for (a, b), (c, _) in ref_edges.items() if a == HOT}
        assert got == expected
        occurrences, distinct = sum(expected.values()), len(expected)
        assert distinct == int(is_hot.sum()) <= 30
        assert occurrences > 20 * distinct, (occurrences, distinct)
        # The totals carry HOT's whole pair count, not one row per occurrence.
        shard_of_partial, partial = tagged[0].value
        assert shard_of_partial == user_shard
        assert int(partial["c"][hot_code]) == occurrences
    # The source-shard shuffle gets num_shards x num_shards elements, whatever HOT's popularity.
    assert total_parts == num_shards * num_shards


# ---------------------------------------------------------------------- (c) the previous index

def test_previous_index_is_continued():
    rows = []
    for user, arts in (("u1", "ABC"), ("u2", "BDE"), ("u3", "EDFZ"), ("u4", "D")):
        for i, a in enumerate(arts):
            rows.append(make_row(user, T0 + i * MIN, f"{user}-{i}", a,
                                 region="r2" if a == "E" else "r1"))
    # Frequencies: A 1, B 2, C 1, D 3, E 2, F 1, Z 1. Known: OLD 7, B 3, A 1.
    known_ids = pa.array(["OLD", "B", "A"], pa.string())
    known_index = np.array([7, 3, 1], np.int64)
    index = [("A", 1), ("B", 3), ("OLD", 7), ("D", 8), ("E", 9), ("C", 10), ("F", 11),
             ("Z", 12)]
    edges, neighbours, frequency, region = reference_graph(rows, **COUNT_PARAMS)
    assert frequency == {"A": 1, "B": 2, "C": 1, "D": 3, "E": 2, "F": 1, "Z": 1}
    nodes = [(a, frequency[a], region[a], dict(index)[a]) for a in frequency]
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        previous = p | beam.Create([(known_ids, known_index)])
        check_graph(p, "Continued", [to_table(rows)], GraphParams(num_shards=2, **COUNT_PARAMS),
                    (edges, neighbours, nodes, index), previous=previous)


# ---------------------------------------------------------------------- weighted mode

WEIGHTS = {"article_view": 1, "article_like": 3, "chat_start": 5}


def weighted_reference(rows, weights, window=5, gap_minutes=30, top_k=50, rank_by="weight"):
    """Edges {(a, b): (count, float32(sum of w_i * w_j))} ranked by the weighted count
    (or the plain count), ties by dst bytes; collapsed runs keep their largest weight."""
    by_user = collections.defaultdict(list)
    for r in rows:
        if r["event_name"] in weights:
            by_user[r["user_id"]].append((r["ts"], r["event_id"].encode(), r["article_id"],
                                          weights[r["event_name"]]))
    count = collections.Counter()
    wcount = collections.Counter()
    for events in by_user.values():
        sessions, last = [], None
        for ts, _, article, w in sorted(events):
            if last is None or ts - last > gap_minutes * MIN:
                sessions.append([])
            s = sessions[-1]
            if s and s[-1][0] == article:
                s[-1][1] = max(s[-1][1], w)
            else:
                s.append([article, w])
            last = ts
        for s in sessions:
            for i, (a, wa) in enumerate(s):
                for j in range(max(0, i - window), min(len(s), i + window + 1)):
                    b, wb = s[j]
                    if i != j and a != b:
                        count[(a, b)] += 1
                        wcount[(a, b)] += wa * wb
    per_src = collections.defaultdict(list)
    for (a, b), c in count.items():
        per_src[a].append((b, c, wcount[(a, b)]))
    edges, neighbours = {}, {}
    for a, items in per_src.items():
        key = 2 if rank_by == "weight" else 1
        kept = sorted(items, key=lambda t: (-t[key], t[0].encode()))[:top_k]
        neighbours[a] = [b for b, _, _ in kept]
        for b, c, wc in kept:
            edges[(a, b)] = (c, float(np.float32(wc)))
    return edges, neighbours


def test_weighted_mode_ranks_by_the_weighted_counts():
    rng = random.Random(5)
    rows = random_rows(rng, 30, [f"w{i}" for i in range(8)])
    # A collapsed run: view then like of A keeps weight 3, so c_w(A, B) = 3 * 5.
    rows += [make_row("lit", T0, "l1", "A", "article_view"),
             make_row("lit", T0 + 1, "l2", "A", "article_like"),
             make_row("lit", T0 + 2, "l3", "B", "chat_start")]
    by_weight = weighted_reference(rows, WEIGHTS, top_k=3)
    by_count = weighted_reference(rows, WEIGHTS, top_k=3, rank_by="count")
    assert by_weight[0][("A", "B")] == (1, 15.0)
    assert by_weight[1] != by_count[1]   # the weights change the ranking
    _, _, frequency, region = reference_graph(rows)
    order = sorted(frequency, key=lambda a: (-frequency[a], a.encode()))
    index = {a: i + 1 for i, a in enumerate(order)}
    nodes = [(a, frequency[a], region.get(a), index[a]) for a in frequency]
    weights = parse_event_weights("article_view:1,article_like:3,chat_start:5")
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        for rank_by, (edges, neighbours) in (("weight", by_weight), ("count", by_count)):
            params = GraphParams(weighting="count", rank_by=rank_by, min_pair_count=1, top_k=3,
                                 event_weights=weights, num_shards=3)
            check_graph(p, f"Weighted{rank_by}", split(rows, 2), params,
                        (edges, neighbours, nodes, [(a, index[a]) for a in order]))


# ---------------------------------------------------------------------- (d) option errors

def test_parse_event_weights():
    assert parse_event_weights("") is None
    assert parse_event_weights(" chat_start:5, article_view:1,article_like:2.5") == {
        "chat_start": 5.0, "article_view": 1.0, "article_like": 2.5}


@pytest.mark.parametrize("text, item", [
    ("article_view,article_like:3,chat_start:5", "'article_view'"),
    ("impression:1,article_view:1,article_like:3,chat_start:5", "'impression:1'"),
    ("article_view:0,article_like:3,chat_start:5", "'article_view:0'"),
    ("article_view:-1,article_like:3,chat_start:5", "'article_view:-1'"),
    ("article_view:x,article_like:3,chat_start:5", "'article_view:x'"),
    ("article_view:nan,article_like:3,chat_start:5", "'article_view:nan'"),
    ("article_view:1,article_view:2,article_like:3,chat_start:5", "'article_view:2'"),
])
def test_parse_event_weights_names_the_flag_and_the_item(text, item):
    with pytest.raises(ValueError) as err:
        parse_event_weights(text)
    message = str(err.value)
    assert message.startswith(f"--event_weights={text!r}: each item must be "
                              "<event>:<positive number> with <event> one of "
                              "article_view, article_like, chat_start")
    assert message.endswith(f"got {item}")


def test_parse_event_weights_wants_every_interaction():
    with pytest.raises(ValueError) as err:
        parse_event_weights("article_view:1")
    assert str(err.value) == ("--event_weights='article_view:1' gives no weight for "
                              "article_like, chat_start")


@pytest.mark.parametrize("field, value, message", [
    ("session_gap_minutes", -1.0, "--session_gap_minutes=-1.0 must be >= 0"),
    ("session_gap_minutes", math.nan, "--session_gap_minutes=nan must be >= 0"),
    ("window", 0, "--graph_window=0 must be >= 1"),
    ("min_pair_count", 0, "--min_pair_count=0 must be >= 1"),
    ("weighting", "pmi", "--weighting='pmi' must be one of ppmi, count, jaccard, cosine"),
    ("rank_by", "score", "--rank_by='score' must be weight or count"),
    ("top_k", 0, "--top_k=0 must be >= 1"),
    ("max_session_length", 1, "--max_session_length=1 must be 0 (off) or >= 2"),
    ("max_session_length", -2, "--max_session_length=-2 must be 0 (off) or >= 2"),
    ("max_events_per_user", -1, "--max_events_per_user=-1 must be >= 0"),
    ("num_shards", 0, "--graph_shards=0 must be >= 1"),
])
def test_graph_params_check_names_the_flag(field, value, message):
    with pytest.raises(ValueError) as err:
        GraphParams(**{field: value}).check()
    assert str(err.value) == message
    # The composite checks at construction, before any pipeline runs.
    with pytest.raises(ValueError) as err:
        BuildCooccurrenceGraph(GraphParams(**{field: value}), previous_index=None)
    assert str(err.value) == message


def test_graph_params_check_reports_every_problem_and_passes_good_ones():
    with pytest.raises(ValueError) as err:
        GraphParams(window=0, top_k=0).check()
    assert str(err.value) == "--graph_window=0 must be >= 1; --top_k=0 must be >= 1"
    good = GraphParams(session_gap_minutes=0, max_session_length=2, max_events_per_user=0)
    assert good.check() is good
    assert good.gap_us == 0 and GraphParams(session_gap_minutes=1.5).gap_us == 90_000_000
    assert not GraphParams().weighted
    assert GraphParams(event_weights=WEIGHTS).weighted
