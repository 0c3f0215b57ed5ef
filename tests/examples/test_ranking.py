"""Tier 1: learning-to-rank lists (TF-Ranking SequenceExample layout).

Records are decoded with example_proto's plain-Python decoder (checked against
TensorFlow in test_example_proto.py, which also parses ranking records with
tf.io.parse_single_sequence_example and RANKING_FEATURE_SPEC) and compared with a
reference written here with loops and dicts.
"""

import numpy as np
import pyarrow as pa
import pytest

from transforms.examples import ranking
from transforms.examples.example_proto import decode_sequence_example

pytestmark = pytest.mark.functions

STRENGTH = {"article_view": 1, "article_like": 2, "chat_start": 3}
SESSION_EVENTS = {"impression", *STRENGTH}


def row(user, ts, event, article=0, side=0, surface=None, shown=-1, region=None,
        platform=None):
    return dict(user=user, ts=ts, event=event, article=article, side=side, surface=surface,
                shown=shown, region=region, platform=platform)


def mode(values):
    counts = {}
    for v in values:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    return min(counts, key=lambda v: (-counts[v], v.encode("utf-8"))) if counts else ""


def reference(rows, pseudonyms, gap_us, window_us, day_end_us, list_size):
    """(sides, keys, decoded records) computed row by row."""
    session_of, last, sid = {}, None, -1
    for i, r in enumerate(rows):
        if r["event"] not in SESSION_EVENTS:
            continue
        if last is None or rows[last]["user"] != r["user"] or r["ts"] - rows[last]["ts"] > gap_us:
            sid += 1
        session_of[i], last = sid, i
    groups = {}
    for i, r in enumerate(rows):
        if r["event"] == "impression":
            surface_key = ("null",) if r["surface"] is None else ("value", r["surface"])
            groups.setdefault((session_of[i], r["side"], surface_key), []).append(i)
    lists = []
    for members in groups.values():
        lists += [members[c:c + list_size] for c in range(0, len(members), list_size)]
    lists.sort(key=lambda members: members[0])

    def label(i):
        r, best = rows[i], 0
        for e in rows:
            if (e["event"] in STRENGTH and e["user"] == r["user"] and e["article"] == r["article"]
                    and r["ts"] <= e["ts"] <= r["ts"] + window_us):
                best = max(best, STRENGTH[e["event"]])
        return best

    sides, keys, records = [], [], []
    for members in lists:
        first = rows[members[0]]
        sides.append(first["side"])
        keys.append(members[0])
        context = {"user_id": ("bytes", [pseudonyms[first["user"]].encode()]),
                   "region_id": ("bytes", [mode(rows[i]["region"] for i in members).encode()]),
                   "platform": ("bytes", [mode(rows[i]["platform"] for i in members).encode()]),
                   "surface": ("bytes", [(first["surface"] or "").encode()]),
                   "start_time": ("int64", [first["ts"]])}
        lists_ = {"article": ("int64", [[rows[i]["article"]] for i in members]),
                  "position": ("int64", [[p] for p in range(len(members))]),
                  "display_position": ("int64", [[rows[i]["shown"]] for i in members]),
                  "label": ("int64", [[label(i)] for i in members]),
                  "label_complete": ("int64", [[0 if rows[i]["ts"] + window_us >= day_end_us
                                                else 1] for i in members])}
        records.append((context, lists_))
    return sides, keys, records


def run(rows, pseudonyms, gap_us=1000, window_us=500, day_end_us=10**9, list_size=3):
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    sides, keys, records = ranking.ranking_records(
        np.array(col("user"), dtype=np.int64), np.array(col("ts"), dtype=np.int64),
        pa.array(col("event"), pa.string()), np.array(col("article"), dtype=np.int64),
        np.array(col("side"), dtype=np.int8), pa.array(col("surface"), pa.string()),
        np.array(col("shown"), dtype=np.int64), pa.array(col("region"), pa.string()),
        pa.array(col("platform"), pa.string()), pseudonyms,
        gap_us, window_us, day_end_us, list_size)
    assert sides.dtype == np.int8 and keys.dtype == np.int64
    assert len(sides) == len(keys) == len(records)
    return sides.tolist(), keys.tolist(), [decode_sequence_example(r) for r in records]


def check(rows, pseudonyms, **kw):
    got = run(rows, pseudonyms, **kw)
    expected = reference(rows, pseudonyms, kw.get("gap_us", 1000), kw.get("window_us", 500),
                         kw.get("day_end_us", 10**9), kw.get("list_size", 3))
    assert got == expected
    return got


def labels(records):
    return [[v[0] for v in seq["label"][1]] for _, seq in records]


def test_label_window_edges_are_inclusive():
    w = 500
    rows = [row(0, 990, "article_view", 5),            # before t: not counted
            row(0, 1000, "chat_start", 7),             # same time, earlier row: counted
            row(0, 1000, "impression", 5),
            row(0, 1000, "impression", 6),
            row(0, 1000, "impression", 7),
            row(0, 1000 + w, "article_view", 5),       # exactly t + window: counted
            row(0, 1000 + w + 1, "article_like", 5),   # one microsecond later: not counted
            row(0, 1000 + w + 1, "chat_start", 6),
            row(1, 1000 + w, "article_like", 6)]       # another user: not counted
    sides, keys, records = check(rows, ["alice", "bob"], window_us=w)
    assert keys == [2] and sides == [0]
    assert labels(records) == [[1, 0, 3]]


def test_label_complete_edge_at_day_end():
    rows = [row(0, 100, "impression", 1), row(0, 101, "impression", 2),
            row(0, 102, "impression", 3)]
    _, _, records = check(rows, ["u"], window_us=50, day_end_us=151)
    # 100 + 50 < 151: complete; 101 + 50 == 151: not; 102 + 50 > 151: not.
    assert [v[0] for v in records[0][1]["label_complete"][1]] == [1, 0, 0]


def test_chunks_surfaces_and_null_surface():
    rows = [row(0, 10 * i, "impression", 20 + i, surface=s, shown=i)
            for i, s in enumerate(["home"] * 4 + [None, "", "home", None, "home", "home"])]
    sides, keys, records = check(rows, ["p0"], list_size=3)
    assert keys == [0, 3, 4, 5, 9]
    by_key = dict(zip(keys, records))
    assert by_key[0][1]["article"] == ("int64", [[20], [21], [22]])
    assert by_key[3][1]["article"] == ("int64", [[23], [26], [28]])
    assert by_key[3][1]["position"] == ("int64", [[0], [1], [2]])
    assert by_key[3][1]["display_position"] == ("int64", [[3], [6], [8]])
    assert by_key[4][1]["article"] == ("int64", [[24], [27]])      # null surface
    assert by_key[5][1]["article"] == ("int64", [[25]])            # '' surface, its own list
    assert by_key[4][0]["surface"] == by_key[5][0]["surface"] == ("bytes", [b""])
    assert by_key[9][0]["start_time"] == ("int64", [90])


def test_sessions_span_engagements_but_not_other_rows():
    gap = 1000
    rows = [row(0, 0, "impression", 1), row(0, 900, "search"), row(0, 1800, "impression", 2),
            row(1, 0, "impression", 1), row(1, 900, "article_view", 9),
            row(1, 1800, "impression", 2),
            row(2, 0, "impression", 1), row(2, 1000, "impression", 2),
            row(2, 2001, "impression", 3)]
    _, keys, _ = check(rows, ["a", "b", "c"], gap_us=gap)
    assert keys == [0, 2, 3, 6, 8]


def test_split_boundary_cuts_a_session_and_labels_cross_it():
    rows = [row(0, 0, "impression", 1, side=0), row(0, 10, "impression", 2, side=0),
            row(0, 20, "impression", 3, side=1), row(0, 30, "article_like", 2, side=1),
            row(0, 40, "impression", 4, side=1)]
    sides, keys, records = check(rows, ["u"], list_size=5)
    assert sides == [0, 1] and keys == [0, 2]
    assert labels(records) == [[0, 2], [0, 0]]


def test_context_modes_pseudonyms_and_no_impressions():
    rows = [row(1, 0, "impression", 1, region="süd", platform="ios"),
            row(1, 1, "impression", 2, region="north", platform=None),
            row(1, 2, "impression", 3, region=None, platform="android"),
            row(1, 3, "impression", 4, region="north", platform=None)]
    _, _, records = check(rows, ["nobody", "ü-1"], list_size=4)
    assert records[0][0] == {"user_id": ("bytes", ["ü-1".encode()]),
                             "region_id": ("bytes", [b"north"]),
                             "platform": ("bytes", [b"android"]),
                             "surface": ("bytes", [b""]), "start_time": ("int64", [0])}
    sides, keys, records = run([row(0, 0, "article_view", 1), row(0, 1, "search")], ["u"])
    assert (sides, keys, records) == ([], [], [])


def test_bad_options_and_order_are_refused():
    rows = [row(0, 5, "impression", 1), row(0, 4, "impression", 2)]
    with pytest.raises(ValueError, match="order"):
        run(rows, ["u"])
    with pytest.raises(ValueError, match="list_size"):
        run(rows[:1], ["u"], list_size=0)
    with pytest.raises(ValueError, match="gap_us"):
        run(rows[:1], ["u"], gap_us=-1)


def random_shard(seed, n_users=8):
    rng = np.random.default_rng(seed)
    events = ["impression"] * 6 + ["article_view"] * 2 + ["article_like", "chat_start",
                                                         "search", "server_ping", None]
    steps = [0, 0, 1, 40, 300, 499, 500, 501, 999, 1000, 1001, 2500]
    rows = []
    for u in range(n_users):
        t = int(rng.integers(0, 2000))
        n = int(rng.integers(20, 90))
        split = int(rng.integers(0, n + 1))          # rows from here on are eval
        for k in range(n):
            t += steps[rng.integers(0, len(steps))]
            event = events[rng.integers(0, len(events))]
            engaged = event is not None and event not in ("search", "server_ping")
            rows.append(row(
                u, t, event, int(rng.integers(1, 4)) if engaged else 0,
                side=int(k >= split),
                surface=[None, "home", "search", "", "é-feed"][rng.integers(0, 5)]
                if event == "impression" else None,
                shown=int(rng.integers(-1, 8)),
                region=[None, "north", "süd", "日本", "ab"][rng.integers(0, 5)],
                platform=[None, "ios", "android", "web"][rng.integers(0, 4)]))
    day_end = int(np.percentile([r["ts"] for r in rows], 85))
    return rows, [f"pseudo-{u}-ü" for u in range(n_users)], day_end


@pytest.mark.parametrize("seed,list_size", [(1, 3), (2, 2), (3, 4), (4, 1), (5, 50)])
def test_random_shard_matches_reference(seed, list_size):
    rows, pseudonyms, day_end = random_shard(seed)
    sides, keys, records = check(rows, pseudonyms, list_size=list_size, day_end_us=day_end)
    n_impressions = sum(r["event"] == "impression" for r in rows)
    assert sum(len(seq["article"][1]) for _, seq in records) == n_impressions
    all_labels = [x for xs in labels(records) for x in xs]
    assert set(all_labels) == {0, 1, 2, 3}
    assert set(sides) == {0, 1}
    complete = [v[0] for _, seq in records for v in seq["label_complete"][1]]
    assert set(complete) == {0, 1}


def test_chunked_and_dictionary_columns_give_the_same_records():
    rows, pseudonyms, day_end = random_shard(9, n_users=3)
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    half = len(rows) // 2

    def strings(k, dictionary):
        arr = pa.array(col(k), pa.string())
        arr = arr.dictionary_encode() if dictionary else arr
        return pa.chunked_array([arr.slice(0, half), arr.slice(half)])

    out = []
    for dictionary in (False, True):
        sides, keys, records = ranking.ranking_records(
            np.array(col("user")), np.array(col("ts")), strings("event", dictionary),
            np.array(col("article")), np.array(col("side"), dtype=np.int8),
            strings("surface", dictionary), np.array(col("shown")),
            strings("region", dictionary), strings("platform", dictionary), pseudonyms,
            1000, 500, day_end, 3)
        out.append((sides.tolist(), keys.tolist(), records))
    expected = reference(rows, pseudonyms, 1000, 500, day_end, 3)
    assert out[0] == out[1]
    assert (out[0][0], out[0][1]) == (expected[0], expected[1])
    assert [decode_sequence_example(r) for r in out[0][2]] == expected[2]
