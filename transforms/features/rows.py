"""Article and user features, the rows of a window: the daily partials (partials.py) of
today and the lookback days merged per entity shard into the train and eval rows
tf.Transform analyses (plain functions, then the composite that shards them).

Train and eval rows merge the parts of each day their window covers
(window_membership), by the rules of docs/features.md#windows.
"""

import typing
from typing import Dict, List, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import features as F
from transforms.common.columns import combined
from transforms.common.privacy import in_eval_by_user
from transforms.common.sharding import from_ipc, shard_ids, split_by_shard, to_ipc
from transforms.features.partials import DAILY, INDEX, LOOKBACK, TODAY, empty_articles, \
    empty_users, group_starts, reduce_articles, reduce_users
from transforms.features.tfxio_rows import tfxio_batch
from transforms.graph.index_store import lookup_indexes, split_index_chunk


# ---------------------------------------------------------------------------------------------
# Windows


def window_membership(days_back: int, part: int, lookback: int) -> Tuple[bool, bool]:
    """(in the train window, in the eval window) of part `part` of the day `days_back`
    days before today (docs/features.md#windows)."""
    if days_back == 0:
        return part == F.PART_BEFORE, True
    if days_back < lookback:
        return True, True
    if days_back == lookback:
        return part == F.PART_FROM, False
    return False, False




# ---------------------------------------------------------------------------------------------
# Rows of the window


def article_rows(merged: pa.Table, window_end_us: int, index_ids: pa.Array,
                 index_values: np.ndarray) -> pa.Table:
    """Articles merged over a window (reduce_articles by article_id) -> raw feature rows
    (schemas.features.ARTICLE_RAW), in article_id order."""
    ids = combined(merged.column("article_id")).cast(pa.string())
    created = merged.column(F.CREATED_US)
    created = combined(created)
    age = (window_end_us - np.asarray(pc.fill_null(created, 0).to_numpy(), np.int64)) / 3.6e9
    columns = {
        F.ARTICLE_ID: ids,
        F.ARTICLE_INDEX: pa.array(lookup_indexes(ids, index_ids, index_values), pa.int64()),
        F.CATEGORY_ID: combined(merged.column(F.CATEGORY_ID)).cast(pa.string()),
        F.REGION_ID: combined(merged.column(F.REGION_ID)).cast(pa.string()),
        F.PRICE: combined(merged.column(F.PRICE)).cast(pa.int64()),
        F.AGE_HOURS: pa.array(age.astype(np.float32), pa.float32(),
                              mask=~created.is_valid().to_numpy(zero_copy_only=False)),
    }
    for name in F.ARTICLE_PARTIAL_COUNTS:
        columns[name] = combined(merged.column(name)).cast(pa.int64())
    return pa.table({name: columns[name] for name, _, _ in F.ARTICLE_RAW})


def _first_per_user(subset: pa.Table, limit: int) -> Tuple[pa.Array, pa.Array, np.ndarray]:
    """(users, keys, rank) of the first `limit` rows of each user by (n desc, key asc)."""
    ordered = subset.take(pc.sort_indices(subset, [(F.USER_ID, "ascending"),
                                                   (F.COUNT, "descending"),
                                                   (F.KEY, "ascending")]))
    users = combined(ordered.column(F.USER_ID))
    starts = group_starts(ordered, [F.USER_ID])
    rank = np.arange(ordered.num_rows) - np.repeat(starts, np.diff(np.r_[starts,
                                                                         ordered.num_rows]))
    keep = pa.array(np.flatnonzero(rank < limit))
    return users.take(keep), combined(ordered.column(F.KEY)).take(keep), rank[rank < limit]


def user_rows(merged: pa.Table) -> pa.Table:
    """Users merged over a window (reduce_users without part) -> raw feature rows
    (schemas.features.USER_RAW), in user_id order. A user is a row when it has a client
    event in the window."""
    kinds = combined(merged.column(F.KIND))
    events = merged.filter(pc.equal(kinds, F.KIND_EVENT))
    users = pc.unique(combined(events.column(F.USER_ID)))
    users = users.take(pc.sort_indices(users))
    columns = {F.USER_ID: users}
    for name, event in F.USER_COUNTS.items():
        subset = events.filter(pc.equal(events.column(F.KEY), event))
        where = pc.index_in(users, value_set=combined(subset.column(F.USER_ID)))
        found = where.is_valid().to_numpy(zero_copy_only=False)
        counts = np.asarray(combined(subset.column(F.COUNT)).to_numpy(), np.int64)
        positions = np.asarray(pc.fill_null(where, 0).to_numpy(zero_copy_only=False), np.int64)
        columns[name] = pa.array(np.where(found, counts[positions] if len(counts) else 0, 0),
                                 pa.int64())
    for name, kind in ((F.REGION_ID, F.KIND_REGION), (F.PLATFORM, F.KIND_PLATFORM)):
        subset = merged.filter(pc.equal(kinds, kind))
        top_users, top_keys, _ = _first_per_user(subset, 1)
        where = pc.index_in(users, value_set=top_users)
        columns[name] = top_keys.take(where) if len(top_keys) else pa.nulls(len(users),
                                                                            pa.string())
    subset = merged.filter(pc.equal(kinds, F.KIND_CATEGORY))
    top_users, top_keys, _ = _first_per_user(subset, F.TOP_CATEGORY_COUNT)
    # top_users is sorted by user, so each user's categories are contiguous.
    counts = np.zeros(len(users), dtype=np.int32)
    if len(top_users):
        where = np.asarray(pc.index_in(top_users, value_set=users).to_numpy(
            zero_copy_only=False), np.int64)
        counts = np.bincount(where, minlength=len(users)).astype(np.int32)
    offsets = np.zeros(len(users) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    columns[F.TOP_CATEGORIES] = pa.ListArray.from_arrays(pa.array(offsets), top_keys.cast(
        pa.string()))
    return pa.table({name: columns[name] for name, _, _ in F.USER_RAW})


# ---------------------------------------------------------------------------------------------
# One shard: today's partials and the lookback's, merged into train and eval rows


class ShardRows(typing.NamedTuple):
    daily: Dict[str, pa.Table]      # entity -> today's partials (with part)
    rows: Dict[Tuple[str, str], pa.Table]   # (entity, split) -> raw rows


def _with_membership(table: pa.Table, days_back: int, lookback: int) -> Tuple[np.ndarray,
                                                                                np.ndarray]:
    parts = np.asarray(combined(table.column(F.PART)).to_numpy(zero_copy_only=False), np.int64)
    member = {p: window_membership(days_back, p, lookback) for p in (F.PART_BEFORE, F.PART_FROM)}
    train = np.array([member[F.PART_BEFORE][0], member[F.PART_FROM][0]])[parts]
    evaluate = np.array([member[F.PART_BEFORE][1], member[F.PART_FROM][1]])[parts]
    return train, evaluate


def merge_shard(today: Dict[str, List[pa.Table]], lookback: Dict[str, List[Tuple[int, pa.Table]]],
                index: List[Tuple[pa.Array, np.ndarray]], lookback_days: int,
                boundary_us: int, end_us: int, user_in_eval=None) -> ShardRows:
    """Everything of one entity shard -> today's reduced partials and the raw rows of each
    (entity, split). `user_in_eval`: None (time split) or a function pseudonyms -> bool
    mask (user_hash)."""
    daily = {
        F.ARTICLES: reduce_articles(pa.concat_tables(today.get(F.ARTICLES) or
                                                     [empty_articles(["article_id", F.PART])])),
        F.USERS: reduce_users(pa.concat_tables(today.get(F.USERS) or [empty_users(True)])),
    }
    index_ids = pa.concat_arrays([ids.cast(pa.string()) for ids, _ in index]) if index else \
        pa.array([], pa.string())
    index_values = np.concatenate([np.asarray(v, np.int64) for _, v in index]) if index else \
        np.zeros(0, np.int64)
    rows = {}
    for entity in F.ENTITIES:
        pieces = [(0, daily[entity])] + list(lookback.get(entity, []))
        for split_number, split in enumerate(F.SPLITS):
            chosen = []
            for days_back, table in pieces:
                if table.num_rows == 0:
                    continue
                mask = _with_membership(table, days_back, lookback_days)[split_number]
                if mask.any():
                    chosen.append(table.filter(pa.array(mask)).drop([F.PART]))
            window_end = boundary_us if split == "train" else end_us
            if entity == F.ARTICLES:
                base = empty_articles(["article_id"])
                merged = reduce_articles(pa.concat_tables([c.cast(base.schema) for c in chosen])
                                         if chosen else base, ["article_id"])
                table = article_rows(merged, window_end, index_ids, index_values)
            else:
                base = empty_users(False)
                merged = reduce_users(pa.concat_tables([c.cast(base.schema) for c in chosen])
                                      if chosen else base, with_part=False)
                table = user_rows(merged)
                if user_in_eval is not None and table.num_rows:
                    in_eval = user_in_eval(table.column(F.USER_ID))
                    table = table.filter(pa.array(in_eval if split == "eval" else ~in_eval))
            rows[(entity, split)] = table
    return ShardRows(daily, rows)


# ---------------------------------------------------------------------------------------------
# Beam


def shard_partial_file(element, num_shards: int):
    """(entity, path, days_back, lookback) -> (shard, (LOOKBACK, entity, days_back, IPC))
    of the file's rows that are in a window."""
    entity, path, days_back, lookback = element
    table = read_partial_file(path)
    train, evaluate = _with_membership(table, days_back, lookback)
    table = table.filter(pa.array(train | evaluate))
    id_column = "article_id" if entity == F.ARTICLES else F.USER_ID
    for shard, piece in split_by_shard(table, shard_ids(table.column(id_column), num_shards),
                                       num_shards):
        yield shard, (LOOKBACK, entity, days_back, to_ipc(piece))


def read_partial_file(path: str) -> pa.Table:
    """One Parquet file of published partials."""
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return pq.read_table(handle).combine_chunks()


def shard_index_chunk(chunk: Tuple[pa.Array, np.ndarray], num_shards: int):
    """(article ids, indexes) -> (shard, (INDEX, "", 0, IPC)) per shard of the articles."""
    for shard, ids, index in split_index_chunk(chunk, num_shards):
        yield shard, (INDEX, "", 0, to_ipc(pa.table({"article_id": ids,
                                                     "index": pa.array(index, pa.int64())})))


@beam.typehints.with_output_types(typing.Any)
class MergeShard(beam.DoFn):
    """(shard, tagged IPC tables) -> DAILY (entity, shard, partials) and, per (entity,
    split), the raw rows as a TFXIO record batch (tag f"{entity}_{split}")."""

    def __init__(self, lookback_days: int, boundary_us: int, end_us: int, eval_split: str,
                 eval_fraction: float):
        self._lookback, self._boundary, self._end = lookback_days, boundary_us, end_us
        self._eval_split, self._fraction = eval_split, eval_fraction

    def process(self, element):
        shard, values = element
        today: Dict[str, List[pa.Table]] = {}
        lookback: Dict[str, List[Tuple[int, pa.Table]]] = {}
        index = []
        for tag, entity, days_back, data in values:
            table = from_ipc(data)
            if tag == TODAY:
                today.setdefault(entity, []).append(table)
            elif tag == LOOKBACK:
                lookback.setdefault(entity, []).append((days_back, table))
            else:
                index.append((table.column("article_id").combine_chunks(),
                              table.column("index").to_numpy()))
        user_in_eval = None
        if self._eval_split == "user_hash":
            fraction = self._fraction
            user_in_eval = lambda pseudonyms: in_eval_by_user(pseudonyms, fraction)  # noqa: E731
        merged = merge_shard(today, lookback, index, self._lookback, self._boundary, self._end,
                             user_in_eval)
        for entity, table in merged.daily.items():
            if table.num_rows:
                yield beam.pvalue.TaggedOutput(DAILY, (entity, shard, table))
        for (entity, split), table in merged.rows.items():
            beam.metrics.Metrics.counter("features", f"{entity}_{split}_rows").inc(table.num_rows)
            if table.num_rows:
                yield beam.pvalue.TaggedOutput(f"{entity}_{split}", tfxio_batch(table, entity))


def row_tags() -> List[str]:
    return [f"{entity}_{split}" for entity in F.ENTITIES for split in F.SPLITS]


class BuildFeatureRows(beam.PTransform):
    """{"today": (shard, (TODAY, ...)) partial pieces, "lookback": (shard, (LOOKBACK, ...)),
    "index": (shard, (INDEX, ...))} -> {DAILY: (entity, shard, partials Table),
    "<entity>_<split>": TFXIO record batches of raw rows}. One GroupByKey over entity
    shards: a shard holds its articles' and users' rows of every window day."""

    def __init__(self, lookback_days: int, boundary_us: int, end_us: int, eval_split: str,
                 eval_fraction: float):
        super().__init__()
        if lookback_days < 0:
            raise ValueError(f"--features_lookback_days={lookback_days} must be >= 0")
        if not boundary_us <= end_us:
            raise ValueError("the split boundary must not be after the day's end")
        self._args = (lookback_days, boundary_us, end_us, eval_split, eval_fraction)

    def expand(self, inputs):
        merged = ((inputs["today"], inputs["lookback"], inputs["index"])
                  | "GatherShardPieces" >> beam.Flatten()
                  | "GroupByShard" >> beam.GroupByKey()
                  | "MergeShards" >> beam.ParDo(MergeShard(*self._args)).with_outputs(
                      DAILY, *row_tags()))
        return {tag: merged[tag] for tag in (DAILY, *row_tags())}
