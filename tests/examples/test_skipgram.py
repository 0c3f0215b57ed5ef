"""Tier 1: item2vec skip-gram examples (transforms/skipgram.py), against plain-Python
references written here."""

import bisect
import math
import random

import numpy as np
import pyarrow as pa
import pytest

from transforms.examples import draws, skipgram
from transforms.examples.skipgram import NegativeSampler

pytestmark = pytest.mark.functions

BASE = draws.base_key(42, "2026-03-01", "negatives")


# ---------------------------------------------------------------------------------------------
# References


def ref_p(f: float, t: float) -> float:
    return 1.0 if f == 0 else min(1.0, (math.sqrt(f / t) + 1) * t / f)


def ref_u(base, *keys) -> float:
    """One scalar draw (draws.uniform is checked against integers in test_draws)."""
    return float(draws.uniform(base, *[np.uint64(k) if isinstance(k, np.uint64) else int(k)
                                       for k in keys]))


def ref_window_pairs(session, article, window):
    out = []
    n = len(article)
    for i in range(n):
        for j in range(i - window, i + window + 1):
            if j != i and 0 <= j < n and session[i] == session[j] \
                    and article[i] != article[j]:
                out.append((i, j))
    return out


class RefTable:
    """A cumulative table in Python floats: articles sorted, weights count ** 0.75."""

    def __init__(self, items):
        items = sorted((a, c) for a, c in items if c > 0)
        self.articles = [a for a, _ in items]
        acc, cum = 0.0, []
        for _, c in items:
            acc += float(c) ** 0.75
            cum.append(acc)
        self.cum = [x / acc for x in cum]
        if self.cum:
            self.cum[-1] = 1.0

    def pick(self, u):
        return self.articles[min(bisect.bisect_right(self.cum, u), len(self.cum) - 1)]

    def pick_excluding(self, u, excluded):
        widths = [c - (self.cum[i - 1] if i else 0.0) for i, c in enumerate(self.cum)]
        allowed = [(a, w) for a, w in zip(self.articles, widths) if a not in excluded]
        v = u * sum(w for _, w in allowed)
        acc = 0.0
        for a, w in allowed:
            acc += w
            if v < acc:
                return a
        return allowed[-1][0]


def ref_draw(articles, counts, regions, target, context, n, n_same, base, pair_key):
    """Negatives and validity of each pair, one draw at a time."""
    glob = RefTable(zip(articles, counts))
    region_of = {a: r for a, c, r in zip(articles, counts, regions) if c > 0}
    by_region = {}
    for a, c, r in zip(articles, counts, regions):
        if r and c > 0:
            by_region.setdefault(r, []).append((a, c))
    tables = {r: RefTable(items) for r, items in by_region.items() if len(items) >= 3}
    rows, valid = [], []
    for t, c, key in zip(target, context, pair_key):
        if n and not [a for a in glob.articles if a not in (t, c)]:
            rows.append([-1] * n)
            valid.append(False)
            continue
        table_same = tables.get(region_of.get(t, ""), glob)
        row = []
        for k in range(n):
            table = table_same if k < n_same else glob
            for attempt in range(skipgram.MAX_ATTEMPTS):
                a = table.pick(ref_u(base, key, k, attempt))
                if a not in (t, c):
                    break
            else:
                a = table.pick_excluding(ref_u(base, key, k, skipgram.MAX_ATTEMPTS), (t, c))
            row.append(a)
        rows.append(row)
        valid.append(True)
    return rows, valid


def random_catalogue(rng, n_articles, regions):
    articles = rng.sample(range(10 * n_articles), n_articles)
    counts = [rng.choice([0, 1, 1, 2, 3, 5, 8, 40, 300]) for _ in articles]
    region = [rng.choice(regions) for _ in articles]
    return articles, counts, region


# ---------------------------------------------------------------------------------------------
# Subsampling


def test_keep_probability_values():
    t = 2.0 ** -10
    shares = np.array([0.0, t / 2, t, 2 * t, 4 * t, 16 * t, 1.0])
    got = skipgram.keep_probability(shares, t)
    # f <= t * phi^2 keeps every position; 4t -> sqrt(1/4) + 1/4, 16t -> 1/4 + 1/16.
    assert got.tolist() == [1.0, 1.0, 1.0, 1.0, 0.75, 0.3125, 33.0 / 1024.0]
    rng = np.random.default_rng(0)
    shares = rng.uniform(0, 0.05, size=500)
    assert skipgram.keep_probability(shares, 1e-3).tolist() == [
        ref_p(f, 1e-3) for f in shares.tolist()]


def test_the_threshold_is_t_times_phi_squared():
    t = 1e-3
    threshold = skipgram.subsampled_share_threshold(t)
    assert skipgram.SUBSAMPLE_FACTOR == ((1 + math.sqrt(5)) / 2) ** 2
    assert threshold == t * skipgram.SUBSAMPLE_FACTOR
    assert abs(ref_p(threshold, t) - 1.0) < 1e-15
    below = np.nextafter(threshold, 0.0)
    above = threshold * (1 + 1e-9)
    got = skipgram.keep_probability(np.array([below, threshold, above]), t)
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] < 1.0 and got[2] == ref_p(above, t)
    # At most 1 / threshold articles can have a share above it.
    assert math.floor(1 / threshold) == 381
    with pytest.raises(ValueError, match="--skipgram_subsample"):
        skipgram.subsampled_share_threshold(0.0)


def test_frequent_articles_are_those_above_the_threshold():
    counts = np.array([1000, 2, 2619, 2618, 5000])
    idx, cnt = skipgram.frequent_articles(np.array([9, 3, 7, 1, 5]), counts, 1_000_000, 1e-3)
    # threshold share 2.618034e-3 -> count > 2618.03
    assert idx.tolist() == [5, 7] and cnt.tolist() == [5000, 2619]


def test_keep_positions_matches_the_reference_and_does_not_depend_on_the_shard():
    rng = random.Random(5)
    base = draws.base_key(1, "2026-03-01", "subsample")
    total, t = 10_000, 1e-3
    frequent = {7: 900, 8: 60, 9: 20}   # 20/10000 = 2e-3 is below the threshold: p = 1
    article = np.array([rng.choice([1, 2, 7, 7, 7, 8, 9]) for _ in range(3000)])
    event_key = np.array([rng.getrandbits(64) for _ in range(3000)], dtype=np.uint64)
    got = skipgram.keep_positions(article, event_key, frequent, total, t, base)
    expected = [ref_u(base, np.uint64(k)) < ref_p(frequent[a] / total, t) if a in frequent
                else True for a, k in zip(article.tolist(), event_key)]
    assert got.tolist() == expected
    # p(0.09) ~ 0.116 and p(0.006) ~ 0.58: both kinds of outcome occur.
    kept7 = got[article == 7].mean()
    assert 0.09 < kept7 < 0.14
    assert bool(got[article == 1].all()) and bool(got[article == 9].all())
    as_arrays = skipgram.keep_positions(article, event_key, (np.array([9, 7, 8]),
                                                             np.array([20, 900, 60])),
                                        total, t, base)
    assert np.array_equal(as_arrays, got)
    pieces = np.concatenate([skipgram.keep_positions(article[lo:lo + 401],
                                                     event_key[lo:lo + 401], frequent,
                                                     total, t, base)
                             for lo in range(0, 3000, 401)])
    assert np.array_equal(pieces, got)
    other = skipgram.keep_positions(article, event_key, frequent, total, t,
                                    draws.base_key(2, "2026-03-01", "subsample"))
    assert not np.array_equal(other, got)


def test_keep_positions_with_no_frequent_article_keeps_everything():
    got = skipgram.keep_positions(np.array([1, 2]), np.array([1, 2], np.uint64), {}, 10,
                                  1e-3, BASE)
    assert got.tolist() == [True, True]


# ---------------------------------------------------------------------------------------------
# Pairs


@pytest.mark.parametrize("window", [1, 2, 5])
def test_window_pairs_match_a_double_loop(window, monkeypatch):
    rng = random.Random(window)
    lengths = [rng.choice([1, 1, 2, 3, 6, 12]) for _ in range(60)]
    session = np.repeat(np.arange(len(lengths)), lengths)
    article = np.array([rng.choice([0, 1, 2, 3]) for _ in session])   # many repeats
    expected = ref_window_pairs(session.tolist(), article.tolist(), window)
    left, right = skipgram.window_pairs(session, article, window)
    assert left.dtype == np.int64 and right.dtype == np.int64
    assert list(zip(left.tolist(), right.tolist())) == expected
    # Small blocks: the same pairs, in the same order.
    monkeypatch.setattr(skipgram, "_BLOCK_CANDIDATES", 7)
    left2, right2 = skipgram.window_pairs(session, article, window)
    assert np.array_equal(left2, left) and np.array_equal(right2, right)


def test_window_pairs_literal_and_empty():
    left, right = skipgram.window_pairs(np.array([0, 0, 0, 1, 1]), np.array([1, 2, 1, 3, 4]), 2)
    # (0, 2) and (2, 0) are the same article; 2 and 3 are in different sessions.
    assert list(zip(left.tolist(), right.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1),
                                                        (3, 4), (4, 3)]
    left, right = skipgram.window_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), 5)
    assert left.tolist() == [] and right.tolist() == []
    with pytest.raises(ValueError, match="--skipgram_window"):
        skipgram.window_pairs(np.zeros(1), np.zeros(1), 0)


def test_pair_keys_and_the_cap():
    rng = random.Random(2)
    a = np.array([rng.getrandbits(64) for _ in range(2000)], dtype=np.uint64)
    b = np.array([rng.getrandbits(64) for _ in range(2000)], dtype=np.uint64)
    pair_base = draws.base_key(42, "2026-03-01", "pair")
    assert skipgram.pair_keys(pair_base, a, b).tolist() == \
        draws.keyed_uint64(pair_base, a, b).tolist()
    cap_base = draws.base_key(42, "2026-03-01", "cap")
    got = skipgram.cap_mask(a, b, 0.25, cap_base)
    assert got.tolist() == [ref_u(cap_base, x, y) < 0.25 for x, y in zip(a, b)]
    assert 430 < int(got.sum()) < 570
    assert skipgram.cap_mask(a, b, 1.0, cap_base).all()
    assert skipgram.cap_rate(0, 10**9) == 1.0
    assert skipgram.cap_rate(100, 400) == 0.25
    assert skipgram.cap_rate(500, 400) == 1.0
    assert skipgram.cap_rate(5, 0) == 1.0


def test_same_region_count_is_python_round():
    assert [skipgram.same_region_count(n, s) for n, s in
            [(4, 0.5), (5, 0.5), (3, 0.5), (0, 0.5), (4, 0.0), (4, 1.0), (7, 0.3), (1, 0.5)]] \
        == [2, 2, 2, 0, 0, 4, 2, 0]
    with pytest.raises(ValueError, match="same_region"):
        skipgram.same_region_count(4, 1.5)


# ---------------------------------------------------------------------------------------------
# Negatives


def _pairs(rng, articles, counts, n_pairs, outsiders=()):
    drawable = [a for a, c in zip(articles, counts) if c > 0] + list(outsiders)
    target, context = [], []
    while len(target) < n_pairs:
        t, c = rng.choice(drawable), rng.choice(drawable)
        if t != c:
            target.append(t)
            context.append(c)
    keys = np.array([rng.getrandbits(64) for _ in target], dtype=np.uint64)
    return np.array(target), np.array(context), keys


@pytest.mark.parametrize("n,share", [(4, 0.5), (5, 0.5), (3, 0.5), (4, 0.0), (4, 1.0),
                                     (1, 0.5), (0, 0.5)])
@pytest.mark.parametrize("sorted_search", [False, True])
def test_draw_matches_the_reference(n, share, sorted_search, monkeypatch):
    if sorted_search:   # the global table searched in key order (large tables)
        monkeypatch.setattr(skipgram, "_SORTED_SEARCH_MIN_TABLE", 0)
    rng = random.Random(n * 10 + int(share * 4))
    regions = ["north", "south", "east", "tiny", ""]
    articles, counts, region = random_catalogue(rng, 60, regions)
    # "tiny" has 2 drawable articles: its same-region draws are global.
    tiny = [i for i, r in enumerate(region) if r == "tiny"]
    for i in tiny[2:]:
        region[i] = "north"
    for i in tiny[:2]:
        counts[i] = max(counts[i], 1)
    sampler = NegativeSampler(np.array(articles), np.array(counts), region)
    target, context, keys = _pairs(rng, articles, counts, 400, outsiders=[10**9])
    n_same = skipgram.same_region_count(n, share)
    got, valid = sampler.draw(target, context, None, n, n_same, BASE, keys)
    rows, ref_valid = ref_draw(articles, counts, region, target.tolist(), context.tolist(), n,
                               n_same, BASE, keys)
    assert got.shape == (400, n) and got.dtype == np.int64
    assert got.tolist() == rows
    assert valid.tolist() == ref_valid == [True] * 400
    # Never the target or the context; same-region draws from the target's region.
    assert not bool((got == target[:, None]).any() or (got == context[:, None]).any())
    region_of = dict(zip(articles, region))
    big = {"north", "south", "east"}
    for t, row in zip(target.tolist(), got.tolist()):
        if region_of.get(t) in big:
            assert all(region_of[a] == region_of[t] for a in row[:n_same])


def test_region_with_only_target_context_and_one_other():
    articles = np.array([1, 2, 3, 10, 11, 12, 13])
    counts = np.array([1000, 500, 1, 5, 5, 5, 5])   # 3 is rare: the redraws run out
    region = ["r", "r", "r", "", "", "s", "s"]
    sampler = NegativeSampler(articles, counts, region)
    target = np.array([1] * 300 + [2] * 300)
    context = np.array([2] * 300 + [1] * 300)
    keys = np.arange(600, dtype=np.uint64)
    got, valid = sampler.draw(target, context, None, 5, 3, BASE, keys)
    assert valid.all()
    assert bool((got[:, :3] == 3).all())
    assert not bool(np.isin(got[:, 3:], [1, 2]).any())
    rows, _ = ref_draw(articles.tolist(), counts.tolist(), region, target.tolist(),
                       context.tolist(), 5, 3, BASE, keys)
    assert got.tolist() == rows


def test_small_regions_and_no_region_draw_from_the_global_table():
    articles = np.arange(20)
    counts = np.full(20, 10)
    region = ["two", "two"] + [""] * 18
    sampler = NegativeSampler(articles, counts, region)
    target = np.zeros(500, dtype=np.int64)
    context = np.full(500, 5)
    keys = np.arange(500, dtype=np.uint64)
    got, _ = sampler.draw(target, context, None, 2, 2, BASE, keys)
    assert got.tolist() == ref_draw(articles.tolist(), counts.tolist(), region,
                                    target.tolist(), context.tolist(), 2, 2, BASE, keys)[0]
    # Region "two" would only offer article 1; global draws reach most of the catalogue.
    assert len(set(got.ravel().tolist())) >= 15


def test_pairs_without_any_other_global_candidate_are_invalid():
    sampler = NegativeSampler(np.array([4, 9]), np.array([3, 3]), ["", ""])
    target, context = np.array([4, 9, 4]), np.array([9, 4, 77])
    got, valid = sampler.draw(target, context, None, 3, 1, BASE,
                              np.array([1, 2, 3], np.uint64))
    assert valid.tolist() == [False, False, True]
    assert got.tolist() == [[-1, -1, -1], [-1, -1, -1], [9, 9, 9]]


def test_region_codes_names_and_none_agree():
    rng = random.Random(8)
    articles, counts, region = random_catalogue(rng, 40, ["a", "b", ""])
    sampler = NegativeSampler(np.array(articles), np.array(counts), region)
    target, context, keys = _pairs(rng, articles, counts, 200)
    by_none, _ = sampler.draw(target, context, None, 4, 2, BASE, keys)
    names = [dict(zip(articles, region))[t] for t in target.tolist()]
    by_names, _ = sampler.draw(target, context, names, 4, 2, BASE, keys)
    by_codes, _ = sampler.draw(target, context, sampler.region_codes(names), 4, 2, BASE, keys)
    assert np.array_equal(by_none, by_names) and np.array_equal(by_none, by_codes)


def test_draws_do_not_depend_on_the_order_or_batching_of_pairs():
    rng = random.Random(9)
    articles, counts, region = random_catalogue(rng, 80, ["a", "b", "c", ""])
    sampler = NegativeSampler(np.array(articles), np.array(counts), region)
    target, context, keys = _pairs(rng, articles, counts, 1000)
    whole, _ = sampler.draw(target, context, None, 4, 2, BASE, keys)
    perm = np.random.default_rng(1).permutation(1000)
    shuffled, _ = sampler.draw(target[perm], context[perm], None, 4, 2, BASE, keys[perm])
    assert np.array_equal(shuffled, whole[perm])
    batches = np.concatenate([sampler.draw(target[lo:lo + 333], context[lo:lo + 333], None,
                                           4, 2, BASE, keys[lo:lo + 333])[0]
                              for lo in range(0, 1000, 333)])
    assert np.array_equal(batches, whole)
    # The catalogue's row order does not matter either.
    order = np.random.default_rng(2).permutation(80)
    resorted = NegativeSampler(np.array(articles)[order], np.array(counts)[order],
                               [region[i] for i in order])
    assert np.array_equal(resorted.draw(target, context, None, 4, 2, BASE, keys)[0], whole)
    other, _ = sampler.draw(target, context, None, 4, 2,
                            draws.base_key(43, "2026-03-01", "negatives"), keys)
    assert not np.array_equal(other, whole)


def test_empirical_frequencies_follow_count_to_the_three_quarters():
    counts = np.array([1, 2, 4, 8, 16, 32, 64, 128])
    sampler = NegativeSampler(np.arange(8), counts, [""] * 8)
    pairs = 50_000
    got, _ = sampler.draw(np.full(pairs, 100), np.full(pairs, 101), None, 4, 0, BASE,
                          np.arange(pairs, dtype=np.uint64))
    observed = np.bincount(got.ravel(), minlength=8)

    def chi2(power):
        expected = counts ** power / (counts ** power).sum() * got.size
        return float(((observed - expected) ** 2 / expected).sum())

    # 99.9% quantile of chi-square with 7 degrees of freedom: 24.32.
    assert chi2(0.75) < 24.32
    assert chi2(1.0) > 24.32 and chi2(0.5) > 24.32


def test_zero_counts_are_never_drawn_and_duplicates_are_refused():
    sampler = NegativeSampler(np.array([1, 2, 3, 4]), np.array([0, 5, 5, 5]), ["", "", "", ""])
    got, _ = sampler.draw(np.full(300, 2), np.full(300, 9), None, 3, 0, BASE,
                          np.arange(300, dtype=np.uint64))
    assert set(got.ravel().tolist()) == {3, 4}
    with pytest.raises(ValueError, match="twice"):
        NegativeSampler(np.array([1, 1]), np.array([1, 1]), ["", ""])


def test_n_zero_gives_empty_rows():
    sampler = NegativeSampler(np.array([1, 2, 3]), np.array([1, 1, 1]), ["", "", ""])
    got, valid = sampler.draw(np.array([1, 2]), np.array([2, 3]), None, 0, 0, BASE,
                              np.array([5, 6], np.uint64))
    assert got.shape == (2, 0) and valid.tolist() == [True, True]


def test_from_table_and_nbytes():
    table = pa.table({"article_index": pa.array([5, 3, 8, 1, 2], pa.int64()),
                      "count": pa.array([4, 0, 9, 1, 2], pa.int64()),
                      "region": pa.array(["de", "de", None, "fr", "de"])})
    sampler = NegativeSampler.from_table(table)
    assert sampler.articles.tolist() == [1, 2, 5, 8]
    assert sampler.region_names == ["de", "fr"]
    assert sampler.region_start.tolist() == [0, 2, 3]
    assert sampler.region_articles.tolist() == [2, 5, 1]
    w = [float(c) ** 0.75 for c in (1, 2, 4, 9)]
    assert sampler.cum.tolist() == [w[0] / sum(w), (w[0] + w[1]) / sum(w),
                                    (w[0] + w[1] + w[2]) / sum(w), 1.0]
    # articles + cum (16 bytes an article) + region code (4) + region tables (16 an
    # article with a region) + offsets (8 per region + 8) + the names' bytes.
    assert sampler.nbytes == 4 * 16 + 4 * 4 + 3 * 16 + 3 * 8 + 4
    direct = NegativeSampler(np.array([5, 3, 8, 1, 2]), np.array([4, 0, 9, 1, 2]),
                             ["de", "de", "", "fr", "de"])
    keys = np.arange(50, dtype=np.uint64)
    assert np.array_equal(
        sampler.draw(np.full(50, 2), np.full(50, 1), None, 4, 2, BASE, keys)[0],
        direct.draw(np.full(50, 2), np.full(50, 1), None, 4, 2, BASE, keys)[0])


# ---------------------------------------------------------------------------------------------
# Records


def _decode(records):
    import tensorflow as tf   # only here: transforms/ never imports it
    spec = {name: tf.io.VarLenFeature(tf.int64) for name in ("target", "context", "negatives")}
    out = []
    for record in records:
        parsed = tf.io.parse_single_example(record, spec)
        example = tf.train.Example.FromString(record)
        assert sorted(example.features.feature.keys()) == ["context", "negatives", "target"]
        out.append({name: tf.sparse.to_dense(parsed[name]).numpy().tolist() for name in spec})
    return out


def test_pack_records_round_trip_through_tensorflow():
    rng = np.random.default_rng(4)
    pairs, n = 2500, 3
    target = rng.integers(0, 1 << 40, size=pairs)
    context = rng.integers(0, 200, size=pairs)
    negatives = rng.integers(0, 1 << 20, size=(pairs, n))
    # Every varint length, and a negative value (ten bytes).
    target[:12] = [0, 1, 127, 128, 16383, 16384, (1 << 35), (1 << 49), (1 << 56),
                   (1 << 62), (1 << 63) - 1, -1]
    order_key = rng.integers(0, 1 << 63, size=pairs).astype(np.uint64)
    order_key[100:110] = 7   # ties keep their input order
    records = skipgram.pack_records(target, context, negatives, 1024, order_key)
    decoded = _decode(records)
    assert [len(d["target"]) for d in decoded] == [1024, 1024, 452]
    assert [len(d["negatives"]) for d in decoded] == [3072, 3072, 1356]
    order = sorted(range(pairs), key=lambda i: (int(order_key[i]), i))
    assert sum((d["target"] for d in decoded), []) == [int(target[i]) for i in order]
    assert sum((d["context"] for d in decoded), []) == [int(context[i]) for i in order]
    assert sum((d["negatives"] for d in decoded), []) == [
        int(v) for i in order for v in negatives[i]]


def test_pack_records_small_cases():
    # One pair per record; no negatives (empty lists); and no pairs at all.
    records = skipgram.pack_records(np.array([3, 4]), np.array([5, 6]),
                                    np.zeros((2, 0), np.int64), 1,
                                    np.array([9, 1], np.uint64))
    assert _decode(records) == [{"target": [4], "context": [6], "negatives": []},
                                {"target": [3], "context": [5], "negatives": []}]
    assert skipgram.pack_records(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                 np.zeros((0, 4), np.int64), 8, np.zeros(0, np.uint64)) == []
    with pytest.raises(ValueError, match="--skipgram_pairs_per_record"):
        skipgram.pack_records(np.array([1]), np.array([2]), np.zeros((1, 1)), 0,
                              np.zeros(1, np.uint64))


def test_feature_spec():
    assert skipgram.SKIPGRAM_FEATURE_SPEC == {
        "encoding": "tf.train.Example",
        "features": {name: {"dtype": "int64", "shape": None}
                     for name in ("target", "context", "negatives")}}


def test_transforms_modules_do_not_import_tensorflow():
    import transforms.examples.draws
    for module in (skipgram, transforms.examples.draws):
        source = open(module.__file__).read()
        assert "import tensorflow" not in source and "from tensorflow" not in source
