"""Article and user features: daily partial aggregates, their merge over the lookback
window, and the raw feature rows tf.Transform analyses (plain functions, then the
composites that shard them by entity).

Each day stores its partials in two parts, PART_BEFORE [start, B) and PART_FROM
[B, end), B the day's split boundary; train and eval rows merge the parts their window
covers (window_membership), and partials merge by the rules of docs/features.md#windows
and docs/features.md#daily-partials. Users are keyed by their pseudonym only.
"""

import typing
from typing import Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas import contract, features as F
from transforms.common.columns import combined
from transforms.common.privacy import in_eval_by_user, pseudonymize, read_salt
from transforms.common.sharding import from_ipc, shard_ids, split_by_shard, to_ipc
from transforms.features.tfxio_rows import tfxio_batch
from transforms.graph.index_store import lookup_indexes, split_index_chunk

# Contract columns the features read.
FEATURE_COLUMNS = ("event_id", "event_timestamp", "event_name", "user_id", "article_id",
                   "region_id", "category_id", "price", "platform")

TODAY, LOOKBACK, INDEX = "today", "lookback", "index"
DAILY = "daily"
_MAX_I64 = np.iinfo(np.int64).max


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
# Articles


def _micros(column) -> np.ndarray:
    return np.asarray(combined(column).cast(pa.int64()).to_numpy(zero_copy_only=False),
                      np.int64)


def article_event_rows(events: pa.Table, boundary_us: int) -> pa.Table:
    """Valid events -> one partial row per event with an article (keys article_id, part),
    the form reduce_articles merges."""
    events = events.filter(pc.is_valid(events.column("article_id")))
    names = combined(events.column("event_name"))
    ts = _micros(events.column("event_timestamp"))
    columns = {"article_id": combined(events.column("article_id")).cast(pa.string()),
               F.PART: pa.array((ts >= boundary_us).astype(np.int8))}
    for count, event in F.ARTICLE_COUNTS.items():
        columns[count] = pc.cast(pc.equal(names, event), pa.int64())
    columns[F.SOLD] = pc.cast(pc.equal(names, contract.ARTICLE_SOLD), pa.int64())
    created = pc.equal(names, contract.ARTICLE_CREATED).to_numpy(zero_copy_only=False)
    columns[F.CREATED_US] = pa.array(ts, pa.int64(), mask=~created)
    event_ids = combined(events.column("event_id")).cast(pa.string())
    for name in F.ATTRIBUTES:
        value, value_ts, value_event = F.attribute_columns(name)
        values = combined(events.column(name))
        missing = ~values.is_valid().to_numpy(zero_copy_only=False)
        columns[value] = values
        columns[value_ts] = pa.array(ts, pa.int64(), mask=missing)
        columns[value_event] = pc.if_else(pa.array(missing), pa.nulls(len(ts), pa.string()),
                                          event_ids)
    return pa.table(columns)


def _group_starts(table: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """Row positions where a group of equal keys starts (the table is sorted by keys)."""
    n = table.num_rows
    change = np.zeros(n, dtype=bool)
    change[:1] = True
    for key in keys:
        column = combined(table.column(key))
        if n > 1:
            change[1:] |= pc.not_equal(column.slice(1), column.slice(0, n - 1)).to_numpy(
                zero_copy_only=False)
    return np.flatnonzero(change)


def _empty_articles(keys: Sequence[str]) -> pa.Table:
    schema = [pa.field("article_id", pa.string())]
    if F.PART in keys:
        schema.append(pa.field(F.PART, pa.int8()))
    schema += [pa.field(c, pa.int64()) for c in F.ARTICLE_PARTIAL_COUNTS]
    schema.append(pa.field(F.CREATED_US, pa.int64()))
    for name in F.ATTRIBUTES:
        value, value_ts, value_event = F.attribute_columns(name)
        schema += [pa.field(value, pa.int64() if name == F.PRICE else pa.string()),
                   pa.field(value_ts, pa.int64()), pa.field(value_event, pa.string())]
    return pa.schema(schema).empty_table()


def reduce_articles(rows: pa.Table, keys: Sequence[str] = ("article_id", F.PART)) -> pa.Table:
    """Partial rows (of events or of earlier partials) -> one row per distinct `keys`,
    sorted by them: counts summed, sold max, created_us min, each attribute (value, ts,
    event) from its row with the largest (ts, event id) among those that have it."""
    keys = list(keys)
    if rows.num_rows == 0:
        return _empty_articles(keys)
    rows = rows.take(pc.sort_indices(rows, [(k, "ascending") for k in keys]))
    starts = _group_starts(rows, keys)
    group = np.zeros(rows.num_rows, dtype=np.int64)
    group[starts[1:]] = 1
    group = np.cumsum(group)
    out = {k: combined(rows.column(k)).take(pa.array(starts)) for k in keys}
    for name in F.ARTICLE_COUNTS:
        out[name] = pa.array(np.add.reduceat(_micros(rows.column(name)), starts), pa.int64())
    out[F.SOLD] = pa.array(np.maximum.reduceat(_micros(rows.column(F.SOLD)), starts), pa.int64())
    created = combined(pc.fill_null(rows.column(F.CREATED_US), _MAX_I64)).to_numpy()
    earliest = np.minimum.reduceat(np.asarray(created, np.int64), starts)
    out[F.CREATED_US] = pa.array(earliest, pa.int64(), mask=earliest == _MAX_I64)
    for name in F.ATTRIBUTES:
        columns = F.attribute_columns(name)
        has = np.flatnonzero(combined(rows.column(columns[0])).is_valid().to_numpy(zero_copy_only=False))
        n_groups = len(starts)
        picked = np.full(n_groups, -1, dtype=np.int64)
        if len(has):
            candidates = pa.table({"g": pa.array(group[has]), "ts": rows.column(columns[1]).take(
                pa.array(has)), "event": rows.column(columns[2]).take(pa.array(has))})
            order = pc.sort_indices(candidates, [("g", "ascending"), ("ts", "ascending"),
                                                 ("event", "ascending")]).to_numpy()
            ordered_groups = group[has][order]
            last = np.ones(len(order), dtype=bool)
            last[:-1] = ordered_groups[1:] != ordered_groups[:-1]
            picked[ordered_groups[last]] = has[order[last]]
        take = pa.array(np.where(picked >= 0, picked, 0), mask=picked < 0)
        for column in columns:
            out[column] = combined(rows.column(column)).take(take)
    table = pa.table(out)
    return table.select(_empty_articles(keys).schema.names).cast(_empty_articles(keys).schema)


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


# ---------------------------------------------------------------------------------------------
# Users


def _empty_users(with_part: bool) -> pa.Table:
    fields = [pa.field(F.USER_ID, pa.string())]
    if with_part:
        fields.append(pa.field(F.PART, pa.int8()))
    fields += [pa.field(F.KIND, pa.string()), pa.field(F.KEY, pa.string()),
               pa.field(F.COUNT, pa.int64())]
    return pa.schema(fields).empty_table()


def reduce_users(rows: pa.Table, with_part: bool = True) -> pa.Table:
    """Long user rows (user_id[, part], kind, key, n) -> one row per distinct key tuple,
    n summed, sorted by the keys."""
    keys = [F.USER_ID] + ([F.PART] if with_part else []) + [F.KIND, F.KEY]
    if rows.num_rows == 0:
        return _empty_users(with_part)
    grouped = rows.select(keys + [F.COUNT]).group_by(keys).aggregate([(F.COUNT, "sum")])
    table = pa.table([grouped.column(k) for k in keys] + [grouped.column(f"{F.COUNT}_sum")],
                     names=keys + [F.COUNT])
    table = table.take(pc.sort_indices(table, [(k, "ascending") for k in keys]))
    return table.cast(_empty_users(with_part).schema)


def user_event_rows(events: pa.Table, pseudonyms: pa.Array, boundary_us: int) -> pa.Table:
    """Client events with a user (pseudonyms: the user_id column's pseudonyms, row for
    row) -> long partial rows (user_id, part, kind, key, n) reduced by reduce_users."""
    names = combined(events.column("event_name"))
    pseudonyms = combined(pseudonyms)
    client = pc.fill_null(pc.is_in(names, value_set=pa.array(contract.CLIENT_EVENTS)),
                          False).to_numpy(zero_copy_only=False).copy()
    client &= pseudonyms.is_valid().to_numpy(zero_copy_only=False)
    keep = pa.array(client)
    events, users = events.filter(keep), pseudonyms.filter(keep)
    part = pa.array((_micros(events.column("event_timestamp")) >= boundary_us).astype(np.int8))
    pieces = []
    for kind, column in ((F.KIND_EVENT, "event_name"), (F.KIND_REGION, "region_id"),
                         (F.KIND_PLATFORM, "platform"), (F.KIND_CATEGORY, "category_id")):
        keys = combined(events.column(column)).cast(pa.string())
        has = keys.is_valid()
        n = int(pc.sum(pc.cast(has, pa.int64())).as_py() or 0)
        pieces.append(pa.table({
            F.USER_ID: users.filter(has), F.PART: part.filter(has),
            F.KIND: pa.array([kind] * n, pa.string()), F.KEY: keys.filter(has),
            F.COUNT: pa.array(np.ones(n, np.int64))}))
    return reduce_users(pa.concat_tables(pieces))


def _first_per_user(subset: pa.Table, limit: int) -> Tuple[pa.Array, pa.Array, np.ndarray]:
    """(users, keys, rank) of the first `limit` rows of each user by (n desc, key asc)."""
    ordered = subset.take(pc.sort_indices(subset, [(F.USER_ID, "ascending"),
                                                   (F.COUNT, "descending"),
                                                   (F.KEY, "ascending")]))
    users = combined(ordered.column(F.USER_ID))
    starts = _group_starts(ordered, [F.USER_ID])
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
                                                     [_empty_articles(["article_id", F.PART])])),
        F.USERS: reduce_users(pa.concat_tables(today.get(F.USERS) or [_empty_users(True)])),
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
                base = _empty_articles(["article_id"])
                merged = reduce_articles(pa.concat_tables([c.cast(base.schema) for c in chosen])
                                         if chosen else base, ["article_id"])
                table = article_rows(merged, window_end, index_ids, index_values)
            else:
                base = _empty_users(False)
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


def _partials_of(events: pa.Table, pseudonyms: pa.Array, boundary_us: int) -> Dict[str, pa.Table]:
    return {F.ARTICLES: reduce_articles(article_event_rows(events, boundary_us)),
            F.USERS: user_event_rows(events, pseudonyms, boundary_us)}


class ComputeDailyPartials(beam.DoFn):
    """(key, valid events Table) -> (shard, (TODAY, entity, IPC bytes of partials)) for each
    entity shard its rows fall in. The salt is read in setup(); user ids are pseudonymised
    before anything leaves the step."""

    def __init__(self, boundary_us: int, salt_file: Optional[str], salt_secret: Optional[str]):
        self._boundary_us, self._salt_file, self._salt_secret = \
            boundary_us, salt_file, salt_secret
        self._salt = None

    def setup(self):
        self._salt = read_salt(self._salt_file, self._salt_secret)

    def process(self, element, num_shards: int):
        table = element[1] if isinstance(element, tuple) else element
        table = table.select([c for c in FEATURE_COLUMNS])
        pseudonyms = pseudonymize(combined(table.column("user_id")), self._salt)
        beam.metrics.Metrics.counter("features", "events_read").inc(table.num_rows)
        for entity, partial in _partials_of(table, pseudonyms, self._boundary_us).items():
            id_column = "article_id" if entity == F.ARTICLES else F.USER_ID
            shards = shard_ids(partial.column(id_column), num_shards)
            for shard, piece in split_by_shard(partial, shards, num_shards):
                yield shard, (TODAY, entity, 0, to_ipc(piece))


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
