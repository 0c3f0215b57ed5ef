"""Article and user features, the daily partials: one day's events reduced to partial
aggregates per entity (plain functions, then the DoFn that computes them per shard).
Their merge over the lookback window into the rows tf.Transform analyses is rows.py.

Each day stores its partials in two parts, PART_BEFORE [start, B) and PART_FROM
[B, end), B the day's split boundary; partials merge by the rules of
docs/features.md#daily-partials. Users are keyed by their pseudonym only.
"""

from typing import Dict, Optional, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract, features as F
from transforms.common.columns import combined
from transforms.common.privacy import pseudonymize, read_salt
from transforms.common.sharding import shard_ids, split_by_shard, to_ipc

# Contract columns the features read.
FEATURE_COLUMNS = ("event_id", "event_timestamp", "event_name", "user_id", "article_id",
                   "region_id", "category_id", "price", "platform")

TODAY, LOOKBACK, INDEX = "today", "lookback", "index"
DAILY = "daily"
_MAX_I64 = np.iinfo(np.int64).max


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


def group_starts(table: pa.Table, keys: Sequence[str]) -> np.ndarray:
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


def empty_articles(keys: Sequence[str]) -> pa.Table:
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
        return empty_articles(keys)
    rows = rows.take(pc.sort_indices(rows, [(k, "ascending") for k in keys]))
    starts = group_starts(rows, keys)
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
    return table.select(empty_articles(keys).schema.names).cast(empty_articles(keys).schema)


# ---------------------------------------------------------------------------------------------
# Users


def empty_users(with_part: bool) -> pa.Table:
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
        return empty_users(with_part)
    grouped = rows.select(keys + [F.COUNT]).group_by(keys).aggregate([(F.COUNT, "sum")])
    table = pa.table([grouped.column(k) for k in keys] + [grouped.column(f"{F.COUNT}_sum")],
                     names=keys + [F.COUNT])
    table = table.take(pc.sort_indices(table, [(k, "ascending") for k in keys]))
    return table.cast(empty_users(with_part).schema)


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
