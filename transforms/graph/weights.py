"""Event weights (--event_weights), edge weights, top-K neighbours and the articles'
regions: plain numpy/Arrow functions.

Article codes here are positions in a dictionary sorted in byte order, so ordering
codes orders ids (top-K ties go to the smaller neighbour id).
"""

import math
from typing import Dict, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract

WEIGHTINGS = ("ppmi", "count", "jaccard", "cosine")
RANK_BY = ("weight", "count")


def _group(keys_sorted: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    if len(keys_sorted) == 0:
        return np.zeros(0, dtype=np.int64)
    flags = np.empty(len(keys_sorted), dtype=bool)
    flags[0] = True
    np.not_equal(keys_sorted[1:], keys_sorted[:-1], out=flags[1:])
    return np.flatnonzero(flags)


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


def parse_event_weights(text: str) -> Optional[Dict[str, float]]:
    """'article_view:1,article_like:3,chat_start:5' -> weights; '' -> None (off)."""
    if not text:
        return None
    weights = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition(":")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or name not in contract.INTERACTION_EVENTS or \
                not (math.isfinite(weight) and weight > 0) or name in weights:
            raise ValueError(
                f"--event_weights={text!r}: each item must be <event>:<positive number> with "
                f"<event> one of {', '.join(contract.INTERACTION_EVENTS)}, each once, and a finite "
                f"positive weight; got {item!r}")
        weights[name] = weight
    missing = [n for n in contract.INTERACTION_EVENTS if n not in weights]
    if missing:
        raise ValueError(f"--event_weights={text!r} gives no weight for {', '.join(missing)}")
    return weights
