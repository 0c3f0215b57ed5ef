"""item2vec skip-gram examples, as plain functions on numpy arrays.

The day's collapsed sessions (transforms/graph/sessions.py) give positions: one
article per position, sessions contiguous and in order. Then, for a shard of
positions:

1. Subsampling (`keep_positions`): a position is kept with probability
   p = min(1, (sqrt(f/t) + 1) * t/f), f its article's share of all the day's
   positions, t = --skipgram_subsample. The draw is keyed by (seed, run_date,
   the event id of the position's first event), so it does not depend on the
   shard a position lands in.
2. Pairs (`window_pairs`): (target, context) positions of the same session at
   most `window` apart in the KEPT sequence, both directions, equal articles
   dropped.
3. The optional cap (`cap_mask`): each pair kept when a draw keyed by the event
   ids of its two positions is below rate = min(1, max_pairs / total_pairs).
4. Negatives (`NegativeSampler.draw`): n per pair from the day's unigram
   distribution (positions per article) raised to 0.75, exactly
   round(n * share) of them from the target's region, never the target or the
   context.
5. Records (`pack_records`): pairs in a seeded order, cut into tf.train.Example
   records of parallel int64 lists target, context, negatives (row-major), encoded
   by transforms/examples/example_proto.py (no TensorFlow here).

Every draw goes through transforms/examples/draws.py: a pure function of the seed, the run
date, a purpose and stable keys of what is drawn.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa

from transforms.examples.draws import keyed_uint64, uniform
from transforms.examples.example_proto import encode_example

#: What a skip-gram record holds; shape None is a variable-length list.
SKIPGRAM_FEATURE_SPEC = {
    "encoding": "tf.train.Example",
    "features": {
        "target": {"dtype": "int64", "shape": None},
        "context": {"dtype": "int64", "shape": None},
        "negatives": {"dtype": "int64", "shape": None},
    },
}

#: p < 1 exactly when f > t * SUBSAMPLE_FACTOR, the golden ratio squared:
#: sqrt(t/f) + t/f < 1  <=>  sqrt(t/f) < 1/phi  <=>  f > t * phi^2.
SUBSAMPLE_FACTOR = ((1.0 + math.sqrt(5.0)) / 2.0) ** 2

#: Same-region draws need at least this many candidate articles in the region;
#: a smaller region (or no region) draws them from the global distribution.
MIN_REGION_CANDIDATES = 3

#: Rejections of a draw that hit the target or the context before the draw is made
#: directly from the distribution without them (the same distribution: rejection
#: sampling until valid is sampling from the restriction).
MAX_ATTEMPTS = 16

_UNIGRAM_POWER = 0.75
_SORTED_SEARCH_MIN_TABLE = 4096   # _pick: larger global tables are searched in key order


def _check_t(t: float) -> float:
    t = float(t)
    if not t > 0.0 or not math.isfinite(t):
        raise ValueError(f"--skipgram_subsample={t!r} must be a finite number > 0")
    return t


def subsampled_share_threshold(t: float) -> float:
    """The share above which an article is subsampled (p < 1): t * SUBSAMPLE_FACTOR.

    Shares sum to 1, so at most 1 / threshold articles are ever subsampled
    (382 at t = 1e-3, 38,196 at t = 1e-5), whatever the catalogue size: the side
    input of frequent articles and their counts is bounded by that, 16 bytes an
    article (about 6 KB at the default t)."""
    return _check_t(t) * SUBSAMPLE_FACTOR


def keep_probability(share: np.ndarray, t: float) -> np.ndarray:
    """min(1, (sqrt(f/t) + 1) * t/f) for each share f; exactly 1.0 where f is at or below
    subsampled_share_threshold(t) (and for f = 0)."""
    threshold = subsampled_share_threshold(t)
    share = np.asarray(share, dtype=np.float64)
    out = np.ones(share.shape, dtype=np.float64)
    frequent = share > threshold
    f = share[frequent]
    out[frequent] = np.minimum(1.0, (np.sqrt(f / t) + 1.0) * t / f)
    return out


def frequent_articles(article_index: np.ndarray, count: np.ndarray, total_positions: int,
                      t: float) -> Tuple[np.ndarray, np.ndarray]:
    """(indexes, counts) of the articles with keep probability < 1, sorted by index:
    the side input keep_positions needs (at most 1 / subsampled_share_threshold(t))."""
    article_index = np.asarray(article_index, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    if total_positions <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    frequent = count / float(total_positions) > subsampled_share_threshold(t)
    order = np.argsort(article_index[frequent], kind="stable")
    return article_index[frequent][order], count[frequent][order]


FrequentArticles = Union[Dict[int, int], Tuple[np.ndarray, np.ndarray]]


def keep_positions(article: np.ndarray, event_key: np.ndarray, frequent: FrequentArticles,
                   total_positions: int, t: float, base) -> np.ndarray:
    """Bool mask of the positions subsampling keeps.

    article: int64 article per position; event_key: uint64 per position, string_keys of
    the event id of the position's first event; frequent: the articles with p < 1 and
    their day's position counts, as {index: count} or (indexes, counts) (others are
    always kept); total_positions: the day's positions; base: base_key(seed, run_date,
    'subsample'). A position is kept when uniform(base, event_key) < p(count / total)."""
    article = np.asarray(article, dtype=np.int64)
    keep = np.ones(len(article), dtype=bool)
    if isinstance(frequent, dict):
        indexes = np.fromiter(frequent.keys(), dtype=np.int64, count=len(frequent))
        counts = np.fromiter(frequent.values(), dtype=np.int64, count=len(frequent))
    else:
        indexes = np.asarray(frequent[0], dtype=np.int64)
        counts = np.asarray(frequent[1], dtype=np.int64)
    if len(indexes) == 0 or len(article) == 0:
        return keep
    order = np.argsort(indexes, kind="stable")
    indexes, counts = indexes[order], counts[order]
    slot = np.minimum(np.searchsorted(indexes, article), len(indexes) - 1)
    hit = np.flatnonzero(indexes[slot] == article)
    if len(hit) == 0:
        return keep
    p = keep_probability(counts[slot[hit]] / float(total_positions), t)
    u = uniform(base, np.asarray(event_key, dtype=np.uint64)[hit])
    keep[hit] = u < p
    return keep


_BLOCK_CANDIDATES = 1 << 20   # window_pairs: candidate cells per block (bounded temporaries)


def window_pairs(session: np.ndarray, article: np.ndarray,
                 window: int) -> Tuple[np.ndarray, np.ndarray]:
    """(left, right) int64 position indexes of every ordered pair of the same session
    with 0 < |left - right| <= window and different articles.

    Positions are those of the kept sequence, sessions contiguous (session numbers
    non-decreasing). Order: by left, then by right (offsets -window..-1, 1..window)."""
    if window < 1:
        raise ValueError(f"--skipgram_window={window} must be >= 1")
    session = np.asarray(session)
    article = np.asarray(article)
    n = len(article)
    offsets = np.r_[np.arange(-window, 0), np.arange(1, window + 1)].astype(np.int64)
    lefts, rights = [], []
    block = max(1, _BLOCK_CANDIDATES // (2 * window))   # positions per block
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        rows = np.arange(lo, hi, dtype=np.int64)
        cand = rows[:, None] + offsets[None, :]
        inside = (cand >= 0) & (cand < n)
        clipped = np.where(inside, cand, rows[:, None])
        valid = inside & (session[clipped] == session[rows][:, None]) \
            & (article[clipped] != article[rows][:, None])
        r, c = np.nonzero(valid)
        lefts.append(rows[r])
        rights.append(rows[r] + offsets[c])
    if not lefts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    return np.concatenate(lefts), np.concatenate(rights)


def pair_keys(base, left_key: np.ndarray, right_key: np.ndarray) -> np.ndarray:
    """uint64 key of each ordered pair from its positions' event keys (string_keys of
    each position's first event id): keyed_uint64(base, left_key, right_key), base =
    base_key(seed, run_date, 'pair'). The key the negatives and the record order are
    drawn with."""
    return keyed_uint64(base, np.asarray(left_key, dtype=np.uint64),
                        np.asarray(right_key, dtype=np.uint64))


def cap_rate(max_pairs: int, total_pairs: int) -> float:
    """min(1, max_pairs / total_pairs); 1.0 when max_pairs is 0 (the cap is off) or
    there are no pairs."""
    if max_pairs < 0:
        raise ValueError(f"--skipgram_max_pairs={max_pairs} must be >= 0")
    if max_pairs == 0 or total_pairs <= 0:
        return 1.0
    return min(1.0, max_pairs / float(total_pairs))


def cap_mask(target_key: np.ndarray, context_key: np.ndarray, rate: float,
             base) -> np.ndarray:
    """Pairs kept by the day's cap: uniform(base, target_key, context_key) < rate, base =
    base_key(seed, run_date, 'cap'), keys the event keys of the target's and the
    context's positions. rate >= 1 keeps every pair."""
    target_key = np.asarray(target_key, dtype=np.uint64)
    if rate >= 1.0:
        return np.ones(len(target_key), dtype=bool)
    return uniform(base, target_key, np.asarray(context_key, dtype=np.uint64)) < rate


def same_region_count(n: int, share: float) -> int:
    """round(n * share) with Python's round (half to even): 4*0.5 -> 2, 5*0.5 -> 2,
    3*0.5 -> 2."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"--skipgram_same_region_negatives={share!r} must be in [0, 1]")
    if n < 0:
        raise ValueError(f"--skipgram_negatives={n} must be >= 0")
    return int(round(n * share))


# ---------------------------------------------------------------------------------------------
# Negatives


def _cumulative(weights: np.ndarray) -> np.ndarray:
    """Normalised cumulative weights, the last exactly 1.0 (so u < 1 never runs past it)."""
    cum = np.cumsum(weights)
    cum /= cum[-1]
    cum[-1] = 1.0
    return cum


class NegativeSampler:
    """The day's negative distribution: positions per article raised to 0.75, globally and
    per region, as cumulative float64 arrays searched with searchsorted.

    A side input bounded by the day's distinct interacted articles: an int64 article and
    a float64 cumulative weight per article in the global table and again in its
    region's table, plus an int32 region code (about 36 bytes an article, 360 MB at
    10^7 articles; `nbytes` gives the exact size). Articles with a zero count are left
    out (they cannot be drawn)."""

    def __init__(self, article_index: np.ndarray, count: np.ndarray,
                 region: Sequence[str]):
        article_index = np.asarray(article_index, dtype=np.int64)
        count = np.asarray(count, dtype=np.int64)
        region = np.asarray(["" if r is None else str(r) for r in region], dtype=object) \
            if not isinstance(region, np.ndarray) or region.dtype == object \
            else region.astype(object)
        if not len(article_index) == len(count) == len(region):
            raise ValueError("article_index, count and region must have the same length")
        if len(count) and count.min() < 0:
            raise ValueError("article counts must be >= 0")
        present = count > 0
        article_index, count, region = article_index[present], count[present], region[present]
        order = np.argsort(article_index, kind="stable")
        article_index, count, region = article_index[order], count[order], region[order]
        if len(article_index) > 1 and bool((article_index[1:] == article_index[:-1]).any()):
            raise ValueError("article_index holds an article twice")
        weights = count.astype(np.float64) ** _UNIGRAM_POWER
        self.articles = article_index
        self.cum = _cumulative(weights) if len(weights) else np.zeros(0, np.float64)
        names = sorted({r for r in region.tolist() if r != ""})
        self.region_names: List[str] = names
        self._region_lookup = {name: code for code, name in enumerate(names)}
        codes = np.fromiter((self._region_lookup.get(r, -1) for r in region.tolist()),
                            dtype=np.int32, count=len(region))
        self.article_region = codes
        # Region tables, one segment per region code, articles sorted within.
        by_region = np.argsort(codes, kind="stable")
        by_region = by_region[codes[by_region] >= 0]
        sizes = np.bincount(codes[by_region], minlength=len(names)).astype(np.int64)
        self.region_start = np.r_[0, np.cumsum(sizes)].astype(np.int64)
        self.region_articles = article_index[by_region]
        self.region_cum = np.empty(len(by_region), dtype=np.float64)
        region_weights = weights[by_region]
        for code in range(len(names)):
            s, e = self.region_start[code], self.region_start[code + 1]
            self.region_cum[s:e] = _cumulative(region_weights[s:e])

    @classmethod
    def from_table(cls, table: pa.Table, article_column: str = "article_index",
                   count_column: str = "count",
                   region_column: str = "region") -> "NegativeSampler":
        """From an Arrow table of the day's articles: index, positions, region ('' or null:
        none)."""
        region = table.column(region_column).to_pylist()
        return cls(table.column(article_column).to_numpy(),
                   table.column(count_column).to_numpy(),
                   ["" if r is None else r for r in region])

    @property
    def nbytes(self) -> int:
        """Bytes of the sampler's arrays and region names."""
        arrays = (self.articles, self.cum, self.article_region, self.region_start,
                  self.region_articles, self.region_cum)
        return int(sum(a.nbytes for a in arrays)
                   + sum(len(n.encode("utf-8")) for n in self.region_names))

    def region_codes(self, regions: Sequence[str]) -> np.ndarray:
        """int32 code of each region name; -1 for '' or None or a region with no article."""
        return np.fromiter((self._region_lookup.get(r if r is not None else "", -1)
                            for r in regions), dtype=np.int32, count=len(regions))

    def region_of(self, article: np.ndarray) -> np.ndarray:
        """int32 region code of each article; -1 for no region or an article not here."""
        article = np.asarray(article, dtype=np.int64)
        if len(self.articles) == 0:
            return np.full(len(article), -1, dtype=np.int32)
        slot = np.minimum(np.searchsorted(self.articles, article), len(self.articles) - 1)
        return np.where(self.articles[slot] == article, self.article_region[slot],
                        -1).astype(np.int32)

    def _contains(self, article: np.ndarray) -> np.ndarray:
        if len(self.articles) == 0:
            return np.zeros(len(article), dtype=bool)
        slot = np.minimum(np.searchsorted(self.articles, article), len(self.articles) - 1)
        return self.articles[slot] == article

    def _pick(self, table: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Article drawn with u from table (-1 global, else a region code), per element:
        the first of the table's articles whose cumulative weight exceeds u.

        Draws from the global table are searched in the order of their top 16 bits (a
        stable radix sort): nearly sorted keys search a large table several times
        faster than random ones. Regional draws are grouped by region (a radix sort of
        the codes), one search per region present."""
        out = np.empty(len(u), dtype=np.int64)
        glob = table < 0
        where = np.flatnonzero(glob)
        if len(where):
            ug = u[where]
            if len(self.cum) > _SORTED_SEARCH_MIN_TABLE:
                order = np.argsort((ug * 65536.0).astype(np.uint16), kind="stable")
                idx = np.empty(len(ug), dtype=np.int64)
                idx[order] = np.searchsorted(self.cum, ug[order], side="right")
            else:
                idx = np.searchsorted(self.cum, ug, side="right")
            out[where] = self.articles[np.minimum(idx, len(self.cum) - 1)]
        where = np.flatnonzero(~glob)
        if len(where):
            codes = table[where].astype(np.int16 if len(self.region_names) < 32000
                                        else np.int32)
            by_region = np.argsort(codes, kind="stable")
            where, codes = where[by_region], codes[by_region]
            bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                arts, cum = self._segment(int(codes[a]))
                idx = np.searchsorted(cum, u[where[a:b]], side="right")
                out[where[a:b]] = arts[np.minimum(idx, len(arts) - 1)]
        return out

    def _segment(self, table: int) -> Tuple[np.ndarray, np.ndarray]:
        if table < 0:
            return self.articles, self.cum
        s, e = int(self.region_start[table]), int(self.region_start[table + 1])
        return self.region_articles[s:e], self.region_cum[s:e]

    def _pick_excluding(self, table: int, u: float, target: int, context: int) -> int:
        """The draw of u from table restricted to articles other than target and context
        (the distribution rejection converges to), made directly. -1 if none is left."""
        arts, cum = self._segment(table)
        excluded = []
        for a in sorted({target, context}):
            i = int(np.searchsorted(arts, a))
            if i < len(arts) and int(arts[i]) == a:
                excluded.append(i)
        excluded.sort()
        if len(excluded) == len(arts):
            return -1
        start = [float(cum[i - 1]) if i > 0 else 0.0 for i in excluded]
        width = [float(cum[i]) - s for i, s in zip(excluded, start)]
        v = u * (1.0 - sum(width))
        for s, w in zip(start, width):
            if v >= s:
                v += w
        i = min(int(np.searchsorted(cum, v, side="right")), len(arts) - 1)
        if i in excluded:   # only by rounding at an interval's edge: the next allowed one
            allowed = [j for j in range(len(arts)) if j not in excluded]
            after = [j for j in allowed if j > i]
            i = after[0] if after else allowed[-1]
        return int(arts[i])

    def draw(self, target: np.ndarray, context: np.ndarray,
             target_region: Optional[Union[np.ndarray, Sequence[str]]], n: int, n_same: int,
             base, pair_key: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Negatives of each pair: (int64 array (pairs, n), bool valid per pair).

        Draws 0..n_same-1 come from the target's region (its region's table when it has
        at least MIN_REGION_CANDIDATES articles, else the global one), draws n_same..n-1
        from the global table. Draw k of pair p uses uniform(base, pair_key[p], k,
        attempt); a draw equal to the pair's target or context is redrawn with attempt
        + 1, and after MAX_ATTEMPTS rejections drawn directly from the table without
        target and context (with attempt = MAX_ATTEMPTS). A pair is invalid (its row
        all -1) when the global table holds no article other than its target and
        context. target_region: int region codes per pair, region names per pair, or
        None (the target's own region in this sampler)."""
        target = np.asarray(target, dtype=np.int64)
        context = np.asarray(context, dtype=np.int64)
        pair_key = np.asarray(pair_key, dtype=np.uint64)
        pairs = len(target)
        if not 0 <= n_same <= n:
            raise ValueError(f"n_same={n_same} must be in [0, n={n}]")
        if not len(context) == len(pair_key) == pairs:
            raise ValueError("target, context and pair_key must have the same length")
        negatives = np.full((pairs, n), -1, dtype=np.int64)
        if n == 0 or pairs == 0:
            return negatives, np.ones(pairs, dtype=bool)
        if target_region is None:
            codes = self.region_of(target)
        elif isinstance(target_region, np.ndarray) and target_region.dtype.kind in "iu":
            codes = target_region.astype(np.int32)
        else:
            codes = self.region_codes(list(target_region))
        sizes = np.diff(self.region_start)
        regional = (codes >= 0) & (sizes[np.maximum(codes, 0)] >= MIN_REGION_CANDIDATES) \
            if len(sizes) else np.zeros(pairs, dtype=bool)
        if len(self.articles) >= 3:   # an article other than target and context exists
            valid = np.ones(pairs, dtype=bool)
        else:
            others = len(self.articles) - self._contains(target).astype(np.int64) \
                - (self._contains(context) & (context != target)).astype(np.int64)
            valid = others > 0
        # Cells (pair, k) of the valid pairs, row-major. keyed_uint64 chains its keys, so
        # the pair's part of the hash is computed once per pair, not once per draw.
        rows = np.flatnonzero(valid)
        t_rows, c_rows = target[rows], context[rows]
        cell_hash = keyed_uint64(keyed_uint64(base, pair_key[rows])[:, None],
                                 np.arange(n, dtype=np.int64)[None, :]).ravel()
        regional_cells = regional[rows][:, None] & (np.arange(n) < n_same)[None, :]
        table_all = np.where(regional_cells, codes[rows][:, None], -1).ravel()
        drawn = self._pick(table_all, uniform(cell_hash, 0)).reshape(len(rows), n)
        result = drawn.ravel()
        pending = np.flatnonzero(((drawn == t_rows[:, None]) | (drawn == c_rows[:, None]))
                                 .ravel())
        attempt = 1
        while len(pending) and attempt < MAX_ATTEMPTS:
            p = pending // n
            got = self._pick(table_all[pending], uniform(cell_hash[pending], attempt))
            result[pending] = got
            pending = pending[(got == t_rows[p]) | (got == c_rows[p])]
            attempt += 1
        if len(pending):
            u = uniform(cell_hash[pending], MAX_ATTEMPTS)
            for cell, table, ui in zip(pending.tolist(), table_all[pending].tolist(),
                                       u.tolist()):
                row = cell // n
                result[cell] = self._pick_excluding(table, ui, int(t_rows[row]),
                                                    int(c_rows[row]))
        negatives[rows] = drawn
        return negatives, valid


# ---------------------------------------------------------------------------------------------
# Records


def pack_records(target: np.ndarray, context: np.ndarray, negatives: np.ndarray,
                 pairs_per_record: int, order_key: np.ndarray) -> List[bytes]:
    """Serialized tf.train.Example records of at most pairs_per_record pairs each.

    Pairs are ordered by order_key (uint64, a seeded hash of the pair such as
    keyed_uint64(base_key(seed, run_date, 'order'), pair_key), so a record mixes users;
    ties keep their input order) and cut into consecutive chunks. Each record holds
    int64 lists target, context (one per pair) and negatives (pairs x n, row-major)."""
    if pairs_per_record < 1:
        raise ValueError(f"--skipgram_pairs_per_record={pairs_per_record} must be >= 1")
    target = np.asarray(target, dtype=np.int64)
    context = np.asarray(context, dtype=np.int64)
    pairs = len(target)
    negatives = np.asarray(negatives, dtype=np.int64).reshape(pairs, -1) if pairs \
        else np.zeros((0, 0), dtype=np.int64)
    if not len(context) == len(order_key) == pairs:
        raise ValueError("target, context, negatives and order_key must have the same length")
    if pairs == 0:
        return []
    order = np.argsort(np.asarray(order_key, dtype=np.uint64), kind="stable")
    target, context, negatives = target[order], context[order], negatives[order]
    return [encode_example({"target": ("int64", target[lo:lo + pairs_per_record]),
                            "context": ("int64", context[lo:lo + pairs_per_record]),
                            "negatives": ("int64",
                                          negatives[lo:lo + pairs_per_record].reshape(-1))})
            for lo in range(0, pairs, pairs_per_record)]
