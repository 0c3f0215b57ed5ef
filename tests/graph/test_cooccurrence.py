"""BuildCooccurrenceGraph under the FnApiRunner (tier 2), compared with the
independent reference in tests/helpers/graph_reference.py, at shard counts 1, 7 and auto;
CountShardPairs and the parameter checks called directly (tier 1).

The hot-key test makes the point of the stage's design: an article that is in
nearly every session never becomes a hot shuffle key, because keys are shards of
users or articles, and each user shard sends one pre-aggregated row per distinct pair.
"""

import math
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas import contract
from tests.helpers.graph_reference import reference_graph, reference_index
from transforms.common.sharding import shard_ids, to_ipc
from transforms.graph.cooccurrence import BuildCooccurrenceGraph, CountShardPairs, \
    GraphParams, select_interactions
from transforms.graph.weights import parse_event_weights

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

def piece_rows(piece):
    """(file set, piece key, RecordBatch) -> [(file set, row), ...] as plain values."""
    file_set, _, batch = piece
    out = []
    for r in batch.to_pylist():
        if file_set == "edges":
            row = (r["src_article_id"].decode(), r["dst_article_id"].decode(), r["count"],
                   r["weight"])
        elif file_set == "neighbors":
            assert len(r["neighbor_ids"]) == len(r["neighbor_weights"]) == \
                len(r["neighbor_counts"])
            row = (r["article_id"].decode(), tuple(b.decode() for b in r["neighbor_ids"]))
        elif file_set == "nodes":
            row = (r["article_id"].decode(), r["frequency"],
                   None if r["region_id"] is None else r["region_id"].decode(), r["index"])
        else:
            row = (r["article_id"].decode(), r["index"])
        out.append((file_set, row))
    return out


def no_known(p, label):
    return p | label >> beam.Create([])


def expected_rows(expected):
    edges, neighbours, nodes, index = expected
    return ([("edges", (a, b, c, w)) for (a, b), (c, w) in edges.items()]
            + [("neighbors", (a, tuple(bs))) for a, bs in neighbours.items()]
            + [("nodes", n) for n in nodes] + [("index", i) for i in index])


def check_graph(p, label, elements, params, expected, known=None):
    """Apply the graph stage to `elements` and assert the rows of its four file sets equal
    `expected`: (edges {(a, b): (count, weight)}, neighbours {a: [b, ...]}, nodes [...],
    index [...]), and that each piece key appears once per file set."""
    source = p | f"Create{label}" >> beam.Create(elements)
    known = known if known is not None else no_known(p, f"Known{label}")
    out = source | f"Graph{label}" >> BuildCooccurrenceGraph(params, known)
    assert_that(out["pieces"] | f"Rows{label}" >> beam.FlatMap(piece_rows),
                equal_to(expected_rows(expected)), label=f"CheckRows{label}")
    keys = out["pieces"] | f"Keys{label}" >> beam.Map(lambda piece: piece[:2])
    assert_that(keys | f"Distinct{label}" >> beam.combiners.Count.PerElement()
                | f"Repeated{label}" >> beam.Filter(lambda kv: kv[1] > 1),
                equal_to([]), label=f"CheckKeys{label}")
    return out


def expected_first_day(rows, **graph_args):
    """The reference graph plus first-day nodes and index (1.. by frequency desc, then id)."""
    edges, neighbours, frequency, region = reference_graph(rows, **graph_args)
    others = {r["article_id"] for r in rows if r["article_id"] is not None
              and r["event_name"] not in contract.INTERACTION_EVENTS}
    index = reference_index(frequency, others=others)
    nodes = [(a, frequency[a], region.get(a), index[a]) for a in frequency]
    return edges, neighbours, nodes, sorted(index.items(), key=lambda item: item[1])


COUNT_PARAMS = dict(weighting="count", rank_by="count", min_pair_count=1)


# ---------------------------------------------------------------------- (a) against the reference

@pytest.mark.composites
def test_graph_matches_the_reference_for_defaults_and_counts_keyed_or_not():
    rng = random.Random(20261126)
    rows = random_rows(rng, 40, ["A", "B", "a", "b", "Z", "a1", "A0", "k", "m", "n", "q"])
    tables = split(rows, 3)
    default = expected_first_day(rows)
    counted = expected_first_day(rows, **COUNT_PARAMS)
    # The case is not degenerate: ppmi drops pairs that count keeps, top-K is not reached.
    assert 30 < len(default[0]) < len(counted[0])
    assert len(default[2]) == 11
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        # 0 is auto: 40 rows a shard gives several shards here. (Every weighting at 1, 7
        # and auto shards: test_every_rule_through_the_stage_matches_the_reference.)
        for label, shards, params, expected in (("Default", 7, {}, default),
                                                ("Count", 0, COUNT_PARAMS, counted)):
            check_graph(p, f"{label}{shards}", tables,
                        GraphParams(num_shards=shards, max_rows_per_shard=40, **params),
                        expected)
        # (key, table) elements, as CheckEvents' "valid" output gives them, work the same.
        check_graph(p, "Keyed", [(k, t) for k, t in enumerate(tables)],
                    GraphParams(num_shards=3), default)


@pytest.mark.composites
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


@pytest.mark.composites
def test_a_day_without_interactions_gives_an_empty_graph():
    rows = [make_row("u1", T0, "e1", "A", "impression"),
            make_row("u1", T0 + 1, "e2", None, "search")]
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        # No graph, but the impression's article is indexed (not a node).
        check_graph(p, "Empty", [to_table(rows)], GraphParams(num_shards=2),
                    ({}, {}, [], [("A", 1)]))


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


@pytest.mark.composites
def test_hot_article_graph_matches_the_reference():
    rows, with_hot = hot_rows()
    assert with_hot >= 0.85 * 300
    default = expected_first_day(rows)
    counted = expected_first_day(rows, **COUNT_PARAMS)
    assert len(counted[1][HOT]) == 30    # HOT neighbours every pool article
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        check_graph(p, "HotDefault", split(rows, 4), GraphParams(), default)
        check_graph(p, "HotCount", split(rows, 4), GraphParams(**COUNT_PARAMS), counted)


@pytest.mark.functions
def test_hot_article_sends_one_preaggregated_part_per_user_shard():
    rows, _ = hot_rows()
    num_shards = 4
    fn = CountShardPairs(GraphParams(**COUNT_PARAMS))
    users = sorted({r["user_id"] for r in rows})
    hot_partition = int(shard_ids(pa.array([HOT]), num_shards)[0])
    for user_shard in range(num_shards):
        # Whole users per shard (any partition of users will do).
        mine = {u for i, u in enumerate(users) if i % num_shards == user_shard}
        shard_rows = [r for r in rows if r["user_id"] in mine]
        table = select_interactions(to_table(shard_rows))
        halves = [to_ipc(table.slice(0, table.num_rows // 2)),
                  to_ipc(table.slice(table.num_rows // 2))]
        outputs = list(fn.process((user_shard, halves), num_partitions=num_shards))
        pair_parts = [(target, part) for target, (tag, part) in outputs if tag == "pairs"]
        # At most one pair part per article partition, each holding only its own sources.
        assert len({t for t, _ in pair_parts}) == len(pair_parts) <= num_shards
        for target, part in pair_parts:
            ids = part.ids.to_pylist()
            assert len(set(ids)) == len(ids)
            sources = [ids[int(c)] for c in part.cols["src"]]
            assert set(shard_ids(pa.array(sources), num_shards).tolist()) == {target}
            keys = list(zip(part.cols["src"].tolist(), part.cols["dst"].tolist()))
            assert len(set(keys)) == len(keys)     # one row per distinct pair
            # The part's dictionary holds only the articles its rows use.
            used = set(part.cols["src"].tolist()) | set(part.cols["dst"].tolist())
            assert used == set(range(len(ids)))
        part = dict(pair_parts)[hot_partition]
        ids = part.ids.to_pylist()
        is_hot = np.array([ids[int(c)] == HOT for c in part.cols["src"]])
        got = {ids[int(d)]: int(c) for d, c in zip(part.cols["dst"][is_hot],
                                                   part.cols["count"][is_hot])}
        ref_edges, _, _, _ = reference_graph(shard_rows, weighting="count", rank_by="count",
                                             min_pair_count=1, top_k=10 ** 6)
        expected = {b: c for (a, b), (c, _) in ref_edges.items() if a == HOT}
        assert got == expected
        occurrences, distinct = sum(expected.values()), len(expected)
        assert distinct == int(is_hot.sum()) <= 30
        assert occurrences > 20 * distinct, (occurrences, distinct)


# ---------------------------------------------------------------------- (c) the previous index

@pytest.mark.composites
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
        # The known index arrives in two chunks (two files), split over the partitions.
        known = p | beam.Create([(known_ids[:1], known_index[:1]),
                                 (known_ids[1:], known_index[1:])])
        check_graph(p, "Continued", [to_table(rows)], GraphParams(num_shards=2, **COUNT_PARAMS),
                    (edges, neighbours, nodes, index), known=known)


# ---------------------------------------------------------------------- weighted mode

WEIGHTS = {"article_view": 1.0, "article_like": 3.0, "chat_start": 5.0}


@pytest.mark.composites
def test_weighted_mode_ranks_by_the_weighted_counts():
    rng = random.Random(5)
    rows = random_rows(rng, 30, [f"w{i}" for i in range(8)])
    # A collapsed run: view then like of A keeps weight 3, so c_w(A, B) = 3 * 5.
    rows += [make_row("lit", T0, "l1", "A", "article_view"),
             make_row("lit", T0 + 1, "l2", "A", "article_like"),
             make_row("lit", T0 + 2, "l3", "B", "chat_start")]
    args = dict(weighting="count", min_pair_count=1, top_k=3, event_weights=WEIGHTS)
    by_weight = expected_first_day(rows, **args)
    by_count = expected_first_day(rows, **args, rank_by="count")
    assert by_weight[0][("A", "B")] == (1, 15.0)
    assert by_weight[1] != by_count[1]   # the weights change the ranking
    weights = parse_event_weights("article_view:1,article_like:3,chat_start:5")
    assert weights == WEIGHTS
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        for rank_by, expected in (("weight", by_weight), ("count", by_count)):
            params = GraphParams(weighting="count", rank_by=rank_by, min_pair_count=1, top_k=3,
                                 event_weights=weights, num_shards=3)
            check_graph(p, f"Weighted{rank_by}", split(rows, 2), params, expected)


# ---------------------------------------------------------------------- every rule, randomized

# Not dyadic: sums depend on their order. The reference forms every weighted sum as the
# stage does (integer counts per pair of weights, then n x w_lo x w_hi in ascending
# order), so the stored float32 weights are compared exactly.
ODD_WEIGHTS = "article_view:1,article_like:2.5,chat_start:0.7"

# (weighting, weighted, reference options beyond the weighting, user shards: 0 is auto).
VARIANTS = (
    ("ppmi", False, dict(), 1),
    ("ppmi", True, dict(min_pair_count=1, max_events_per_user=6), 7),
    ("count", False, dict(min_pair_count=3, top_k=6), 0),
    ("count", True, dict(min_pair_count=1, max_session_length=3, top_k=3), 0),
    ("jaccard", False, dict(min_pair_count=1, max_session_length=2, gap_minutes=10), 7),
    ("jaccard", True, dict(min_pair_count=3, rank_by="count"), 1),
    ("cosine", False, dict(max_events_per_user=5, max_session_length=2, rank_by="count",
                           top_k=2), 0),
    ("cosine", True, dict(min_pair_count=1, top_k=2, gap_minutes=5, window=2), 7),
)
DEFAULTS = dict(gap_minutes=30, window=5, min_pair_count=2, rank_by="weight", top_k=50,
                max_session_length=0, max_events_per_user=0)


def graph_params(weighting, weights, options, shards):
    options = dict(options)
    gap = options.pop("gap_minutes", 30)
    return GraphParams(weighting=weighting, event_weights=weights, num_shards=shards,
                       max_rows_per_shard=120, session_gap_minutes=gap, **options)


@pytest.mark.composites
def test_every_rule_through_the_stage_matches_the_reference():
    """Each weighting with and without event weights, with the per-user cap, session cuts,
    min_pair_count 1 and 3, rank_by count and small top_k, at 1, 7 and auto user shards
    (40 rows a shard: several user shards and article partitions): one pipeline."""
    rng = random.Random(20261201)
    rows = random_rows(rng, 40, ["A", "B", "a", "b", "Z", "a1", "A0", "k", "m", "n", "q", "é"])
    tables = split(rows, 3)
    weights = parse_event_weights(ODD_WEIGHTS)
    cases = []
    for weighting, weighted, options, shards in VARIANTS:
        args = dict(options, weighting=weighting, event_weights=weights if weighted else None)
        expected = expected_first_day(rows, **args)
        edges, neighbours, nodes, _ = expected
        assert len(edges) > 15, (weighting, weighted, options)
        # Each option set here changes the graph on these rows, so the stage must apply it.
        for name, value in options.items():
            off = 1 if name == "min_pair_count" and value > 1 else DEFAULTS[name]
            assert expected_first_day(rows, **dict(args, **{name: off})) != expected, \
                (weighting, weighted, name)
        if weighted:
            unweighted = expected_first_day(rows, **dict(args, event_weights=None))
            assert unweighted[0] != edges, (weighting, options)
        cases.append((f"{weighting}{'Weighted' if weighted else ''}",
                      graph_params(weighting, weights if weighted else None, options, shards),
                      expected))
    with test_pipeline.TestPipeline(runner=RUNNER) as p:
        for label, params, expected in cases:
            check_graph(p, label, tables, params, expected)


# ---------------------------------------------------------------------- (d) option errors

@pytest.mark.functions
def test_parse_event_weights():
    assert parse_event_weights("") is None
    assert parse_event_weights(" chat_start:5, article_view:1,article_like:2.5") == {
        "chat_start": 5.0, "article_view": 1.0, "article_like": 2.5}


@pytest.mark.functions
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


@pytest.mark.functions
def test_parse_event_weights_wants_every_interaction():
    with pytest.raises(ValueError) as err:
        parse_event_weights("article_view:1")
    assert str(err.value) == ("--event_weights='article_view:1' gives no weight for "
                              "article_like, chat_start")


@pytest.mark.functions
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
    ("num_shards", -1, "--graph_shards=-1 must be auto (0) or >= 1"),
    ("max_rows_per_shard", 0, "--max_rows_per_shard=0 must be >= 1"),
])
def test_graph_params_check_names_the_flag(field, value, message):
    with pytest.raises(ValueError) as err:
        GraphParams(**{field: value}).check()
    assert str(err.value) == message
    # The composite checks at construction, before any pipeline runs.
    with pytest.raises(ValueError) as err:
        BuildCooccurrenceGraph(GraphParams(**{field: value}), known_index=None)
    assert str(err.value) == message


@pytest.mark.functions
def test_graph_params_check_reports_every_problem_and_passes_good_ones():
    with pytest.raises(ValueError) as err:
        GraphParams(window=0, top_k=0).check()
    assert str(err.value) == "--graph_window=0 must be >= 1; --top_k=0 must be >= 1"
    good = GraphParams(session_gap_minutes=0, max_session_length=2, max_events_per_user=0)
    assert good.check() is good
    assert good.gap_us == 0 and GraphParams(session_gap_minutes=1.5).gap_us == 90_000_000
    assert not GraphParams().weighted
    assert GraphParams(event_weights=WEIGHTS).weighted
