"""The stable article index, maintained by a keyed join (plain functions).

Index 0 is reserved (padding, unknown). Known articles keep their index forever; the
day's new articles are appended after the largest index ever given, by frequency
descending, then id (byte order). The index only grows (ids are never reused); each
day rewrites it in pieces, one per article partition, so no element holds it whole.

The ranking of new articles is a sample sort: new ids are cut into id ranges by
splitters sampled with a stable hash (about `rows_per_bucket` new articles a range),
each range is ranked on its own, and its offset comes from the count of new
articles per (frequency, range) cell, a table of at most distinct frequencies x ranges
entries:  index = start + #{new with a higher frequency}
                        + #{new with the same frequency in an earlier range}
                        + rank by id inside the range.
"""

from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.common.sharding import stable_hash
from transforms.graph import weights as graph
from transforms.graph.pairs import Part, merge_dictionaries, merge_parts

SPLITTER_EVERY = 16   # one splitter per this many sampled ids


class Nodes(NamedTuple):
    """The day's articles of one partition."""

    ids: pa.Array            # string
    frequency: np.ndarray    # int64 positions in collapsed sessions
    region: pa.Array         # string, null when no row had a region


def merge_nodes(parts: Sequence[Part], region_counts: Sequence[pa.Table]) -> Nodes:
    """Node partials of user shards (parts with code column article and frequency; tables
    (n, article_id, region_id) of partial counts) -> one row per article."""
    merged = merge_parts(parts, ("article",), sort=False)
    if not merged.cols:
        return Nodes(pa.array([], pa.string()), np.zeros(0, np.int64), pa.array([], pa.string()))
    ids = merged.ids
    # Every listed article is kept: those of other rows (impressions, server events) come
    # with frequency 0 and are indexed, not made nodes.
    frequency = np.bincount(merged.cols["article"], weights=merged.cols["frequency"],
                            minlength=len(ids)).astype(np.int64)
    tables = [t for t in region_counts if t.num_rows]
    if tables:
        modes = graph.region_mode_from_counts(pa.concat_tables(tables))
        where = pc.index_in(ids, value_set=modes.column("article_id").combine_chunks())
        region = modes.column("region_id").combine_chunks().take(where)
    else:
        region = pa.nulls(len(ids), pa.string())
    return Nodes(ids, frequency, region.cast(pa.string()))


class Joined(NamedTuple):
    known_ids: pa.Array          # every known article of the partition (the index's rows)
    known_index: np.ndarray
    day_known: np.ndarray        # positions in the day's nodes of the known ones
    day_known_index: np.ndarray
    day_new: np.ndarray          # positions in the day's nodes of the new ones


def join_known(nodes: Nodes, known: Sequence[Tuple[pa.Array, np.ndarray]]) -> Joined:
    """The day's articles of a partition against the known index rows of the partition."""
    known = [(ids, idx) for ids, idx in known if len(ids)]
    known_ids = pa.concat_arrays([ids.cast(pa.string()) for ids, _ in known]) if known else \
        pa.array([], pa.string())
    known_index = np.concatenate([np.asarray(idx, np.int64) for _, idx in known]) if known else \
        np.zeros(0, np.int64)
    if len(known_index) and known_index.min() < 1:
        raise ValueError("a published article index holds an index < 1; 0 is reserved")
    merged, (day_pos, known_pos) = merge_dictionaries([nodes.ids, known_ids], sort=False)
    if len(np.unique(known_pos)) != len(known_pos):
        raise ValueError("a published article index lists an article twice")
    index_of = np.zeros(len(merged), dtype=np.int64)
    index_of[known_pos] = known_index
    day_index = index_of[day_pos]
    is_known = day_index > 0
    return Joined(known_ids, known_index, np.flatnonzero(is_known), day_index[is_known],
                  np.flatnonzero(~is_known))


def sample_ids(ids: pa.Array, rows_per_bucket: int) -> pa.Array:
    """The ids whose stable hash falls in a 1 / (rows_per_bucket / SPLITTER_EVERY) slice."""
    rate = min(1.0, SPLITTER_EVERY / float(rows_per_bucket))
    threshold = np.uint64(min(2**64 - 1, int(rate * 2**64)))
    return ids.filter(pa.array(stable_hash(ids) < threshold))


def splitters_from_sample(sample: Sequence[str]) -> List[str]:
    """Every SPLITTER_EVERY-th id of the sorted sample: range boundaries."""
    ordered = sorted(set(sample), key=lambda s: s.encode("utf-8"))
    return ordered[SPLITTER_EVERY - 1::SPLITTER_EVERY]


def bucket_of(ids: pa.Array, splitters: Sequence[str]) -> np.ndarray:
    """Range of each id: the number of splitters <= the id (byte order)."""
    if not splitters:
        return np.zeros(len(ids), dtype=np.int64)
    keys = np.array([s.encode("utf-8") for s in ids.cast(pa.string()).to_pylist()],
                    dtype=object)
    bounds = np.array([s.encode("utf-8") for s in splitters], dtype=object)
    return np.searchsorted(bounds, keys, side="right").astype(np.int64)


def cell_counts(frequency: np.ndarray, bucket: np.ndarray) -> Dict[Tuple[int, int], int]:
    """New articles per (frequency, range) cell."""
    if not len(frequency):
        return {}
    width = int(bucket.max()) + 1
    keys, counts = np.unique(np.asarray(frequency, np.int64) * width + bucket,
                             return_counts=True)
    return {(int(k // width), int(k % width)): int(n) for k, n in zip(keys, counts)}


def cell_offsets(cells: Dict[Tuple[int, int], int]) -> Dict[Tuple[int, int], int]:
    """Each cell's first rank among all new articles: cells ordered by frequency descending,
    then range."""
    offsets, running = {}, 0
    for cell in sorted(cells, key=lambda fb: (-fb[0], fb[1])):
        offsets[cell] = running
        running += cells[cell]
    return offsets


def rank_new(ids: pa.Array, frequency: np.ndarray, bucket: int,
             offsets: Dict[Tuple[int, int], int], start: int) -> Tuple[np.ndarray, np.ndarray]:
    """All new articles of one id range -> (row order by (frequency desc, id), their index)."""
    if not len(ids):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    table = pa.table({"f": pa.array(-frequency), "id": ids.cast(pa.binary())})
    order = pc.sort_indices(table, sort_keys=[("f", "ascending"), ("id", "ascending")]).to_numpy()
    f = frequency[order]
    first = np.flatnonzero(np.r_[True, f[1:] != f[:-1]])
    rank = np.arange(len(f)) - np.repeat(first, np.diff(np.r_[first, len(f)]))
    base = np.array([offsets[(int(v), bucket)] for v in f[first]], dtype=np.int64)
    index = start + np.repeat(base, np.diff(np.r_[first, len(f)])) + rank
    return order, index
