"""Training examples of one day as one composite: skip-gram pairs (item2vec),
next-article sequences and ranking lists, split into train and eval, with pseudonymous
user ids and the article index's integer ids.

Every shuffle is keyed by the data: whole users go to user shards, each shard asks the
article partitions for its own articles' indexes only, builds its sessions with the
graph's rules (transforms/graph/sessions.py) and encodes its records; files per kind and
split follow the bytes. No element or side input holds the catalogue
(docs/examples.md#how-the-stage-scales; the skip-gram step's two side inputs and their
bounds: docs/scale.md#side-inputs-of-the-examples). Every draw is a function of
(--examples_seed, run_date, a stable key of what is drawn): reruns, any shard count and
any number of workers write the same records.
"""


import typing
from typing import List, Optional, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from transforms.common import privacy
from transforms.common.sharding import from_ipc, resolve_shard_count, shard_ids, \
    split_by_shard, to_ipc, user_shards
from transforms.examples import skipgram
from transforms.examples.params import ExampleParams
from transforms.examples.shard import MergeArticleCounts, assign_files, batch_bytes, \
    files_per_split, order_file, select_example_rows, shard_examples, skipgram_pairs, \
    skipgram_records, sum_counts
from transforms.graph import index_store

# ---------------------------------------------------------------------------------------------
# DoFns

@beam.typehints.with_output_types(typing.Any)   # main and tagged outputs
class ShardRowsAndRequests(beam.DoFn):
    """A table of example rows -> (user shard, ("rows", Arrow IPC)) per user shard, and
    tagged REQUESTS (article partition, ("req", distinct (article id, user shard) pairs of
    the rows there)): the rows cross one shuffle, to their user shard, where the answers
    to the requests meet them."""

    REQUESTS = "requests"

    def process(self, table, num_shards: int, num_partitions: int):
        shard = user_shards(table.column("user_id"), num_shards)
        for target, part in split_by_shard(table, shard, num_shards):
            yield target, ("rows", to_ipc(part))
        pairs = pa.table({"article_id": table.column("article_id"),
                          "shard": pa.array(shard, pa.int64())})
        pairs = pairs.filter(pc.is_valid(pairs.column("article_id")))
        pairs = pairs.group_by(["article_id", "shard"]).aggregate([])
        ids = pairs.column("article_id").combine_chunks().cast(pa.string())
        for target, part in split_by_shard(pairs, shard_ids(ids, num_partitions),
                                           num_partitions):
            yield beam.pvalue.TaggedOutput(self.REQUESTS, (target, (
                "req", part.column("article_id").combine_chunks().cast(pa.string()),
                part.column("shard").to_numpy())))


def partition_index_chunk(chunk, num_partitions: int):
    for target, ids, index in index_store.split_index_chunk(chunk, num_partitions):
        yield target, ("idx", ids, index)


def answer_requests(element):
    """One article partition's index rows and requests -> (user shard, ("map", ids,
    indexes)), one answer per user shard that asked, holding only the ids it asked for."""
    _, values = element
    idx = [(v[1], v[2]) for v in values if v[0] == "idx"]
    reqs = [(v[1], v[2]) for v in values if v[0] == "req"]
    if not reqs:
        return
    ids = pa.concat_arrays([i for i, _ in idx]) if idx else pa.array([], pa.string())
    index = np.concatenate([x for _, x in idx]) if idx else np.zeros(0, np.int64)
    wanted = pa.table({"article_id": pa.concat_arrays([i for i, _ in reqs]),
                       "shard": pa.array(np.concatenate([s for _, s in reqs]), pa.int64())})
    wanted = wanted.group_by(["article_id", "shard"]).aggregate([])
    shard = wanted.column("shard").to_numpy()
    found = index_store.lookup_indexes(wanted.column("article_id"), ids, index)
    table = pa.table({"article_id": wanted.column("article_id"),
                      "index": pa.array(found, pa.int64())})
    for target, part in split_by_shard(table, shard, int(shard.max()) + 1):
        yield target, ("map", part.column("article_id").combine_chunks(),
                       part.column("index").to_numpy())


class BuildShardExamples(beam.DoFn):
    """(shard, [("rows", Arrow IPC), ("map", ids, indexes), ...]) -> records (main), tagged
    positions, article counts and counters."""

    POSITIONS, ARTICLE_COUNTS, COUNTS = "positions", "article_counts", "counts"

    def __init__(self, params: ExampleParams, salt_file: Optional[str],
                 salt_secret: Optional[str]):
        self._p, self._salt_file, self._salt_secret = params, salt_file, salt_secret
        self._salt = None
        self._records = Metrics.counter("examples", "records")

    def setup(self):
        self._salt = privacy.read_salt(self._salt_file, self._salt_secret)

    def process(self, element):
        shard, values = element
        payloads, map_ids, map_index = [], [], []
        for value in values:
            if value[0] == "rows":
                payloads.append(value[1])
            else:
                map_ids.append(value[1].cast(pa.string()))
                map_index.append(np.asarray(value[2], np.int64))
        if not payloads:
            return
        table = pa.concat_tables([from_ipc(d) for d in sorted(payloads)])
        ids = pa.concat_arrays(map_ids) if map_ids else pa.array([], pa.string())
        index = np.concatenate(map_index) if map_index else np.zeros(0, np.int64)
        out = shard_examples(table, ids, index, self._salt, self._p)
        for batch in out.records:
            self._records.inc(len(batch.records))
            yield batch
        if "skipgram" in self._p.kinds and len(out.positions["article"]):
            yield beam.pvalue.TaggedOutput(self.POSITIONS, out.positions)
            yield beam.pvalue.TaggedOutput(self.ARTICLE_COUNTS, out.article_counts)
        yield beam.pvalue.TaggedOutput(self.COUNTS, out.counts)


def regions_of(index: np.ndarray, regions) -> List[str]:
    """The region of each article index from the nodes' (indexes, regions) chunks ('' for
    an article without one): a sort and a search, no per-article Python."""
    chunks = [(np.asarray(i, np.int64), pa.array(r, pa.string()) if not isinstance(r, pa.Array)
               else r.cast(pa.string())) for i, r in regions if len(i)]
    if not chunks or not len(index):
        return [""] * len(index)
    known = np.concatenate([i for i, _ in chunks])
    names = pa.concat_arrays([r for _, r in chunks])
    order = np.argsort(known, kind="stable")
    known = known[order]
    at = np.minimum(np.searchsorted(known, index), len(known) - 1)
    hit = known[at] == index
    found = names.take(pa.array(order[at], pa.int64())).fill_null("")
    return pc.if_else(pa.array(hit), found, "").to_pylist()


def build_sampler(counts: Tuple[np.ndarray, np.ndarray], regions):
    """The negative sampler from the day's position counts and the nodes' regions
    (chunks of (index, region))."""
    index, count = counts
    return skipgram.NegativeSampler(index, count, regions_of(index, regions))


# ---------------------------------------------------------------------------------------------
# The composite

class BuildTrainingExamples(beam.PTransform):
    """Valid rows (PCollection of pa.Table or (key, pa.Table)) -> {kind: PCollection of
    pieces (split, (file number, files), [records in key order]) for PublishFileSets
    (fmt "records")} and "counts": one dict of counters.

    `index_chunks`: PCollection of (article ids, indexes) chunks of the day's article index
    (covering every article of the rows); `regions`: PCollection of (indexes, regions)
    chunks of the day's nodes (the interacted articles' region)."""

    def __init__(self, params: ExampleParams, index_chunks, regions,
                 salt_file: Optional[str] = None, salt_secret: Optional[str] = None):
        super().__init__()
        self._p = params.check()
        self._index, self._regions = index_chunks, regions
        self._salt_file, self._salt_secret = salt_file, salt_secret
        privacy.require_salt_source(salt_file, salt_secret)

    def expand(self, valid):
        p = self._p
        rows = valid | "SelectExampleRows" >> beam.Map(select_example_rows)
        row_count = (rows | "CountExampleRows" >> beam.Map(lambda t: t.num_rows)
                     | "SumExampleRows" >> beam.CombineGlobally(sum))
        shards = row_count | "ResolveExampleShards" >> beam.Map(
            lambda n: resolve_shard_count(0, n, p.max_rows_per_shard))
        index_rows = (self._index | "CountIndexRows" >> beam.Map(lambda c: len(c[1]))
                      | "SumIndexRows" >> beam.CombineGlobally(sum))
        partitions = row_count | "ResolveIndexPartitions" >> beam.Map(
            lambda n, m: resolve_shard_count(0, n + m, p.max_rows_per_shard),
            beam.pvalue.AsSingleton(index_rows))
        num_partitions = beam.pvalue.AsSingleton(partitions)
        sharded = rows | "ShardExampleUsers" >> beam.ParDo(
            ShardRowsAndRequests(), beam.pvalue.AsSingleton(shards),
            num_partitions).with_outputs(ShardRowsAndRequests.REQUESTS, main="rows")
        index_parts = self._index | "PartitionIndex" >> beam.FlatMap(partition_index_chunk,
                                                                     num_partitions)
        answers = ((sharded[ShardRowsAndRequests.REQUESTS], index_parts)
                   | "GatherIndexRequests" >> beam.Flatten()
                   | "GroupIndexPartitions" >> beam.GroupByKey()
                   | "AnswerIndexRequests" >> beam.FlatMap(answer_requests))
        built = ((sharded.rows, answers)
                 | "GatherShardInputs" >> beam.Flatten()
                 | "GroupExampleUsers" >> beam.GroupByKey()
                 | "BuildShardExamples" >> beam.ParDo(
                     BuildShardExamples(p, self._salt_file, self._salt_secret)).with_outputs(
                     BuildShardExamples.POSITIONS, BuildShardExamples.ARTICLE_COUNTS,
                     BuildShardExamples.COUNTS, main="records"))
        record_sets = [built.records]
        counter_sets = [built[BuildShardExamples.COUNTS]]
        if "skipgram" in p.kinds:
            counts = (built[BuildShardExamples.ARTICLE_COUNTS]
                      | "CountArticlePositions" >> beam.CombineGlobally(MergeArticleCounts()))
            total = counts | "TotalPositions" >> beam.Map(lambda c: int(c[1].sum()))
            frequent = counts | "FrequentArticles" >> beam.Map(
                lambda c: skipgram.frequent_articles(c[0], c[1], int(c[1].sum()), p.subsample))
            sampler = counts | "BuildNegativeSampler" >> beam.Map(
                build_sampler, beam.pvalue.AsList(self._regions))
            pairs = built[BuildShardExamples.POSITIONS] | "MakeSkipgramPairs" >> beam.Map(
                lambda positions, f, n: skipgram_pairs(positions, f, n, p),
                beam.pvalue.AsSingleton(frequent), beam.pvalue.AsSingleton(total))
            total_pairs = (pairs | "CountPairs" >> beam.Map(lambda x: len(x["target"]))
                           | "SumPairs" >> beam.CombineGlobally(sum))
            rate = total_pairs | "CapRate" >> beam.Map(
                lambda n: skipgram.cap_rate(p.max_pairs, n))
            packed = pairs | "PackSkipgramRecords" >> beam.Map(
                lambda x, s, r: skipgram_records(x, s, r, p),
                beam.pvalue.AsSingleton(sampler), beam.pvalue.AsSingleton(rate))
            record_sets.append(packed | "SkipgramRecords" >> beam.FlatMap(lambda x: x[0]))
            counter_sets.append(packed | "SkipgramCounts" >> beam.Map(lambda x: x[1]))
            counter_sets.append(total_pairs | "PairsBeforeCap" >> beam.Map(
                lambda n: {"skipgram_pairs_before_cap": n}))
        records = record_sets[0] if len(record_sets) == 1 else \
            tuple(record_sets) | "GatherRecords" >> beam.Flatten()
        counters = (tuple(counter_sets) | "GatherCounters" >> beam.Flatten()
                    | "SumCounters" >> beam.CombineGlobally(sum_counts))
        sizes = (records
                 | "RecordBytes" >> beam.Map(batch_bytes)
                 | "BytesPerSplit" >> beam.CombinePerKey(sum)
                 | "CollectBytes" >> beam.combiners.ToDict()
                 | "FilesPerSplit" >> beam.Map(files_per_split, p.target_bytes))
        files = (records
                 | "AssignFiles" >> beam.FlatMap(assign_files, beam.pvalue.AsSingleton(sizes))
                 | "GroupFiles" >> beam.GroupByKey()
                 | "OrderFiles" >> beam.Map(order_file))
        out = {"counts": counters}
        for kind in p.kinds:
            out[kind] = files | f"Select{kind.capitalize()}Files" >> beam.FlatMap(
                lambda kv, kind=kind: [kv[1]] if kv[0] == kind else [])
        return out
