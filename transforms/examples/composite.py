"""Training examples of one day as one composite: skip-gram pairs (item2vec),
next-article sequences and ranking lists, split into train and eval, with pseudonymous
user ids and the article index's integer ids.

How it runs, every shuffle keyed by the data:
  1. the valid impression and interaction rows are sharded by a stable hash of the user
     (shard count ceil(rows / --max_rows_per_shard), counted while the pipeline runs),
     so a user shard holds whole users;
  2. each user shard asks the article partitions (a hash of the article id) for the
     indexes of its own distinct articles only, and gets them back keyed by the shard:
     no element or side input holds the catalogue;
  3. a user shard then builds its sessions with the graph's rules (transforms/sessions.py;
     --session_gap_minutes, the caps when set), cut at the split boundary, and encodes
     its sequences and ranking lists; its skip-gram positions go on to
  4. the skip-gram step, which takes two side inputs: the articles whose subsampling
     probability is below 1 (at most 1 / (t * 2.618) of them: 382 at t = 1e-3) and the
     negative sampler (every interacted article of the day with its count^0.75 and region:
     16 bytes per article per table, about 320 MB at 10^7 interacted articles);
  5. every record gets a seeded hash key; files per (kind, split) follow the bytes
     (ceil(bytes / --target_shard_mb)), each record goes to file key % N and a file's
     records are written in key order, so a reader never sees one user at a time.
Every draw is a function of (--examples_seed, run_date, a stable key of what is drawn):
reruns, any shard count and any number of workers write the same records.
"""

import json
import math
import typing
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from schemas import contract
from transforms.common import privacy
from transforms.common.sharding import from_ipc, resolve_shard_count, shard_ids, \
    split_by_shard, to_ipc, user_shards
from transforms.examples import draws, ranking, sequences, skipgram
from transforms.graph import pairs as pairs_lib, sessions as sessions_lib

KINDS = ("skipgram", "sequences", "ranking")
SPLITS = ("train", "eval")
EXAMPLE_COLUMNS = ("user_id", "event_id", "event_timestamp", "event_name", "article_id",
                   "region_id", "platform", "properties")
EXAMPLE_EVENTS = (contract.IMPRESSION,) + contract.INTERACTION_EVENTS
STRENGTH = {contract.ARTICLE_VIEW: 1, contract.ARTICLE_LIKE: 2, contract.CHAT_START: 3}


class ExampleParams(NamedTuple):
    run_date: str
    day_start_us: int
    day_end_us: int
    kinds: Tuple[str, ...] = KINDS
    gap_us: int = 30 * 60_000_000
    max_events_per_user: int = 0
    max_session_length: int = 0
    eval_split: str = "time"
    eval_hours: float = 3.0
    eval_fraction: float = 0.1
    seed: int = 0
    subsample: float = 1e-3
    window: int = 5
    negatives: int = 4
    same_region_share: float = 0.5
    pairs_per_record: int = 1024
    max_pairs: int = 200_000_000
    list_size: int = 100
    label_window_us: int = 30 * 60_000_000
    max_rows_per_shard: int = 1_000_000
    target_bytes: int = 128 << 20

    @property
    def boundary_us(self) -> int:
        """Start of the eval hours: the day's end minus --eval_hours of elapsed time."""
        return self.day_end_us - int(round(self.eval_hours * 3600 * 1_000_000))

    def check(self) -> "ExampleParams":
        problems = []
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds or len(set(self.kinds)) != len(self.kinds):
            problems.append(f"--example_kinds={','.join(self.kinds)!r}: give each of "
                            f"{', '.join(KINDS)} at most once, at least one")
        if self.eval_split not in ("time", "user_hash"):
            problems.append(f"--eval_split={self.eval_split!r} must be time or user_hash")
        if self.eval_split == "time" and not \
                self.day_start_us < self.boundary_us <= self.day_end_us:
            problems.append(f"--eval_hours={self.eval_hours} must be > 0 and shorter than the "
                            "day")
        if not 0 < self.eval_fraction < 1:
            problems.append(f"--eval_fraction={self.eval_fraction} must be in (0, 1)")
        if not (self.subsample > 0 and math.isfinite(self.subsample)):
            problems.append(f"--skipgram_subsample={self.subsample} must be > 0")
        if self.window < 1 or self.pairs_per_record < 1 or self.list_size < 1:
            problems.append("--skipgram_window, --skipgram_pairs_per_record and "
                            "--ranking_list_size must be >= 1")
        if self.negatives < 0 or self.max_pairs < 0:
            problems.append("--skipgram_negatives and --skipgram_max_pairs must be >= 0")
        if not 0 <= self.same_region_share <= 1:
            problems.append(f"--skipgram_same_region_negatives={self.same_region_share} must "
                            "be in [0, 1]")
        if self.label_window_us <= 0:
            problems.append("--ranking_label_minutes must be > 0")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------------------------------------------------------------------------------------------
# Plain functions

def select_example_rows(element) -> pa.Table:
    """Valid rows -> the impression and interaction rows with a user, and the columns the
    examples need (absent columns come as nulls)."""
    table = element[1] if isinstance(element, tuple) else element
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    schema = contract.arrow_schema()
    columns = []
    for name in EXAMPLE_COLUMNS:
        if name in table.column_names:
            columns.append(table.column(name))
        else:
            columns.append(pa.nulls(table.num_rows, schema.field(name).type))
    table = pa.table(columns, names=list(EXAMPLE_COLUMNS))
    mask = pc.and_(pc.is_in(table.column("event_name"), value_set=pa.array(EXAMPLE_EVENTS)),
                   pc.is_valid(table.column("user_id")))
    return compact_rows(table.filter(mask))


def compact_rows(table: pa.Table) -> pa.Table:
    """What crosses the user shuffle: `properties` (JSON) replaced by the two values the
    ranking lists use, parsed here (surface, display_position), and the repeated strings
    dictionary-encoded."""
    surface, display = parse_display_properties(table.column("properties"))
    columns = {name: table.column(name) for name in EXAMPLE_COLUMNS if name != "properties"}
    for name in ("event_name", "region_id", "platform"):
        columns[name] = pc.dictionary_encode(columns[name].combine_chunks())
    columns["surface"] = pc.dictionary_encode(surface)
    columns["display_position"] = pa.array(display, pa.int64())
    return pa.table(columns)


def parse_display_properties(properties) -> Tuple[pa.Array, np.ndarray]:
    """(surface per row, null when absent; display position per row, -1 when absent or not
    a whole number) from the rows' JSON `properties` (each distinct value parsed once)."""
    if isinstance(properties, pa.ChunkedArray):
        properties = properties.combine_chunks()
    encoded = pc.dictionary_encode(properties.cast(pa.string()))
    surfaces, positions = [], []
    for text in encoded.dictionary.to_pylist():
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = None
        value = value if isinstance(value, dict) else {}
        surface = value.get("surface")
        surfaces.append(surface if isinstance(surface, str) else None)
        position = value.get("position")
        positions.append(position if isinstance(position, int)
                         and not isinstance(position, bool) else -1)
    indices = encoded.indices
    surface = pa.array(surfaces, pa.string()).take(indices)
    codes = indices.fill_null(len(positions)).to_numpy(zero_copy_only=False).astype(np.int64)
    display = np.array(positions + [-1], dtype=np.int64)[codes]
    return surface, display


def lookup_indexes(ids, map_ids: pa.Array, map_index: np.ndarray) -> np.ndarray:
    """Article index of each id from the shard's (ids, indexes) answers; 0 when unknown
    or null."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if not len(map_ids):
        return np.zeros(len(ids), np.int64)
    where = pc.index_in(ids.cast(pa.string()), value_set=map_ids.cast(pa.string()))
    found = where.is_valid().to_numpy(zero_copy_only=False)
    position = where.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.where(found, np.asarray(map_index, np.int64)[position], 0)


class Batch(NamedTuple):
    """Records of one kind and split from one element, each with its seeded uint64 key
    (the file it goes to and its place in that file). The records travel as one Arrow
    binary array (two buffers), not as a Python object each."""
    kind: str
    split: str
    keys: np.ndarray
    records: pa.LargeBinaryArray


class ShardExamples(NamedTuple):
    """What one user shard gives: batches of sequences and ranking records, its skip-gram
    positions, its articles' position counts and its counters."""
    records: List[Batch]
    positions: Dict[str, np.ndarray]
    article_counts: Tuple[np.ndarray, np.ndarray]
    counts: Dict[str, int]


def plain_strings(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns back to plain strings, chunk by chunk (the chunks of a
    shard come from different elements, each with its own dictionary)."""
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = pa.chunked_array([c.cast(column.type.value_type) for c in column.chunks],
                                      column.type.value_type)
        columns[name] = column
    return pa.table(columns)


def shard_examples(table: pa.Table, map_ids: pa.Array, map_index: np.ndarray, salt: bytes,
                   p: ExampleParams) -> ShardExamples:
    """One user shard's rows (select_example_rows) -> its examples (see ShardExamples)."""
    table = plain_strings(table)
    counts: Dict[str, int] = {}
    records: List[Batch] = []
    users, user_ids = pairs_lib.sorted_dictionary(table.column("user_id"), sort=False)
    ts = table.column("event_timestamp").combine_chunks().cast(pa.int64()).to_numpy()
    order = sessions_lib.order_by_user_time_id(users, ts, table.column("event_id"))
    table = table.take(pa.array(order, pa.int64()))
    users, ts = users[order], ts[order]
    pseudonyms = privacy.pseudonymize(user_ids, salt)
    pseudonym_list = pseudonyms.to_pylist()
    if p.eval_split == "time":
        side = (ts >= p.boundary_us).astype(np.int8)
    else:
        side = privacy.in_eval_by_user(pseudonyms, p.eval_fraction)[users].astype(np.int8)
    names = table.column("event_name").combine_chunks()
    article_codes, article_ids = pairs_lib.sorted_dictionary(
        table.column("article_id").combine_chunks().fill_null(""), sort=False)
    index_of_code = lookup_indexes(article_ids, map_ids, map_index)
    event_keys = draws.string_keys(table.column("event_id"))
    base_seq = draws.base_key(p.seed, p.run_date, "file")

    # Sessions of the interaction rows: the graph's rules, cut at the split boundary.
    inter = np.flatnonzero(pc.is_in(names, value_set=pa.array(contract.INTERACTION_EVENTS))
                           .to_numpy(zero_copy_only=False))
    strength_of = pc.index_in(names.take(pa.array(inter, pa.int64())),
                              value_set=pa.array(contract.INTERACTION_EVENTS)).to_numpy(
        zero_copy_only=False).astype(np.int64)
    strength = np.array([STRENGTH[n] for n in contract.INTERACTION_EVENTS])[strength_of]
    if p.max_events_per_user:
        # The cap is the user's, so it applies before the split key joins the user's.
        keep = sessions_lib.first_rows_per_user(users[inter], p.max_events_per_user)
        inter, strength = inter[keep], strength[keep]
    u, s = users[inter], side[inter]
    sess, first, row_position = sessions_lib.session_runs(
        u * 2 + s, ts[inter], article_codes[inter], strength.astype(np.float64), p.gap_us, 0,
        p.max_session_length)
    n_sessions = int(sess.session[-1]) + 1 if len(sess.session) else 0
    pos_rows = inter[first]
    pos_article = index_of_code[sess.article]
    pos_side = side[pos_rows]
    pos_key = event_keys[pos_rows]
    session_first = np.flatnonzero(np.r_[True, sess.session[1:] != sess.session[:-1]]) \
        if len(sess.session) else np.zeros(0, np.int64)
    counts["sessions"] = n_sessions

    if "sequences" in p.kinds and n_sessions:
        session_rows = row_position >= 0
        region = sequences.group_mode(
            sess.session[row_position[session_rows]],
            table.column("region_id").combine_chunks().take(
                pa.array(inter[session_rows], pa.int64())), n_sessions)
        session_user = [pseudonym_list[c] for c in users[pos_rows[session_first]]]
        made, encoded = sequences.sequence_records(
            sess.session, pos_article, sess.weight.astype(np.int64), ts[pos_rows],
            session_user, region)
        split_of = pos_side[session_first][made]
        keys = draws.keyed_uint64(base_seq, pos_key[session_first][made])
        records.extend(split_batches("sequences", split_of, keys, encoded))
        for split in (0, 1):
            counts[f"sequences_{SPLITS[split]}"] = int((split_of == split).sum())

    if "ranking" in p.kinds:
        surface = table.column("surface").combine_chunks()
        display = table.column("display_position").to_numpy()
        list_side, first_row, encoded = ranking.ranking_records(
            users, ts, names, index_of_code[article_codes], side, surface, display,
            table.column("region_id").combine_chunks(),
            table.column("platform").combine_chunks(), pseudonym_list, p.gap_us,
            p.label_window_us, p.day_end_us, p.list_size)
        keys = draws.keyed_uint64(base_seq, event_keys[np.asarray(first_row, np.int64)])
        records.extend(split_batches("ranking", np.asarray(list_side), keys, encoded))
        impressions = pc.equal(names, contract.IMPRESSION).to_numpy(zero_copy_only=False)
        for split in (0, 1):
            counts[f"ranking_{SPLITS[split]}"] = int((np.asarray(list_side) == split).sum())
            counts[f"impressions_{SPLITS[split]}"] = int((impressions & (side == split)).sum())

    positions = {"session": sess.session, "article": pos_article, "key": pos_key,
                 "side": pos_side}
    if len(pos_article):
        found, n = np.unique(pos_article, return_counts=True)
        article_counts = (found.astype(np.int64), n.astype(np.int64))
    else:
        article_counts = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    return ShardExamples(records, positions, article_counts, counts)


def split_batches(kind: str, side: np.ndarray, keys: np.ndarray, encoded: List[bytes]
                  ) -> List[Batch]:
    """Records with their side (0 train, 1 eval) and keys -> one Batch per split present."""
    batches = []
    side = np.asarray(side)
    packed = pa.array(encoded, pa.large_binary())
    for split in (0, 1):
        rows = np.flatnonzero(side == split)
        if len(rows):
            batches.append(Batch(kind, SPLITS[split], np.asarray(keys, np.uint64)[rows],
                                 packed.take(pa.array(rows, pa.int64()))))
    return batches


def merge_counts(tables: Sequence[Tuple[np.ndarray, np.ndarray]]
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """(index, count) partials -> summed, by index."""
    tables = [t for t in tables if len(t[0])]
    if not tables:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = np.concatenate([t[0] for t in tables])
    count = np.concatenate([t[1] for t in tables])
    found, inverse = np.unique(index, return_inverse=True)
    return found, np.bincount(inverse, weights=count).astype(np.int64)


class MergeArticleCounts(beam.CombineFn):
    """Positions per article over the day. The accumulator holds one row per interacted
    article (bounded by the day's distinct interacted articles, like the sampler)."""

    def create_accumulator(self):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)

    def add_input(self, acc, element):
        return merge_counts([acc, element])

    def merge_accumulators(self, accs):
        return merge_counts(list(accs))

    def extract_output(self, acc):
        return acc


def sum_counts(dicts) -> Dict[str, int]:
    total: Dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + int(v)
    return dict(sorted(total.items()))


def skipgram_pairs(positions: Dict[str, np.ndarray], frequent: Tuple[np.ndarray, np.ndarray],
                   total_positions: int, p: ExampleParams) -> Dict[str, np.ndarray]:
    """A shard's positions -> its skip-gram pairs after subsampling (before the cap):
    target, context (indexes), side, and the first-event keys of both positions."""
    base = draws.base_key(p.seed, p.run_date, "subsample")
    keep = skipgram.keep_positions(positions["article"], positions["key"], frequent,
                                   total_positions, p.subsample, base)
    session, article = positions["session"][keep], positions["article"][keep]
    key, side = positions["key"][keep], positions["side"][keep]
    left, right = skipgram.window_pairs(session, article, p.window)
    return {"target": article[left], "context": article[right], "side": side[left],
            "target_key": key[left], "context_key": key[right]}


def skipgram_records(pairs: Dict[str, np.ndarray], sampler, rate: float, p: ExampleParams
                     ) -> Tuple[List[Batch], Dict[str, int]]:
    """A shard's pairs -> the capped sample, negatives, packed records per split."""
    counts: Dict[str, int] = {}
    records: List[Batch] = []
    pair_key = draws.keyed_uint64(draws.base_key(p.seed, p.run_date, "pair"),
                                  pairs["target_key"], pairs["context_key"])
    if rate < 1.0:
        u = draws.uniform(draws.base_key(p.seed, p.run_date, "cap"), pairs["target_key"],
                          pairs["context_key"])
        keep = u < rate
        pairs = {k: v[keep] for k, v in pairs.items()}
        pair_key = pair_key[keep]
    n_same = int(round(p.negatives * p.same_region_share))
    negatives, valid = sampler.draw(pairs["target"], pairs["context"], None, p.negatives,
                                    n_same, draws.base_key(p.seed, p.run_date, "negatives"),
                                    pair_key)
    counts["skipgram_pairs_without_negatives"] = int((~valid).sum())
    order_key = draws.keyed_uint64(draws.base_key(p.seed, p.run_date, "order"), pair_key)
    for split in (0, 1):
        rows = np.flatnonzero(valid & (pairs["side"] == split))
        counts[f"skipgram_pairs_{SPLITS[split]}"] = len(rows)
        if not len(rows):
            continue
        encoded = skipgram.pack_records(pairs["target"][rows], pairs["context"][rows],
                                        negatives[rows], p.pairs_per_record, order_key[rows])
        first_keys = np.sort(order_key[rows])[::p.pairs_per_record]
        counts[f"skipgram_{SPLITS[split]}"] = len(encoded)
        records.append(Batch("skipgram", SPLITS[split], first_keys,
                             pa.array(encoded, pa.large_binary())))
    return records, counts


def files_per_split(sizes: Dict[Tuple[str, str], int], target_bytes: int
                    ) -> Dict[Tuple[str, str], int]:
    """Files of each (kind, split): ceil(bytes / target), at least 1."""
    return {key: max(1, -(-int(size) // target_bytes)) for key, size in sizes.items()}


def batch_bytes(batch: Batch) -> Tuple[Tuple[str, str], int]:
    return (batch.kind, batch.split), int(pc.sum(pc.binary_length(batch.records)).as_py() or 0)


def assign_files(batch: Batch, files: Dict[Tuple[str, str], int]):
    """A batch -> ((kind, split, file number, files), (keys, records)) per file it feeds:
    file = key % files, so records of every shard spread over every file."""
    n = files[(batch.kind, batch.split)]
    number = (batch.keys % np.uint64(n)).astype(np.int64)
    for f in np.unique(number):
        rows = np.flatnonzero(number == f)
        yield (batch.kind, batch.split, int(f), n), \
            (batch.keys[rows], batch.records.take(pa.array(rows, pa.int64())))


def order_file(element):
    """A file's parts -> (kind, (split, (file number, files), records in key order)). Keys
    are seeded hashes of distinct events, so ties do not happen in practice; if one does,
    the tied records are ordered by their bytes, so the order never depends on arrival."""
    (kind, split, number, n), parts = element
    parts = list(parts)
    keys = np.concatenate([k for k, _ in parts])
    records = pa.concat_arrays([r for _, r in parts])
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if len(keys) > 1 and (sorted_keys[1:] == sorted_keys[:-1]).any():
        values = records.to_pylist()
        order = np.array(sorted(range(len(keys)), key=lambda i: (int(keys[i]), values[i])),
                         dtype=np.int64)
    return kind, (split, (number, n), records.take(pa.array(order, pa.int64())))


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
    ids, index = chunk
    table = pa.table({"article_id": ids.cast(pa.string()), "index": pa.array(index, pa.int64())})
    for target, part in split_by_shard(table, shard_ids(table.column("article_id"),
                                                        num_partitions), num_partitions):
        yield target, ("idx", part.column("article_id").combine_chunks(),
                       part.column("index").to_numpy())


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
    found = lookup_indexes(wanted.column("article_id"), ids, index)
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
                lambda n: 1.0 if not p.max_pairs or n <= p.max_pairs else p.max_pairs / n)
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
