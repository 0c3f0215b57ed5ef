"""The article co-occurrence graph as one composite: sessions, pair counts,
weights, top-K neighbours, node attributes and the stable article index.

Columnar inside: users are sharded by a stable hash so a shard holds whole
users; each shard is sessionised and its pairs counted as packed integer keys
over one global article dictionary (sorted in byte order, so code order is id
order); partial counts are shuffled by source article and ranked vectorised.
A popular article never makes a hot key: keys are shard numbers, and each user
shard sends at most one partial count per pair.
"""

import math
from typing import Dict, NamedTuple, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from schemas import contract
from transforms import graph
from transforms import sessions as sessions_lib
from transforms.sharding import from_ipc, split_by_shard, to_ipc, user_shards

INTERACTION_COLUMNS = ("user_id", "event_id", "event_timestamp", "article_id", "event_name",
                       "region_id")


class GraphParams(NamedTuple):
    session_gap_minutes: float = 30.0
    window: int = 5
    min_pair_count: int = 2
    weighting: str = "ppmi"
    rank_by: str = "weight"
    top_k: int = 50
    max_session_length: int = 0
    max_events_per_user: int = 0
    event_weights: Optional[Dict[str, float]] = None
    num_shards: int = 4

    def check(self) -> "GraphParams":
        problems = []
        if not (math.isfinite(self.session_gap_minutes) and self.session_gap_minutes >= 0):
            problems.append(f"--session_gap_minutes={self.session_gap_minutes} must be >= 0")
        if self.window < 1:
            problems.append(f"--graph_window={self.window} must be >= 1")
        if self.min_pair_count < 1:
            problems.append(f"--min_pair_count={self.min_pair_count} must be >= 1")
        if self.weighting not in graph.WEIGHTINGS:
            problems.append(f"--weighting={self.weighting!r} must be one of "
                            f"{', '.join(graph.WEIGHTINGS)}")
        if self.rank_by not in graph.RANK_BY:
            problems.append(f"--rank_by={self.rank_by!r} must be weight or count")
        if self.top_k < 1:
            problems.append(f"--top_k={self.top_k} must be >= 1")
        if self.max_session_length < 0 or self.max_session_length == 1:
            problems.append(f"--max_session_length={self.max_session_length} must be 0 (off) "
                            "or >= 2")
        if self.max_events_per_user < 0:
            problems.append(f"--max_events_per_user={self.max_events_per_user} must be >= 0")
        if self.num_shards < 1:
            problems.append(f"--graph_shards={self.num_shards} must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def gap_us(self) -> int:
        return int(round(self.session_gap_minutes * 60_000_000))

    @property
    def weighted(self) -> bool:
        return bool(self.event_weights)


def parse_event_weights(text: str) -> Optional[Dict[str, float]]:
    """'article_view:1,article_like:3,chat_start:5' -> weights; '' -> None (off)."""
    if not text:
        return None
    weights = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition(":")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or name not in contract.INTERACTION_EVENTS or \
                not (math.isfinite(weight) and weight > 0) or name in weights:
            raise ValueError(
                f"--event_weights={text!r}: each item must be <event>:<positive number> with "
                f"<event> one of {', '.join(contract.INTERACTION_EVENTS)}, each once, and a finite "
                f"positive weight; got {item!r}")
        weights[name] = weight
    missing = [n for n in contract.INTERACTION_EVENTS if n not in weights]
    if missing:
        raise ValueError(f"--event_weights={text!r} gives no weight for {', '.join(missing)}")
    return weights


def select_interactions(table) -> pa.Table:
    """Valid rows -> the interaction rows and columns the graph needs."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    table = table.select(list(INTERACTION_COLUMNS))
    mask = pc.is_in(table.column("event_name"), value_set=pa.array(contract.INTERACTION_EVENTS))
    return table.filter(mask)


def shard_by_user(table: pa.Table, num_shards: int):
    """(shard, Arrow IPC bytes) per non-empty shard; a shard holds whole users."""
    shards = user_shards(table.column("user_id"), num_shards)
    for shard, part in split_by_shard(table, shards, num_shards):
        yield shard, to_ipc(part)


def _sorted_unique(arrays) -> pa.Array:
    arrays = [a for a in arrays if len(a)]
    if not arrays:
        return pa.array([], pa.string())
    values = pc.unique(pa.chunked_array(arrays, pa.string()).combine_chunks())
    return values.take(pc.sort_indices(values))


class CollectArticles(beam.CombineFn):
    """Distinct article ids of the day, sorted in byte order: the global dictionary."""

    def create_accumulator(self):
        return []

    def add_input(self, acc, table):
        acc.append(pc.unique(table.column("article_id").combine_chunks()))
        if len(acc) > 64:
            acc[:] = [_sorted_unique(acc)]
        return acc

    def merge_accumulators(self, accs):
        return [_sorted_unique([a for acc in accs for a in acc])]

    def extract_output(self, acc):
        return _sorted_unique(acc)


class GatherShardPartials(beam.CombineFn):
    """Every user shard's partial article totals and node partials, in one global
    combine. Arrays are summed in shard order, so float sums do not depend on the
    order shards finish in. Output: {"totals": (c, weighted c or None) or None when
    no shard had interactions, "nodes": [(shard, (frequency, region counts)), ...]}."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, element):
        shard, partial = element
        acc[shard] = partial
        return acc

    def merge_accumulators(self, accs):
        merged = {}
        for acc in accs:
            merged.update(acc)
        return merged

    def extract_output(self, acc):
        totals = None
        for shard in sorted(acc):
            c, wc = acc[shard]["c"], acc[shard]["wc"]
            totals = (c, wc) if totals is None else \
                (totals[0] + c, None if wc is None else totals[1] + wc)
        nodes = [(shard, (acc[shard]["frequency"], acc[shard]["regions"]))
                 for shard in sorted(acc)]
        return {"totals": totals, "nodes": nodes}


class CountShardPairs(beam.DoFn):
    """Whole users of one shard -> partial pair counts by source shard (main output)
    and, tagged PARTIALS, the shard's article totals and node partials."""

    PARTIALS = "partials"

    def __init__(self, params: GraphParams):
        self._p = params
        self._interactions = Metrics.counter("graph", "interactions")
        self._sessions = Metrics.counter("graph", "sessions")
        self._pairs = Metrics.counter("graph", "pair_occurrences")

    def process(self, element, articles: pa.Array):
        shard, payloads = element
        p = self._p
        n_articles = len(articles)
        # Sorted payloads: the concatenation (hence float sums) never depends on arrival order.
        table = pa.concat_tables([from_ipc(data) for data in sorted(payloads)])
        users = sessions_lib.user_ranks(table.column("user_id"))
        ts = table.column("event_timestamp").combine_chunks().cast(pa.int64()).to_numpy()
        order = sessions_lib.order_by_user_time_id(users, ts, table.column("event_id"))
        users, ts = users[order], ts[order]
        codes = pc.index_in(table.column("article_id").combine_chunks(),
                            value_set=articles).to_numpy().astype(np.int64)[order]
        if p.weighted:
            weight_of = np.array([p.event_weights[n] for n in contract.INTERACTION_EVENTS])
            weights = weight_of[pc.index_in(table.column("event_name").combine_chunks(),
                                            value_set=pa.array(contract.INTERACTION_EVENTS))
                                .to_numpy()][order]
        else:
            weights = np.ones(len(codes))
        region_rows = table
        if p.max_events_per_user:
            # The per-user cap decides which rows exist for the nodes too.
            starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
            rank = np.arange(len(users)) - np.repeat(starts, np.diff(np.r_[starts, len(users)]))
            keep = rank < p.max_events_per_user
            region_rows = table.take(pa.array(order[keep]))
            users, codes, ts, weights = users[keep], codes[keep], ts[keep], weights[keep]
        sess = sessions_lib.sessionize(users, ts, codes, weights, p.gap_us,
                                       0, p.max_session_length)
        pairs = sessions_lib.window_pairs(sess, p.window, with_weights=p.weighted)
        counts = graph.count_pairs(pairs.src, pairs.dst, pairs.weight if p.weighted else None,
                                   n_articles)
        self._interactions.inc(len(codes))
        self._sessions.inc(int(sess.session[-1]) + 1 if len(sess.session) else 0)
        self._pairs.inc(len(pairs.src))

        c_total = np.bincount(counts.src, weights=counts.count, minlength=n_articles)
        wc_total = (np.bincount(counts.src, weights=counts.wcount, minlength=n_articles)
                    if p.weighted else None)
        frequency = np.bincount(sess.article, minlength=n_articles).astype(np.int64)
        regions = region_rows.select(["article_id", "region_id"]).filter(
            pc.is_valid(region_rows.column("region_id")))
        region_counts = graph.count_by(regions, ["article_id", "region_id"])
        yield beam.pvalue.TaggedOutput(self.PARTIALS, (shard, {
            "c": c_total.astype(np.int64), "wc": wc_total, "frequency": frequency,
            "regions": region_counts}))

        # Narrow types for the shuffle where they fit (article codes always do).
        code_type = np.int32 if n_articles < 2**31 else np.int64
        count_type = np.int32 if len(counts.count) == 0 or counts.count.max() < 2**31 \
            else np.int64
        source_shard = counts.src % p.num_shards
        for target in range(p.num_shards):
            mask = source_shard == target
            if mask.any():
                part = graph.PairCounts(counts.src[mask].astype(code_type),
                                        counts.dst[mask].astype(code_type),
                                        counts.count[mask].astype(count_type),
                                        counts.wcount[mask] if p.weighted else None)
                yield target, (shard, part)


def _list_array(offsets: np.ndarray, values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


class RankNeighbours(beam.DoFn):
    """All partial counts of one source-article shard -> top-K edges and neighbour lists."""

    EDGES = "edges"
    NEIGHBORS = "neighbors"

    def __init__(self, params: GraphParams):
        self._p = params
        self._edges = Metrics.counter("graph", "edges")

    def process(self, element, articles: pa.Array, partials):
        shard, parts = element
        p = self._p
        parts = [part for _, part in sorted(parts, key=lambda item: item[0])]
        counts = graph.merge_pair_counts(parts, len(articles))
        c_total, wc_total = partials["totals"]
        if p.weighted:
            measure, node_total = counts.wcount, wc_total
        else:
            measure, node_total = counts.count, c_total
        weight64 = graph.edge_weights(measure, node_total[counts.src], node_total[counts.dst],
                                      float(node_total.sum()), p.weighting)
        keep = counts.count >= p.min_pair_count
        if p.weighting == "ppmi":
            keep &= weight64 > 0
        src, dst = counts.src[keep], counts.dst[keep]
        count = counts.count[keep]
        weight = weight64[keep].astype(np.float32)
        rank_value = weight if p.rank_by == "weight" else count
        chosen = graph.top_k(src, dst, rank_value, p.top_k)
        src, dst, count, weight = src[chosen], dst[chosen], count[chosen], weight[chosen]
        self._edges.inc(len(src))
        src_ids = articles.take(pa.array(src)).cast(pa.binary())
        dst_ids = articles.take(pa.array(dst)).cast(pa.binary())
        edges = pa.RecordBatch.from_arrays(
            [src_ids, dst_ids, pa.array(count, pa.int64()), pa.array(weight, pa.float32())],
            ["src_article_id", "dst_article_id", "count", "weight"])
        yield beam.pvalue.TaggedOutput(self.EDGES, (shard, edges))
        starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]]) if len(src) else \
            np.zeros(0, dtype=np.int64)
        offsets = np.r_[starts, len(src)]
        neighbors = pa.RecordBatch.from_arrays(
            [articles.take(pa.array(src[starts], pa.int64())).cast(pa.binary()),
             _list_array(offsets, dst_ids),
             _list_array(offsets, pa.array(weight, pa.float32())),
             _list_array(offsets, pa.array(count, pa.int64()))],
            ["article_id", "neighbor_ids", "neighbor_weights", "neighbor_counts"])
        yield beam.pvalue.TaggedOutput(self.NEIGHBORS, (shard, neighbors))


def describe_nodes(gathered, articles: pa.Array, previous) -> Dict[str, pa.RecordBatch]:
    """Node partials of every user shard -> the day's nodes and the full article index.

    `previous` is (article ids, indexes) of the latest published index (empty when none)."""
    frequency = np.zeros(len(articles), dtype=np.int64)
    region_tables = []
    for _, (freq, regions) in gathered["nodes"]:
        frequency += freq
        region_tables.append(regions)
    present = np.flatnonzero(frequency > 0)
    ids = articles.take(pa.array(present, pa.int64()))
    freq = frequency[present]
    known_ids, known_index = previous
    index, full = graph.assign_index(ids, freq, known_ids, known_index)
    if region_tables:
        modes = graph.region_mode_from_counts(pa.concat_tables(region_tables))
    else:
        modes = pa.table({"article_id": pa.array([], pa.string()),
                          "region_id": pa.array([], pa.string())})
    where = pc.index_in(ids, value_set=modes.column("article_id").combine_chunks())
    region = modes.column("region_id").combine_chunks().take(where)
    nodes = pa.RecordBatch.from_arrays(
        [ids.cast(pa.binary()), pa.array(freq, pa.int64()), region.cast(pa.binary()),
         pa.array(index, pa.int64())],
        ["article_id", "frequency", "region_id", "index"])
    index_batch = pa.RecordBatch.from_arrays(
        [full.column("article_id").combine_chunks().cast(pa.binary()),
         full.column("index").combine_chunks()], ["article_id", "index"])
    return {"nodes": nodes, "index": index_batch}


class BuildCooccurrenceGraph(beam.PTransform):
    """Valid rows (PCollection of pa.Table or (key, pa.Table)) -> dict of PCollections:
    "edges" and "neighbors" ((shard, RecordBatch) per source shard), "nodes" and
    "index" (one RecordBatch each), "stats" (one dict).

    The previous article index comes in as a side input PCollection of one
    (article ids, indexes) pair."""

    def __init__(self, params: GraphParams, previous_index):
        super().__init__()
        self._p = params.check()
        self._previous = previous_index

    def expand(self, valid):
        p = self._p
        rows = valid | "SelectInteractions" >> beam.Map(
            lambda element: select_interactions(
                element[1] if isinstance(element, tuple) else element))
        articles = rows | "CollectArticles" >> beam.CombineGlobally(CollectArticles())
        articles_side = beam.pvalue.AsSingleton(articles)
        by_user = (rows
                   | "ShardByUser" >> beam.FlatMap(shard_by_user, p.num_shards)
                   | "GroupUserShards" >> beam.GroupByKey())
        counted = by_user | "CountPairs" >> beam.ParDo(
            CountShardPairs(p), articles=articles_side).with_outputs(
            CountShardPairs.PARTIALS, main="pairs")
        gathered = (counted[CountShardPairs.PARTIALS]
                    | "GatherShardPartials" >> beam.CombineGlobally(GatherShardPartials()))
        ranked = (counted.pairs
                  | "GroupSourceShards" >> beam.GroupByKey()
                  | "RankNeighbours" >> beam.ParDo(
                      RankNeighbours(p), articles=articles_side,
                      partials=beam.pvalue.AsSingleton(gathered)).with_outputs(
                      RankNeighbours.EDGES, RankNeighbours.NEIGHBORS))
        described = gathered | "DescribeNodes" >> beam.Map(
            describe_nodes, articles=articles_side,
            previous=beam.pvalue.AsSingleton(self._previous))
        return {
            "edges": ranked[RankNeighbours.EDGES],
            "neighbors": ranked[RankNeighbours.NEIGHBORS],
            "nodes": described | "TakeNodes" >> beam.Map(lambda d: d["nodes"]),
            "index": described | "TakeIndex" >> beam.Map(lambda d: d["index"]),
        }
