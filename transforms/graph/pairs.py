"""Article-keyed parts of the co-occurrence graph, as plain numpy/Arrow functions.

Everything that crosses a shuffle is a `Part`: the sorted distinct article ids the
part refers to, and numpy columns, some of which are codes into those ids. A part
holds only the articles of its own rows, so its size follows its rows, never the
catalogue; merging parts builds one dictionary from theirs with one hash pass
(`merge_dictionaries`), never a lookup per part into a day-sized dictionary.

Weighted counts are summed exactly: each position carries the class of its event
weight, each pair the class of its (unordered) pair of weights, and counts per class
are integers; a weighted count is sum_k n_k * w_k, in class order, so it never depends
on how the rows were grouped into shards.
"""

from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from transforms.common.columns import sorted_dictionary
from transforms.common.sharding import shard_ids
from transforms.graph import weights as graph


class Part(NamedTuple):
    """Rows about articles: `ids` distinct article ids (in byte order where a step needs
    it, else as first met), `cols` numpy columns of equal length; `codes` names the
    columns that are positions in `ids`."""

    ids: pa.Array
    cols: Dict[str, np.ndarray]
    codes: Tuple[str, ...]

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.cols.values()))) if self.cols else 0

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes) + sum(int(c.nbytes) for c in self.cols.values())


def narrow(codes: np.ndarray, size: int) -> np.ndarray:
    """Codes into a dictionary of `size` entries (or counts below `size`) in the
    narrowest fitting unsigned type: fewer bytes through the shuffle."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if size <= np.iinfo(dtype).max + 1:
            return codes.astype(dtype)
    return codes.astype(np.int64)


def compact_part(ids: pa.Array, cols: Dict[str, np.ndarray], codes: Sequence[str]) -> Part:
    """A part that refers only to the ids its code columns use (codes renumbered)."""
    used = np.unique(np.concatenate([cols[c] for c in codes])) if codes and len(
        cols[codes[0]]) else np.zeros(0, dtype=np.int64)
    new = dict(cols)
    for c in codes:
        new[c] = narrow(np.searchsorted(used, cols[c]), len(used))
    return Part(ids.take(pa.array(used, pa.int64())), new, tuple(codes))


def split_part(ids: pa.Array, cols: Dict[str, np.ndarray], codes: Sequence[str],
               target: np.ndarray) -> Iterator[Tuple[int, Part]]:
    """(target, compact part) for each distinct target value of the rows, rows in order."""
    if not len(target):
        return
    order = np.argsort(target, kind="stable")
    sorted_target = target[order]
    starts = np.flatnonzero(np.r_[True, sorted_target[1:] != sorted_target[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for start, end in zip(starts, ends):
        rows = order[start:end]
        yield int(sorted_target[start]), compact_part(
            ids, {name: col[rows] for name, col in cols.items()}, codes)


def merge_dictionaries(dictionaries: Sequence[pa.Array], sort: bool = True
                       ) -> Tuple[pa.Array, List[np.ndarray]]:
    """Distinct ids of all dictionaries (sorted in byte order with `sort`), and for each
    dictionary the position of each of its ids in the merged one. One hash pass over
    their concatenation."""
    arrays = [d for d in dictionaries]
    if not arrays:
        return pa.array([], pa.string()), []
    joined = pa.concat_arrays([a.cast(pa.string()) for a in arrays]) if len(arrays) > 1 \
        else arrays[0].cast(pa.string())
    codes, merged = sorted_dictionary(joined, sort)
    bounds = np.cumsum([0] + [len(a) for a in arrays])
    return merged, [codes[bounds[i]:bounds[i + 1]] for i in range(len(arrays))]


def merge_parts(parts: Sequence[Part], codes: Sequence[str], sort: bool = True) -> Part:
    """Concatenate parts over one merged dictionary (rows in the given part order;
    the dictionary in byte order with `sort`)."""
    parts = [p for p in parts if p.num_rows or len(p.ids)]
    if not parts:
        return Part(pa.array([], pa.string()), {}, tuple(codes))
    merged, mappings = merge_dictionaries([p.ids for p in parts], sort)
    names = list(parts[0].cols)
    cols = {}
    for name in names:
        if name in codes:
            cols[name] = np.concatenate([m[p.cols[name].astype(np.int64)]
                                         for p, m in zip(parts, mappings)])
        else:
            cols[name] = np.concatenate([p.cols[name] for p in parts])
    return Part(merged, cols, tuple(codes))


def runs(sorted_keys: np.ndarray) -> np.ndarray:
    """Start of each run of equal values of a sorted array."""
    if not len(sorted_keys):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


# ---------------------------------------------------------------------------------------------
# Weight classes


class WeightClasses(NamedTuple):
    """Event weights as classes: `of_event` maps an interaction event to the rank of its
    weight among the distinct weights; a pair of positions has the class of its unordered
    pair of weight classes, whose product is `products[class]`."""

    of_event: Dict[str, int]
    weights: np.ndarray      # distinct weights, ascending
    products: np.ndarray     # float64 w_lo * w_hi per pair class

    @property
    def num_pair_classes(self) -> int:
        return len(self.products)


def weight_classes(event_weights: Optional[Dict[str, float]]) -> WeightClasses:
    """No weights: one class of product 1.0."""
    if not event_weights:
        return WeightClasses({}, np.ones(1), np.ones(1))
    distinct = np.array(sorted(set(event_weights.values())), dtype=np.float64)
    of_event = {name: int(np.searchsorted(distinct, w)) for name, w in event_weights.items()}
    m = len(distinct)
    products = np.array([distinct[lo] * distinct[hi] for lo in range(m) for hi in range(lo, m)])
    return WeightClasses(of_event, distinct, products)


def pair_class(ci: np.ndarray, cj: np.ndarray, m: int) -> np.ndarray:
    """Index of the unordered class pair (min, max) among the m*(m+1)/2 pairs, ordered
    (0,0), (0,1), ..., (0,m-1), (1,1), ..."""
    lo = np.minimum(ci, cj).astype(np.int64)
    hi = np.maximum(ci, cj).astype(np.int64)
    return lo * m - lo * (lo - 1) // 2 + (hi - lo)


def weighted_sum(class_counts: np.ndarray, products: np.ndarray) -> np.ndarray:
    """sum_k class_counts[:, k] * products[k] in class order: (rows, K) ints -> float64."""
    total = np.zeros(class_counts.shape[0], dtype=np.float64)
    for k in range(class_counts.shape[1]):
        total += class_counts[:, k].astype(np.float64) * products[k]
    return total


# ---------------------------------------------------------------------------------------------
# Pair counts


def count_pairs(src: np.ndarray, dst: np.ndarray, cls: np.ndarray, count: np.ndarray,
                n_ids: int, n_classes: int) -> Dict[str, np.ndarray]:
    """Sum `count` per (src, dst, cls): columns sorted by (src, dst, cls), exact integers."""
    keys = (src.astype(np.int64) * n_ids + dst.astype(np.int64)) * n_classes + cls
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = runs(keys)
    total = np.add.reduceat(count[order].astype(np.int64), starts) if len(starts) else \
        np.zeros(0, dtype=np.int64)
    k = keys[starts]
    pair, cls_out = k // n_classes, k % n_classes
    return {"src": pair // n_ids, "dst": pair % n_ids, "cls": cls_out.astype(np.int8),
            "count": total}


def shard_pair_part(sessions_article: np.ndarray, sessions_weight_class: np.ndarray,
                    left: np.ndarray, right: np.ndarray, n_local: int,
                    n_weight_classes: int) -> Dict[str, np.ndarray]:
    """Position pairs (left, right indexes into the sessions' positions) of one user shard
    -> distinct ordered pairs (both directions) with their count per pair class."""
    a = sessions_article[left]
    b = sessions_article[right]
    cls = pair_class(sessions_weight_class[left], sessions_weight_class[right],
                     n_weight_classes) if n_weight_classes > 1 else \
        np.zeros(len(a), dtype=np.int64)
    n_classes = n_weight_classes * (n_weight_classes + 1) // 2
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    both = np.concatenate([cls, cls])
    return count_pairs(src, dst, both, np.ones(len(src), dtype=np.int64), n_local, n_classes)


class MergedPairs(NamedTuple):
    """Distinct pairs of one article partition (all their sources in it), with totals."""

    ids: pa.Array            # the ids referred to (no particular order)
    src: np.ndarray          # codes, sorted by (src, dst)
    dst: np.ndarray
    count: np.ndarray        # int64 c(a, b)
    wcount: Optional[np.ndarray]   # float64 sum_k n_k(a, b) w_k, None unweighted
    sources: np.ndarray      # codes of the distinct sources, ascending
    c_total: np.ndarray      # int64 c(a) = sum_b c(a, b), per source
    wc_total: Optional[np.ndarray]  # float64, per source
    class_totals: np.ndarray  # int64 per pair class, summed over every pair of the part


def merge_pair_parts(parts: Sequence[Part], products: np.ndarray) -> MergedPairs:
    """Partial pair counts (parts with codes src, dst and columns cls, count) -> distinct
    pairs with counts, weighted counts and the sources' marginals (before any filter)."""
    # One class of product 1.0 is the unweighted graph; one class of another product is not
    # (every event has the same weight w: counts weigh w * w).
    weighted = not (len(products) == 1 and products[0] == 1.0)
    k = len(products)
    merged = merge_parts(parts, ("src", "dst"), sort=False)
    n = len(merged.ids)
    if not merged.cols or not len(merged.cols["src"]):
        empty = np.zeros(0, dtype=np.int64)
        return MergedPairs(merged.ids, empty, empty, empty, np.zeros(0) if weighted else None,
                           empty, empty, np.zeros(0) if weighted else None,
                           np.zeros(k, dtype=np.int64))
    c = merged.cols
    cls_in = c["cls"].astype(np.int64) if "cls" in c else np.zeros(len(c["src"]), np.int64)
    rows = count_pairs(c["src"], c["dst"], cls_in, c["count"], n, k)
    src, dst, cls, cnt = rows["src"], rows["dst"], rows["cls"].astype(np.int64), rows["count"]
    class_totals = np.bincount(cls, weights=cnt, minlength=k).astype(np.int64)
    # (src, dst) runs: rows are sorted by (src, dst, cls).
    pair_key = src * n + dst
    starts = runs(pair_key)
    count = np.add.reduceat(cnt, starts)
    wcount = None
    if weighted:
        per_class = np.zeros((len(starts), k), dtype=np.int64)
        pair_of_row = np.cumsum(np.r_[False, pair_key[1:] != pair_key[:-1]])
        per_class[pair_of_row, cls] = cnt
        wcount = weighted_sum(per_class, products)
    psrc, pdst = src[starts], dst[starts]
    sstarts = runs(psrc)
    sources = psrc[sstarts]
    c_total = np.add.reduceat(count, sstarts)
    wc_total = None
    if weighted:
        src_of_row = np.searchsorted(sources, src)
        # float64 bincount sums integers exactly below 2**53.
        per_source = np.bincount(src_of_row * k + cls, weights=cnt,
                                 minlength=len(sources) * k).reshape(-1, k).astype(np.int64)
        wc_total = weighted_sum(per_source, products)
    return MergedPairs(merged.ids, psrc, pdst, count, wcount, sources, c_total, wc_total,
                       class_totals)


def mirrored_edges(m: MergedPairs, min_pair_count: int, num_partitions: int
                   ) -> Iterator[Tuple[int, Part]]:
    """Kept pairs (a, b) of a partition, sent to b's partition as the edge (b, a) with the
    marginal of a attached: c(a, b) = c(b, a), so b's partition then holds every kept edge
    of b with the marginals of both ends, and no side input is needed for them."""
    keep = m.count >= min_pair_count
    if not keep.any():
        return
    src, dst = m.src[keep], m.dst[keep]
    where = np.searchsorted(m.sources, src)
    cols = {"src": dst, "dst": src, "count": m.count[keep], "c_dst": m.c_total[where]}
    if m.wcount is not None:
        cols["wcount"] = m.wcount[keep]
        cols["wc_dst"] = m.wc_total[where]
    partition_of_id = shard_ids(m.ids, num_partitions)
    yield from split_part(m.ids, cols, ("src", "dst"), partition_of_id[dst])


def source_totals(m: MergedPairs) -> Part:
    """The marginals of a partition's sources, for its own ranking step."""
    cols = {"article": m.sources, "c": m.c_total}
    if m.wc_total is not None:
        cols["wc"] = m.wc_total
    return compact_part(m.ids, cols, ("article",))


class RankedEdges(NamedTuple):
    """Top-K edges of one partition's sources, ordered by source then rank."""

    src_ids: pa.Array
    dst_ids: pa.Array
    count: np.ndarray
    weight: np.ndarray   # float32


def rank_edges(totals: Sequence[Part], edges: Sequence[Part], total: float, weighting: str,
               rank_by: str, top_k: int) -> RankedEdges:
    """A partition's source marginals and its incoming kept edges (with the destination
    marginals) -> weights by `weighting` (float64, stored float32), then each source's
    `top_k` by `rank_by`, ties by destination id."""
    merged_edges = merge_parts(edges, ("src", "dst"), sort=False)
    if not merged_edges.cols or not len(merged_edges.cols["src"]):
        empty = pa.array([], pa.binary())
        return RankedEdges(empty, empty, np.zeros(0, np.int64), np.zeros(0, np.float32))
    merged_totals = merge_parts(totals, ("article",), sort=False)
    # Byte order here: top-K ties go to the smaller destination id.
    ids, (edge_map, total_map) = merge_dictionaries([merged_edges.ids, merged_totals.ids])
    e, t = merged_edges.cols, merged_totals.cols
    src, dst = edge_map[e["src"]], edge_map[e["dst"]]
    weighted = "wcount" in e
    c_of = np.zeros(len(ids), dtype=np.float64)
    c_of[total_map[t["article"]]] = t["wc"] if weighted else t["c"]
    measure = e["wcount"] if weighted else e["count"]
    c_dst = e["wc_dst"] if weighted else e["c_dst"]
    weight64 = graph.edge_weights(measure, c_of[src], c_dst, total, weighting)
    keep = weight64 > 0 if weighting == "ppmi" else np.ones(len(src), dtype=bool)
    src, dst, count = src[keep], dst[keep], e["count"][keep]
    weight = weight64[keep].astype(np.float32)
    chosen = graph.top_k(src, dst, weight if rank_by == "weight" else count, top_k)
    src, dst, count, weight = src[chosen], dst[chosen], count[chosen], weight[chosen]
    binary = ids.cast(pa.binary())
    return RankedEdges(binary.take(pa.array(src, pa.int64())),
                       binary.take(pa.array(dst, pa.int64())),
                       count.astype(np.int64), weight)
