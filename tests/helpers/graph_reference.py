"""The one independent, plain-Python reference of the co-occurrence graph rules, used by
every graph test (tier 1, the stage under the FnApiRunner, the jobs). It shares no code
with transforms/: dicts, lists and loops. The rules:

1. Interactions are article_view, article_like and chat_start rows.
2. Per user, rows in (timestamp, event_id bytes) order. `max_events_per_user` (0: off)
   keeps each user's first N interaction rows, before anything else: the nodes'
   frequency and region counts only count kept rows.
3. A session ends where the gap to the next interaction is strictly greater than the
   session gap. Consecutive repeats of an article collapse to one position, which keeps
   the largest event weight of its run. `max_session_length` (0: off) then cuts each
   collapsed session into consecutive pieces of that length.
4. Positions i != j of a piece with |i - j| <= window and different articles add 1 to
   c(a_i, a_j) (so A B A B gives c(A, B) = 4); with `event_weights` they also add
   w_i * w_j to the weighted count.
5. Marginals c(a) = sum over b of c(a, b), and N = sum of every c, are taken before the
   `min_pair_count` filter; with weights, every count in the formulas (c(a, b), the
   marginals, N) is the weighted count. ppmi = max(0, log(c N / (c(a) c(b)))) (edges of
   weight 0 dropped), count = c, jaccard = c / (c(a) + c(b) - c), cosine =
   c / sqrt(c(a) c(b)); float64, stored float32. The filter is on the plain count.
6. Each source keeps its `top_k` by `rank_by` (the float32 weight, or the plain count)
   descending, ties by neighbour id bytes.
7. A node's frequency is its number of positions in collapsed sessions; its region is
   the most frequent non-null region of its (kept) interaction rows, ties to the smaller
   region id bytes.

Weighted sums are formed the way the stage forms them (an integer count per unordered
pair of weights, then sum of n x w_lo x w_hi in ascending (w_lo, w_hi) order), so the
stored float32 weights can be compared exactly even with weights that are not dyadic.
"""

import math
from collections import defaultdict

import numpy as np

INTERACTIONS = ("article_view", "article_like", "chat_start")
MICROS_PER_MINUTE = 60_000_000


def _key(text):
    return text.encode("utf-8")


def user_events(rows, max_events_per_user=0):
    """{user: [(ts, event_id bytes, article, event name, region), ...]} in order, capped."""
    by_user = defaultdict(list)
    for r in rows:
        if r["event_name"] in INTERACTIONS:
            by_user[r["user_id"]].append((r["ts"], _key(r["event_id"]), r["article_id"],
                                          r["event_name"], r["region_id"]))
    out = {}
    for user, events in by_user.items():
        events = sorted(events, key=lambda e: (e[0], e[1]))
        if max_events_per_user:
            events = events[:max_events_per_user]
        out[user] = events
    return out


def reference_sessions(rows, gap_minutes=30, max_events_per_user=0, max_session_length=0,
                       event_weights=None, gap_us=None):
    """Every (cut) session of the day as a list of [article, weight] positions; users in
    id byte order. The weight is 1.0 without event weights."""
    gap = gap_us if gap_us is not None else int(round(gap_minutes * MICROS_PER_MINUTE))
    out = []
    events_of = user_events(rows, max_events_per_user)
    for user in sorted(events_of, key=_key):
        sessions, last = [], None
        for ts, _, article, name, _ in events_of[user]:
            weight = event_weights[name] if event_weights else 1.0
            if last is None or ts - last > gap:
                sessions.append([])
            current = sessions[-1]
            if current and current[-1][0] == article:
                current[-1][1] = max(current[-1][1], weight)
            else:
                current.append([article, weight])
            last = ts
        for s in sessions:
            size = max_session_length or len(s)
            for start in range(0, len(s), size):
                out.append(s[start:start + size])
    return out


def _weighted(per_weight_pair):
    """{(w_lo, w_hi): n} -> sum of n * w_lo * w_hi in ascending (w_lo, w_hi) order."""
    total = 0.0
    for lo, hi in sorted(per_weight_pair):
        total += float(per_weight_pair[(lo, hi)]) * (lo * hi)
    return total


def reference_counts(sessions, window=5):
    """{(a, b): c}, and {(a, b): {(w_lo, w_hi): n}} the counts per unordered weight pair."""
    counts = defaultdict(int)
    by_weights = defaultdict(lambda: defaultdict(int))
    for s in sessions:
        for i, (a, wa) in enumerate(s):
            for j in range(max(0, i - window), min(len(s), i + window + 1)):
                b, wb = s[j]
                if i != j and a != b:
                    counts[(a, b)] += 1
                    by_weights[(a, b)][(min(wa, wb), max(wa, wb))] += 1
    return dict(counts), by_weights


def edge_weight(weighting, c, ca, cb, total):
    if weighting == "count":
        return float(c)
    if weighting == "ppmi":
        return max(0.0, math.log(float(c) * float(total) / (float(ca) * float(cb))))
    if weighting == "jaccard":
        return c / (ca + cb - c)
    if weighting == "cosine":
        return c / math.sqrt(float(ca) * float(cb))
    raise AssertionError(weighting)


def reference_region(rows, max_events_per_user=0):
    """{article: region}: the mode of the non-null regions of its kept interaction rows."""
    region_counts = defaultdict(lambda: defaultdict(int))
    for events in user_events(rows, max_events_per_user).values():
        for _, _, article, _, region in events:
            if region is not None:
                region_counts[article][region] += 1
    return {a: sorted(per.items(), key=lambda t: (-t[1], _key(t[0])))[0][0]
            for a, per in region_counts.items()}


def reference_graph(rows, gap_minutes=30, window=5, min_pair_count=2, weighting="ppmi",
                    rank_by="weight", top_k=50, max_session_length=0, max_events_per_user=0,
                    event_weights=None, gap_us=None):
    """rows: dicts with user_id, event_id, ts (int microseconds), article_id, event_name,
    region_id. Returns (edges {(src, dst): (count, float32 weight)} of the kept top-K,
    neighbours {src: [dst, ...] ranked}, frequency {article: n}, region {article: id})."""
    sessions = reference_sessions(rows, gap_minutes, max_events_per_user, max_session_length,
                                  event_weights, gap_us)
    frequency = defaultdict(int)
    for s in sessions:
        for article, _ in s:
            frequency[article] += 1
    counts, by_weights = reference_counts(sessions, window)
    if event_weights:
        measure = {pair: _weighted(by_weights[pair]) for pair in counts}
        source_weights = defaultdict(lambda: defaultdict(int))
        all_weights = defaultdict(int)
        for (a, _), per in by_weights.items():
            for wp, n in per.items():
                source_weights[a][wp] += n
                all_weights[wp] += n
        marginal = {a: _weighted(per) for a, per in source_weights.items()}
        total = _weighted(all_weights)
    else:
        measure = counts
        marginal = defaultdict(int)
        for (a, _), c in counts.items():
            marginal[a] += c
        total = sum(counts.values())
    candidates = defaultdict(list)
    for (a, b), c in counts.items():
        if c < min_pair_count:
            continue
        w = edge_weight(weighting, measure[(a, b)], marginal[a], marginal[b], total)
        if weighting == "ppmi" and w == 0.0:
            continue
        candidates[a].append((b, c, float(np.float32(w))))
    edges, neighbours = {}, {}
    for a, items in candidates.items():
        if rank_by == "weight":
            kept = sorted(items, key=lambda t: (-t[2], _key(t[0])))[:top_k]
        else:
            kept = sorted(items, key=lambda t: (-t[1], _key(t[0])))[:top_k]
        neighbours[a] = [b for b, _, _ in kept]
        for b, c, w in kept:
            edges[(a, b)] = (c, w)
    return edges, neighbours, dict(frequency), reference_region(rows, max_events_per_user)


def reference_index(frequency, known=None, others=()):
    """{article: index}: known articles keep theirs; the day's new ones are appended after
    the largest known index (1 on a first day) by frequency descending, then id bytes;
    new articles seen only in other rows (`others`: impressions, server events) come last,
    by id bytes."""
    known = dict(known or {})
    start = max(known.values()) + 1 if known else 1
    frequency = dict(frequency)
    for article in others:
        frequency.setdefault(article, 0)
    new = sorted((a for a in frequency if a not in known),
                 key=lambda a: (-frequency[a], _key(a)))
    index = dict(known)
    for i, article in enumerate(new):
        index[article] = start + i
    return index
