"""The examples of one user shard as plain functions on Arrow tables and numpy arrays:
row selection, display properties, sessions cut at the split boundary, the encoded
records of every kind with their split and seeded keys, and the files each record goes
to (docs/examples.md#how-the-stage-scales). The composite (composite.py) shells them."""

from typing import Dict, List, NamedTuple, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract
from transforms.common import privacy
from transforms.common.columns import sorted_dictionary
from transforms.common.properties import property_values
from transforms.examples import draws, ranking, sequences, skipgram
from transforms.examples.params import EXAMPLE_COLUMNS, EXAMPLE_EVENTS, SPLITS, STRENGTH, \
    ExampleParams
from transforms.graph import index_store, sessions as sessions_lib

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
    a whole number) from the rows' JSON `properties`, as the contract types its keys
    (transforms.common.properties)."""
    values = property_values(properties, ("surface", "position"))
    position = values["position"].fill_null(-1).to_numpy(zero_copy_only=False)
    return values["surface"], position.astype(np.int64)


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
    users, user_ids = sorted_dictionary(table.column("user_id"), sort=False)
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
    article_codes, article_ids = sorted_dictionary(
        table.column("article_id").combine_chunks().fill_null(""), sort=False)
    index_of_code = index_store.lookup_indexes(article_ids, map_ids, map_index)
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
    pair_key = skipgram.pair_keys(draws.base_key(p.seed, p.run_date, "pair"),
                                  pairs["target_key"], pairs["context_key"])
    if rate < 1.0:
        keep = skipgram.cap_mask(pairs["target_key"], pairs["context_key"], rate,
                                 draws.base_key(p.seed, p.run_date, "cap"))
        pairs = {k: v[keep] for k, v in pairs.items()}
        pair_key = pair_key[keep]
    n_same = skipgram.same_region_count(p.negatives, p.same_region_share)
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
