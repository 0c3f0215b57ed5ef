"""An independent, plain-Python reference of the co-occurrence graph rules, used by
the job-level tests. It shares no code with transforms/: dicts, lists and loops."""

import math
from collections import defaultdict

import numpy as np

INTERACTIONS = {"article_view", "article_like", "chat_start"}


def reference_graph(rows, gap_minutes=30, window=5, min_pair_count=2, weighting="ppmi",
                    rank_by="weight", top_k=50):
    """rows: dicts with user_id, event_id, ts (int microseconds), article_id, event_name,
    region_id. Returns (edges {(src, dst): (count, float32 weight)} of the kept top-K,
    neighbours {src: [dst, ...] ranked}, frequency {article: n}, region {article: id})."""
    by_user = defaultdict(list)
    region_counts = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if r["event_name"] not in INTERACTIONS:
            continue
        by_user[r["user_id"]].append((r["ts"], r["event_id"].encode(), r["article_id"]))
        if r["region_id"] is not None:
            region_counts[r["article_id"]][r["region_id"]] += 1
    counts = defaultdict(int)
    frequency = defaultdict(int)
    gap = gap_minutes * 60 * 1_000_000
    for user in by_user:
        events = sorted(by_user[user])
        sessions, current, last_ts = [], [], None
        for ts, _, article in events:
            if last_ts is not None and ts - last_ts > gap:
                sessions.append(current)
                current = []
            if not current or current[-1] != article:
                current.append(article)
            last_ts = ts
        sessions.append(current)
        for s in sessions:
            for a in s:
                frequency[a] += 1
            for i in range(len(s)):
                for j in range(max(0, i - window), min(len(s), i + window + 1)):
                    if i != j and s[i] != s[j]:
                        counts[(s[i], s[j])] += 1
    node_total = defaultdict(int)
    for (a, _), c in counts.items():
        node_total[a] += c
    total = sum(counts.values())
    candidates = defaultdict(list)
    for (a, b), c in counts.items():
        ca, cb = node_total[a], node_total[b]
        if weighting == "count":
            w = float(c)
        elif weighting == "ppmi":
            w = max(0.0, math.log(float(c) * float(total) / (float(ca) * float(cb))))
        elif weighting == "jaccard":
            w = c / (ca + cb - c)
        else:
            w = c / math.sqrt(float(ca) * float(cb))
        if c < min_pair_count or (weighting == "ppmi" and w == 0.0):
            continue
        w32 = float(np.float32(w))
        candidates[a].append((b, c, w32))
    edges, neighbours = {}, {}
    for a, items in candidates.items():
        key = (lambda t: (-t[2], t[0].encode())) if rank_by == "weight" else \
            (lambda t: (-t[1], t[0].encode()))
        kept = sorted(items, key=key)[:top_k]
        neighbours[a] = [b for b, _, _ in kept]
        for b, c, w in kept:
            edges[(a, b)] = (c, w)
    region = {}
    for a, per_region in region_counts.items():
        region[a] = sorted(per_region.items(), key=lambda t: (-t[1], t[0].encode()))[0][0]
    return edges, neighbours, dict(frequency), region
