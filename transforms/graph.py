"""Pair counts, edge weights, top-K neighbours, node attributes and the stable article index.

Plain numpy/Arrow functions over global article codes (positions in the day's
article dictionary, which is sorted in byte order, so ordering codes orders ids).
"""

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WEIGHTINGS = ("ppmi", "count", "jaccard", "cosine")
RANK_BY = ("weight", "count")


class PairCounts(NamedTuple):
    """Distinct ordered pairs, sorted by (src, dst), with their counts."""

    src: np.ndarray       # int64 article code
    dst: np.ndarray       # int64 article code
    count: np.ndarray     # int64 number of counted position pairs
    wcount: Optional[np.ndarray]   # float64 sum of w_i * w_j, None when unweighted


def _group(keys_sorted: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    if len(keys_sorted) == 0:
        return np.zeros(0, dtype=np.int64)
    flags = np.empty(len(keys_sorted), dtype=bool)
    flags[0] = True
    np.not_equal(keys_sorted[1:], keys_sorted[:-1], out=flags[1:])
    return np.flatnonzero(flags)


def _split_keys(keys: np.ndarray, n_articles: int) -> Tuple[np.ndarray, np.ndarray]:
    return keys // n_articles, keys % n_articles


def count_pairs(src: np.ndarray, dst: np.ndarray, weight: Optional[np.ndarray],
                n_articles: int) -> PairCounts:
    """Aggregate ordered pair occurrences (optionally weighted) into distinct pairs."""
    keys = src.astype(np.int64) * n_articles + dst
    if weight is None:
        keys = np.sort(keys)
        starts = _group(keys)
        counts = np.diff(np.append(starts, len(keys)))
        s, d = _split_keys(keys[starts], n_articles)
        return PairCounts(s, d, counts.astype(np.int64), None)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = _group(keys)
    counts = np.diff(np.append(starts, len(keys)))
    wsum = np.add.reduceat(weight[order], starts) if len(starts) else np.zeros(0)
    s, d = _split_keys(keys[starts], n_articles)
    return PairCounts(s, d, counts.astype(np.int64), wsum.astype(np.float64))


def merge_pair_counts(parts: Sequence[PairCounts], n_articles: int) -> PairCounts:
    """Sum partial counts of the same pairs. Parts are summed in the given order
    (callers pass them in a fixed order, so float sums are reproducible)."""
    weighted = any(p.wcount is not None for p in parts)
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return PairCounts(empty, empty, empty, np.zeros(0) if weighted else None)
    keys = np.concatenate([p.src.astype(np.int64) * n_articles + p.dst for p in parts])
    counts = np.concatenate([p.count for p in parts]).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = _group(keys)
    total = np.add.reduceat(counts[order], starts) if len(starts) else counts[:0]
    wtotal = None
    if weighted:
        w = np.concatenate([p.wcount for p in parts])[order]
        wtotal = np.add.reduceat(w, starts) if len(starts) else w[:0]
    s, d = _split_keys(keys[starts], n_articles)
    return PairCounts(s, d, total.astype(np.int64), wtotal)


def edge_weights(measure: np.ndarray, c_src: np.ndarray, c_dst: np.ndarray, total: float,
                 weighting: str) -> np.ndarray:
    """float64 edge weights by the formulas of the graph job, from c(a,b), c(a), c(b) and N."""
    m = measure.astype(np.float64)
    a = c_src.astype(np.float64)
    b = c_dst.astype(np.float64)
    if weighting == "count":
        return m
    if weighting == "ppmi":
        with np.errstate(divide="ignore"):
            return np.maximum(0.0, np.log(m * float(total) / (a * b)))
    if weighting == "jaccard":
        return m / (a + b - m)
    if weighting == "cosine":
        return m / np.sqrt(a * b)
    raise ValueError(f"--weighting={weighting!r}; expected one of {', '.join(WEIGHTINGS)}")


def top_k(src: np.ndarray, dst: np.ndarray, rank_value: np.ndarray, k: int) -> np.ndarray:
    """Indices of each source's k best rows: rank value descending, then dst ascending.
    The result is ordered by src, then rank."""
    if len(src) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((dst, -rank_value, src))
    s = src[order]
    starts = _group(s)
    rank = np.arange(len(s)) - np.repeat(starts, np.diff(np.append(starts, len(s))))
    return order[rank < k]


def region_mode(article: pa.Array, region: pa.Array) -> pa.Table:
    """Per article, the region it was most often interacted in; ties go to the
    smaller region id (byte order); rows without a region are not counted.

    Returns a table (article_id, region_id) with one row per article that has
    at least one row with a region."""
    table = pa.table({"article_id": article, "region_id": region}).filter(
        pc.is_valid(region))
    return region_mode_from_counts(count_by(table, ["article_id", "region_id"]))


def count_by(table: pa.Table, keys) -> pa.Table:
    """Rows per distinct key tuple: a table (n, *keys), columns picked by name."""
    grouped = table.group_by(keys).aggregate([(keys[0], "count")])
    return pa.table([grouped.column(f"{keys[0]}_count")] + [grouped.column(k) for k in keys],
                    names=["n"] + list(keys))


def region_mode_from_counts(counts: pa.Table) -> pa.Table:
    """Same as region_mode, from a table (n, article_id, region_id) of partial
    counts (the same pair may appear several times; they are summed)."""
    grouped = counts.group_by(["article_id", "region_id"]).aggregate([("n", "sum")])
    summed = pa.table([grouped.column("n_sum"), grouped.column("article_id"),
                       grouped.column("region_id")], names=["n_sum", "article_id", "region_id"])
    ranked = summed.sort_by([("article_id", "ascending"), ("n_sum", "descending"),
                             ("region_id", "ascending")])
    ids = ranked.column("article_id").combine_chunks()
    if len(ids) == 0:
        return pa.table({"article_id": pa.array([], pa.string()),
                         "region_id": pa.array([], pa.string())})
    first = np.ones(len(ids), dtype=bool)
    first[1:] = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)).to_numpy(
        zero_copy_only=False)
    keep = pa.array(np.flatnonzero(first))
    return pa.table({"article_id": ids.take(keep),
                     "region_id": ranked.column("region_id").take(keep)})


def assign_index(articles: pa.Array, frequency: np.ndarray, known_ids: pa.Array,
                 known_index: np.ndarray) -> Tuple[np.ndarray, pa.Table]:
    """Stable embedding-table ids: known articles keep theirs; new ones are
    appended after the largest known index, by frequency descending then id.
    0 is reserved for padding and unknown articles.

    `articles` must be sorted in byte order and unique. Returns the index of
    each article and the full index table (article_id, index) sorted by index.
    """
    known_index = np.asarray(known_index, dtype=np.int64)
    if len(known_index) and known_index.min() < 1:
        raise ValueError("a published article index holds an index < 1; 0 is reserved")
    position = pc.fill_null(pc.index_in(articles, value_set=known_ids), -1).to_numpy()
    is_known = position >= 0
    index = np.zeros(len(articles), dtype=np.int64)
    index[is_known] = known_index[position[is_known]]
    new = np.flatnonzero(~is_known)
    # articles are in byte order, so their positions order ids.
    new = new[np.lexsort((new, -np.asarray(frequency)[new]))]
    start = int(known_index.max()) + 1 if len(known_index) else 1
    index[new] = np.arange(start, start + len(new), dtype=np.int64)
    all_ids = pa.concat_arrays([known_ids.cast(pa.string()),
                                articles.take(pa.array(new)).cast(pa.string())])
    all_index = np.concatenate([known_index, index[new]])
    order = np.argsort(all_index, kind="stable")
    full = pa.table({"article_id": all_ids.take(pa.array(order)),
                     "index": pa.array(all_index[order])})
    return index, full
