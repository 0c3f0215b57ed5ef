"""The article co-occurrence graph as one composite: sessions, pair counts,
weights, top-K neighbours, node attributes and the stable article index.

Every shuffle is keyed by a shard of the data, and the number of shards is derived from
the day's interaction rows while the pipeline runs (or given): user shards count their
own pairs, article partitions merge them and get each source's marginals, and each
kept pair is mirrored to its destination's partition, which weighs and ranks it. No
element, accumulator or side input holds the catalogue: every array is sized by the
rows of its element (docs/scale.md#how-the-graph-avoids-every-catalogue-sized-array).
"""

import math
import typing
from typing import Dict, NamedTuple, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from schemas import contract
from transforms.common.columns import sorted_dictionary
from transforms.common.sharding import from_ipc, resolve_shard_count, shard_ids, \
    split_by_shard, to_ipc, user_shards
from transforms.graph import article_index, index_store, pairs as pairs_lib, \
    sessions as sessions_lib, weights as graph

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
    num_shards: int = 0            # 0: auto, ceil(interaction rows / max_rows_per_shard)
    max_rows_per_shard: int = 1_000_000
    edges: bool = True             # False: only the nodes and the article index

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
        if self.num_shards < 0:
            problems.append(f"--graph_shards={self.num_shards} must be auto (0) or >= 1")
        if self.max_rows_per_shard < 1:
            problems.append(f"--max_rows_per_shard={self.max_rows_per_shard} must be >= 1")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def gap_us(self) -> int:
        return int(round(self.session_gap_minutes * 60_000_000))

    @property
    def weighted(self) -> bool:
        return bool(self.event_weights)


def select_interactions(table) -> pa.Table:
    """Valid rows -> the interaction rows and columns the graph needs."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    table = table.select(list(INTERACTION_COLUMNS))
    mask = pc.is_in(table.column("event_name"), value_set=pa.array(contract.INTERACTION_EVENTS))
    return table.filter(mask)


def article_partitions(interaction_rows: int, window: int, max_rows_per_shard: int) -> int:
    """Article partitions of the day: each interaction row makes up to 2 x window partial
    pair rows, so ceil(rows x 2 x window / max_rows_per_shard) partitions keep a partition
    near max_rows_per_shard pair rows. They follow the data whatever --graph_shards says
    (that sets the user shards): a partition count tied to a large fixed shard count would
    make user shards x partitions tiny elements."""
    return resolve_shard_count(0, interaction_rows * 2 * window, max_rows_per_shard)


_USER_SHARD_BYTES = Metrics.distribution("graph", "shuffled_element_bytes")


def shard_by_user(table: pa.Table, num_shards: int):
    """(shard, Arrow IPC bytes) per non-empty shard; a shard holds whole users."""
    shards = user_shards(table.column("user_id"), num_shards)
    for shard, part in split_by_shard(table, shards, num_shards):
        data = to_ipc(part)
        _USER_SHARD_BYTES.update(len(data))
        yield shard, data


def _element_bytes(value) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, (pairs_lib.Part, pa.Table, pa.RecordBatch, pa.Array)):
        return int(value.nbytes)
    if isinstance(value, tuple):
        return sum(_element_bytes(v) for v in value)
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    return 0


# Tags of what an article partition receives, and of what it sends to the ranking.
PAIRS, NODES, REGIONS, KNOWN = "pairs", "nodes", "regions", "known"
TOTALS, EDGES = "totals", "edges"


class CountShardPairs(beam.DoFn):
    """Whole users of one user shard -> (article partition, (tag, payload)): partial pair
    counts (PAIRS), node frequencies (NODES) and region counts (REGIONS), each holding
    only the articles of its own rows."""

    def __init__(self, params: GraphParams):
        self._p = params
        self._classes = pairs_lib.weight_classes(params.event_weights)
        self._interactions = Metrics.counter("graph", "interactions")
        self._sessions = Metrics.counter("graph", "sessions")
        self._pairs = Metrics.counter("graph", "pair_occurrences")
        self._shard_rows = Metrics.distribution("graph", "user_shard_rows")
        self._bytes = Metrics.distribution("graph", "shuffled_element_bytes")

    def process(self, element, num_partitions: int):
        shard, payloads = element
        p, classes = self._p, self._classes
        # Sorted payloads: the concatenation never depends on arrival order.
        table = pa.concat_tables([from_ipc(data) for data in sorted(payloads)])
        self._shard_rows.update(table.num_rows)
        # Users only need grouping (any integer code), articles any dictionary of the
        # shard's own ids: no string sort here.
        users, _ = sorted_dictionary(table.column("user_id"), sort=False)
        ts = table.column("event_timestamp").combine_chunks().cast(pa.int64()).to_numpy()
        order = sessions_lib.order_by_user_time_id(users, ts, table.column("event_id"))
        row_codes, ids = sorted_dictionary(table.column("article_id"), sort=False)
        users, ts, codes = users[order], ts[order], row_codes[order]
        if p.weighted:
            class_of = np.array([classes.of_event[n] for n in contract.INTERACTION_EVENTS])
            wclass = class_of[pc.index_in(table.column("event_name").combine_chunks(),
                                          value_set=pa.array(contract.INTERACTION_EVENTS))
                              .to_numpy()][order]
        else:
            wclass = np.zeros(len(codes), dtype=np.int64)
        rows = order
        if p.max_events_per_user:
            # The per-user cap decides which rows exist for the nodes too.
            keep = sessions_lib.first_rows_per_user(users, p.max_events_per_user)
            rows = order[keep]
            users, codes, ts, wclass = users[keep], codes[keep], ts[keep], wclass[keep]
        # Weight classes rank the weights, so a collapsed run keeps the largest weight's class.
        sess = sessions_lib.sessionize(users, ts, codes, wclass.astype(np.float64), p.gap_us,
                                       0, p.max_session_length)
        self._interactions.inc(len(codes))
        self._sessions.inc(int(sess.session[-1]) + 1 if len(sess.session) else 0)
        partition_of = shard_ids(ids, num_partitions)
        if p.edges:
            left, right = sessions_lib.window_pair_positions(sess, p.window)
            self._pairs.inc(2 * len(left))
            counted = pairs_lib.shard_pair_part(sess.article, sess.weight.astype(np.int64),
                                                left, right, len(ids), len(classes.weights))
            # Narrow columns for the shuffle: counts in the smallest type that holds them,
            # and no class column when there is one class.
            counted["count"] = pairs_lib.narrow(
                counted["count"],
                int(counted["count"].max()) + 1 if len(counted["count"]) else 1)
            if len(classes.products) == 1:
                del counted["cls"]
            for target, part in pairs_lib.split_part(ids, counted, ("src", "dst"),
                                                     partition_of[counted["src"]]):
                yield self._sent(target, PAIRS, part)
        frequency = np.bincount(sess.article, minlength=len(ids))
        present = np.flatnonzero(frequency)
        for target, part in pairs_lib.split_part(
                ids, {"article": present, "frequency": frequency[present].astype(np.int64)},
                ("article",), partition_of[present]):
            yield self._sent(target, NODES, part)
        region_rows = pa.table({"article": pa.array(row_codes[rows]),
                                "region_id": table.column("region_id").take(pa.array(rows))})
        region_rows = region_rows.filter(pc.is_valid(region_rows.column("region_id")))
        counts = graph.count_by(region_rows, ["article", "region_id"])
        article = counts.column("article").to_numpy()
        named = pa.table({"n": counts.column("n"),
                          "article_id": ids.take(pa.array(article, pa.int64())),
                          "region_id": counts.column("region_id")})
        for target, part in split_by_shard(named, partition_of[article], num_partitions):
            yield self._sent(target, REGIONS, part)

    def _sent(self, target, tag, payload):
        self._bytes.update(_element_bytes(payload))
        return target, (tag, payload)


def other_article_ids(element) -> pa.Array:
    """Valid rows -> the distinct article ids of rows that are not interactions
    (impressions, server events). No side input: it runs where the rows are read, so only
    these ids, not the rows, wait for the partition count."""
    table = element[1] if isinstance(element, tuple) else element
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if "event_name" not in table.column_names or "article_id" not in table.column_names:
        return pa.array([], pa.string())
    mask = pc.and_(pc.invert(pc.is_in(table.column("event_name"),
                                      value_set=pa.array(contract.INTERACTION_EVENTS))),
                   pc.is_valid(table.column("article_id")))
    return pc.unique(table.column("article_id").filter(mask).combine_chunks()
                     .cast(pa.string()))


def other_articles(element, num_partitions: int):
    """Valid rows, or their other_article_ids -> (article partition, (NODES, part)) of the
    articles of rows that are not interactions, with frequency 0: the article index covers
    every article of the day's valid events; the nodes stay the interacted ones."""
    ids = element if isinstance(element, pa.Array) else other_article_ids(element)
    if not len(ids):
        return
    codes = np.arange(len(ids), dtype=np.int64)
    for target, part in pairs_lib.split_part(ids, {"article": codes,
                                                   "frequency": np.zeros(len(ids), np.int64)},
                                             ("article",), shard_ids(ids, num_partitions)):
        yield target, (NODES, part)


def partition_known(chunk: Tuple[pa.Array, np.ndarray], num_partitions: int):
    """A chunk of the known index -> (partition, (KNOWN, (ids, indexes))) per partition."""
    for target, ids, index in index_store.split_index_chunk(chunk, num_partitions):
        yield target, (KNOWN, (ids, index))


def _nodes_batch(ids: pa.Array, frequency: np.ndarray, region: pa.Array,
                 index: np.ndarray) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [ids.cast(pa.binary()), pa.array(frequency, pa.int64()), region.cast(pa.binary()),
         pa.array(index, pa.int64())], ["article_id", "frequency", "region_id", "index"])


def _index_batch(ids: pa.Array, index: np.ndarray) -> pa.RecordBatch:
    order = np.argsort(index, kind="stable")
    return pa.RecordBatch.from_arrays(
        [ids.cast(pa.binary()).take(pa.array(order)), pa.array(index[order], pa.int64())],
        ["article_id", "index"])


@beam.typehints.with_output_types(typing.Any)   # main and tagged outputs
class MergeArticlePartition(beam.DoFn):
    """Everything about one article partition -> its source marginals (TOTALS, to its own
    ranking), its kept pairs mirrored to the destination's partition (EDGES), the pair total
    per weight class (CLASS_TOTALS), the partition's pieces of the nodes and index files of
    known articles (main output) and its new articles (NEW)."""

    CLASS_TOTALS, RANK_INPUT, NEW = "class_totals", "rank_input", "new"

    def __init__(self, params: GraphParams):
        self._p = params
        self._products = pairs_lib.weight_classes(params.event_weights).products
        self._bytes = Metrics.distribution("graph", "shuffled_element_bytes")

    def process(self, element, num_partitions: int):
        partition, values = element
        got = {PAIRS: [], NODES: [], REGIONS: [], KNOWN: []}
        for tag, payload in values:
            got[tag].append(payload)
        merged = pairs_lib.merge_pair_parts(got[PAIRS], self._products)
        yield beam.pvalue.TaggedOutput(self.CLASS_TOTALS, merged.class_totals)
        if len(merged.sources):
            yield self._rank_input(partition, TOTALS, pairs_lib.source_totals(merged))
        for target, part in pairs_lib.mirrored_edges(merged, self._p.min_pair_count,
                                                     num_partitions):
            yield self._rank_input(target, EDGES, part)
        nodes = article_index.merge_nodes(got[NODES], got[REGIONS])
        joined = article_index.join_known(nodes, got[KNOWN])
        if len(joined.known_ids):
            yield "index", 2 * partition, _index_batch(joined.known_ids, joined.known_index)
        interacted = joined.day_known[nodes.frequency[joined.day_known] > 0]
        if len(interacted):
            take = pa.array(interacted, pa.int64())
            yield "nodes", 2 * partition, _nodes_batch(
                nodes.ids.take(take), nodes.frequency[interacted], nodes.region.take(take),
                joined.day_known_index[nodes.frequency[joined.day_known] > 0])
        if len(joined.day_new):
            take = pa.array(joined.day_new, pa.int64())
            yield beam.pvalue.TaggedOutput(self.NEW, (
                nodes.ids.take(take), nodes.frequency[joined.day_new], nodes.region.take(take)))

    def _rank_input(self, target, tag, part):
        self._bytes.update(part.nbytes)
        return beam.pvalue.TaggedOutput(self.RANK_INPUT, (target, (tag, part)))


class RankPartition(beam.DoFn):
    """One article partition's source marginals and incoming kept edges -> pieces of the
    edges and neighbors files: (file set, piece key, RecordBatch)."""

    def __init__(self, params: GraphParams):
        self._p = params
        self._edges = Metrics.counter("graph", "edges")

    def process(self, element, total: float):
        partition, values = element
        p = self._p
        totals = [part for tag, part in values if tag == TOTALS]
        edges = [part for tag, part in values if tag == EDGES]
        ranked = pairs_lib.rank_edges(totals, edges, total, p.weighting, p.rank_by, p.top_k)
        if not len(ranked.count):
            return
        self._edges.inc(len(ranked.count))
        weight = pa.array(ranked.weight, pa.float32())
        count = pa.array(ranked.count, pa.int64())
        yield "edges", partition, pa.RecordBatch.from_arrays(
            [ranked.src_ids, ranked.dst_ids, count, weight],
            ["src_article_id", "dst_article_id", "count", "weight"])
        src = ranked.src_ids
        first = np.flatnonzero(np.r_[True, pc.not_equal(src.slice(1), src.slice(0, len(src) - 1))
                                    .to_numpy(zero_copy_only=False)])
        offsets = pa.array(np.r_[first, len(src)].astype(np.int32))
        yield "neighbors", partition, pa.RecordBatch.from_arrays(
            [src.take(pa.array(first)), pa.ListArray.from_arrays(offsets, ranked.dst_ids),
             pa.ListArray.from_arrays(offsets, weight), pa.ListArray.from_arrays(offsets, count)],
            ["article_id", "neighbor_ids", "neighbor_weights", "neighbor_counts"])


def pair_total(class_totals: np.ndarray, products: np.ndarray) -> float:
    """N (or the weighted N): the day's integer pair total per weight class (summed over
    partitions, O(classes) state) times the class's weight product, in class order."""
    return float(pairs_lib.weighted_sum(np.asarray(class_totals)[None, :], products)[0])


@beam.typehints.with_output_types(typing.Any)   # main and tagged outputs
class BucketNewArticles(beam.DoFn):
    """New articles of a partition -> (id range, (ids, frequency, region)), and tagged CELLS
    the count of new articles per (frequency, range)."""

    CELLS = "cells"

    def process(self, new, splitters):
        ids, frequency, region = new
        bucket = article_index.bucket_of(ids, splitters)
        yield beam.pvalue.TaggedOutput(self.CELLS, article_index.cell_counts(frequency, bucket))
        table = pa.table({"article_id": ids, "frequency": pa.array(frequency),
                          "region_id": region})
        for target, part in split_by_shard(table, bucket, len(splitters) + 1):
            yield target, part


def merge_cells(cell_dicts) -> Dict:
    total: Dict = {}
    for cells in cell_dicts:
        for cell, n in cells.items():
            total[cell] = total.get(cell, 0) + n
    return total


def index_new_articles(element, offsets, largest_known: int):
    """All new articles of one id range -> pieces of the nodes and index files."""
    bucket, tables = element
    table = pa.concat_tables(list(tables))
    ids = table.column("article_id").combine_chunks()
    frequency = table.column("frequency").to_numpy()
    order, index = article_index.rank_new(ids, frequency, bucket, offsets, largest_known + 1)
    take = pa.array(order, pa.int64())
    ids = ids.take(take)
    frequency = frequency[order]
    interacted = np.flatnonzero(frequency > 0)   # the others are appended after, by id
    if len(interacted):
        rows = pa.array(interacted, pa.int64())
        yield "nodes", 2 * bucket + 1, _nodes_batch(
            ids.take(rows), frequency[interacted],
            table.column("region_id").combine_chunks().take(take).take(rows), index[interacted])
    yield "index", 2 * bucket + 1, _index_batch(ids, index)


class BuildCooccurrenceGraph(beam.PTransform):
    """Valid rows (PCollection of pa.Table or (key, pa.Table)) -> {"pieces": PCollection of
    (file set, piece key, RecordBatch) for the file sets edges, neighbors, nodes and index;
    "shards": the resolved user shard count, "partitions": the article partition count
    (one int each)}.

    `known_index` is a PCollection of chunks (article ids, indexes) of the latest published
    article index (none on the first day), e.g. one chunk per file."""

    def __init__(self, params: GraphParams, known_index):
        super().__init__()
        self._p = params.check()
        self._known = known_index

    def expand(self, valid):
        p = self._p
        products = pairs_lib.weight_classes(p.event_weights).products
        rows = valid | "SelectInteractions" >> beam.Map(
            lambda element: select_interactions(
                element[1] if isinstance(element, tuple) else element))
        interactions = (rows | "CountInteractions" >> beam.Map(lambda table: table.num_rows)
                        | "SumInteractions" >> beam.CombineGlobally(sum))
        shards = interactions | "ResolveGraphShards" >> beam.Map(
            lambda rows: resolve_shard_count(p.num_shards, rows, p.max_rows_per_shard))
        partitions = interactions | "ResolveArticlePartitions" >> beam.Map(
            article_partitions, p.window, p.max_rows_per_shard)
        num_shards = beam.pvalue.AsSingleton(shards)
        num_partitions = beam.pvalue.AsSingleton(partitions)
        partials = (rows
                    | "ShardByUser" >> beam.FlatMap(shard_by_user, num_shards)
                    | "GroupUserShards" >> beam.GroupByKey()
                    | "CountPairs" >> beam.ParDo(CountShardPairs(p), num_partitions))
        known = self._known | "PartitionKnownIndex" >> beam.FlatMap(partition_known,
                                                                    num_partitions)
        others = (valid | "ListOtherArticleIds" >> beam.Map(other_article_ids)
                  | "ListOtherArticles" >> beam.FlatMap(other_articles, num_partitions))
        largest_known = (self._known
                         | "LargestIndexOfChunk" >> beam.Map(
                             lambda chunk: int(chunk[1].max()) if len(chunk[1]) else 0)
                         | "LargestKnownIndex" >> beam.CombineGlobally(
                             lambda values: max(values, default=0)))
        merged = ((partials, known, others)
                  | "GatherArticlePartitions" >> beam.Flatten()
                  | "GroupArticlePartitions" >> beam.GroupByKey()
                  | "MergeArticlePartitions" >> beam.ParDo(
                      MergeArticlePartition(p), num_partitions).with_outputs(
                      MergeArticlePartition.CLASS_TOTALS, MergeArticlePartition.RANK_INPUT,
                      MergeArticlePartition.NEW, main="pieces"))
        total = (merged[MergeArticlePartition.CLASS_TOTALS]
                 | "SumClassTotals" >> beam.CombineGlobally(
                     lambda arrays: sum(arrays, np.zeros(len(products), dtype=np.int64)))
                 | "WeighPairTotal" >> beam.Map(pair_total, products))
        pieces = [merged.pieces]
        if p.edges:
            pieces.append(merged[MergeArticlePartition.RANK_INPUT]
                          | "GroupRankInputs" >> beam.GroupByKey()
                          | "RankNeighbours" >> beam.ParDo(RankPartition(p),
                                                           beam.pvalue.AsSingleton(total)))
        new = merged[MergeArticlePartition.NEW]
        splitters = (new
                     | "SampleNewArticles" >> beam.FlatMap(
                         lambda n: article_index.sample_ids(n[0], p.max_rows_per_shard)
                         .to_pylist())
                     | "CollectSample" >> beam.combiners.ToList()
                     | "ChooseSplitters" >> beam.Map(article_index.splitters_from_sample))
        bucketed = new | "BucketNewArticles" >> beam.ParDo(
            BucketNewArticles(), beam.pvalue.AsSingleton(splitters)).with_outputs(
            BucketNewArticles.CELLS, main="buckets")
        offsets = (bucketed[BucketNewArticles.CELLS]
                   | "CountCells" >> beam.CombineGlobally(merge_cells)
                   | "OffsetCells" >> beam.Map(article_index.cell_offsets))
        indexed = (bucketed.buckets
                   | "GroupNewArticles" >> beam.GroupByKey()
                   | "IndexNewArticles" >> beam.FlatMap(
                       index_new_articles, beam.pvalue.AsSingleton(offsets),
                       beam.pvalue.AsSingleton(largest_known)))
        pieces = (tuple(pieces) + (indexed,)
                  | "GatherGraphPieces" >> beam.Flatten())
        return {"pieces": pieces, "shards": shards, "partitions": partitions}
