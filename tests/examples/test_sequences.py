"""Tier 1: next-article SequenceExamples and group_mode.

Records are decoded with example_proto's plain-Python decoder (checked against
TensorFlow in test_example_proto.py, which also parses these records with
tf.io.parse_single_sequence_example and SEQUENCE_FEATURE_SPEC) and compared with
a reference written here with loops.
"""

import numpy as np
import pyarrow as pa
import pytest

from transforms.examples import sequences
from transforms.examples.example_proto import decode_sequence_example

pytestmark = pytest.mark.functions

SEC = 1_000_000


def f32(x):
    return float(np.float32(x))


def reference(session, article, strength, ts, session_user, session_region):
    """{session id: (context, feature lists)} as decode_sequence_example returns them."""
    by_session = {}
    for i, s in enumerate(session):
        by_session.setdefault(int(s), []).append(i)
    out = {}
    for s in sorted(by_session):
        rows = by_session[s]
        if len(rows) < 2:
            continue
        earlier, last = rows[:-1], rows[-1]
        seconds = [0.0] + [f32((int(ts[b]) - int(ts[a])) / 1e6)
                           for a, b in zip(earlier, earlier[1:])]
        names = {1: b"article_view", 2: b"article_like", 3: b"chat_start"}
        out[s] = ({"user_id": ("bytes", [session_user[s].encode()]),
                   "region_id": ("bytes", [session_region[s].encode()]),
                   "label_article": ("int64", [int(article[last])]),
                   "start_time": ("int64", [int(ts[rows[0]])])},
                  {"article": ("int64", [[int(article[i])] for i in earlier]),
                   "event_name": ("bytes", [[names[int(strength[i])]] for i in earlier]),
                   "seconds_since_prev": ("float", [[x] for x in seconds])})
    return out


def run(session, article, strength, ts, session_user, session_region):
    ids, records = sequences.sequence_records(
        np.array(session, dtype=np.int64), np.array(article, dtype=np.int64),
        np.array(strength, dtype=np.int8), np.array(ts, dtype=np.int64),
        session_user, session_region)
    assert ids.dtype == np.int64 and len(ids) == len(records)
    return dict(zip(ids.tolist(), [decode_sequence_example(r) for r in records]))


def test_hand_made_sessions():
    # session 0: three positions; 1: one position (dropped); 2: two positions; 3: one.
    session = [0, 0, 0, 1, 2, 2, 3]
    article = [10, 11, 10, 12, 7, 8, 9]
    strength = [1, 3, 2, 1, 2, 1, 3]
    ts = [100 * SEC, 100 * SEC + 1, 160 * SEC + 250_001, 900 * SEC, 5, 1_000_005, 7]
    users = ["u0", "u0", "ü1", "u2"]
    regions = ["r-north", "", "région", ""]
    got = run(session, article, strength, ts, users, regions)
    assert sorted(got) == [0, 2]
    ctx, seq = got[0]
    assert ctx == {"user_id": ("bytes", [b"u0"]), "region_id": ("bytes", [b"r-north"]),
                   "label_article": ("int64", [10]), "start_time": ("int64", [100 * SEC])}
    assert seq == {"article": ("int64", [[10], [11]]),
                   "event_name": ("bytes", [[b"article_view"], [b"chat_start"]]),
                   "seconds_since_prev": ("float", [[0.0], [f32(1e-6)]])}
    ctx, seq = got[2]
    assert ctx == {"user_id": ("bytes", ["ü1".encode()]),
                   "region_id": ("bytes", ["région".encode()]),
                   "label_article": ("int64", [8]), "start_time": ("int64", [5])}
    assert seq == {"article": ("int64", [[7]]), "event_name": ("bytes", [[b"article_like"]]),
                   "seconds_since_prev": ("float", [[0.0]])}
    assert got == reference(session, article, strength, ts, users, regions)


def test_seconds_are_float32_of_the_exact_quotient():
    ts = [0, 1, 100_000, 100_000 + 59_999_999, 10**15, 10**15 + 123_456_789_012]
    got = run([0] * 7, [1, 2, 3, 4, 5, 6, 7], [1] * 7, ts + [10**16], ["u"], ["r"])
    assert got[0][1]["seconds_since_prev"] == ("float", [[0.0], [f32(1e-6)], [f32(0.099999)],
                                                         [f32(59.999999)],
                                                         [f32((10**15 - 60_099_999) / 1e6)],
                                                         [f32(123456.789012)]])
    assert got[0][0]["label_article"] == ("int64", [7])


def test_no_sessions_and_only_single_positions():
    ids, records = sequences.sequence_records(np.zeros(0, np.int64), np.zeros(0, np.int64),
                                              np.zeros(0, np.int8), np.zeros(0, np.int64),
                                              [], [])
    assert ids.tolist() == [] and records == []
    assert run([0, 1, 2], [1, 2, 3], [1, 2, 3], [1, 2, 3], ["a", "b", "c"], ["", "", ""]) == {}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="strength"):
        run([0, 0], [1, 2], [1, 4], [1, 2], ["u"], ["r"])
    with pytest.raises(ValueError, match="non-decreasing"):
        run([1, 0], [1, 2], [1, 1], [1, 2], ["u", "v"], ["r", "r"])
    with pytest.raises(ValueError, match="equal lengths"):
        sequences.sequence_records(np.zeros(2, np.int64), np.zeros(1, np.int64),
                                   np.ones(2, np.int8), np.zeros(2, np.int64), ["u"], ["r"])


def test_random_shard_matches_reference():
    rng = np.random.default_rng(7)
    n = 400
    session = np.sort(rng.integers(0, 150, n))
    session = np.unique(session, return_inverse=True)[1].astype(np.int64)   # ids 0..S-1
    n_sessions = int(session.max()) + 1
    article = rng.integers(0, 50, n)
    strength = rng.integers(1, 4, n)
    ts = np.cumsum(rng.integers(0, 10 * 60 * SEC, n)) + 1_700_000_000 * SEC
    users = [f"user-{rng.integers(0, 20)}-é" for _ in range(n_sessions)]
    regions = [["", "north", "süd", "日本"][rng.integers(0, 4)] for _ in range(n_sessions)]
    got = run(session, article, strength, ts, users, regions)
    expected = reference(session, article, strength, ts, users, regions)
    assert len(expected) == int((np.bincount(session) >= 2).sum())
    assert len(expected) > 50
    assert got == expected


# --- group_mode ------------------------------------------------------------------------------

def test_group_mode_counts_ties_and_nulls():
    group = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 5, 5])
    values = pa.array(["b", "a", "b",          # 0: b twice
                       "é", "z",               # 1: tie -> "z" (0x7a) before "é" (0xc3 0xa9)
                       None, None, "x", "y",   # 2: tie x / y -> x; nulls not counted
                       "日本", "ab", "日本", "ab",  # 4: tie -> "ab"
                       None, None])            # 5: no value -> ''
    assert sequences.group_mode(group, values, 7) == ["b", "z", "x", "", "ab", "", ""]


def test_group_mode_ties_by_utf8_bytes_across_chunks():
    # U+FF5E (ef bd be) sorts before U+1F600 (f0 9f 98 80) in UTF-8 byte order, as in
    # code point order, while UTF-16 would put the emoji (d83d ...) first.
    group = np.array([0, 0, 1, 1, 1])
    values = pa.chunked_array([["\U0001F600", "\uff5e"], ["é", "e", None]])
    assert sequences.group_mode(group, values, 2) == ["\uff5e", "e"]


def test_group_mode_matches_a_loop_on_random_data():
    rng = np.random.default_rng(3)
    n, n_groups = 3000, 120
    group = rng.integers(0, n_groups - 5, n)
    pool = ["a", "b", "ab", "é", "É", "z", "日", ""]
    raw = [None if rng.random() < 0.2 else pool[rng.integers(0, len(pool))] for _ in range(n)]
    expected = []
    for g in range(n_groups):
        counts = {}
        for gi, v in zip(group.tolist(), raw):
            if gi == g and v is not None:
                counts[v] = counts.get(v, 0) + 1
        expected.append(min(counts, key=lambda v: (-counts[v], v.encode())) if counts else "")
    assert sequences.group_mode(group, pa.array(raw, pa.large_string()), n_groups) == expected


def test_group_mode_refuses_groups_out_of_range():
    with pytest.raises(ValueError, match="group ids"):
        sequences.group_mode(np.array([0, 3]), pa.array(["a", "b"]), 3)
    assert sequences.group_mode(np.zeros(0, np.int64), pa.array([], pa.string()), 2) == ["", ""]


def test_feature_spec_names_the_written_features():
    ids, records = sequences.sequence_records(np.array([0, 0]), np.array([1, 2]),
                                              np.array([1, 1]), np.array([0, 1]), ["u"], ["r"])
    ctx, seq = decode_sequence_example(records[0])
    spec = sequences.SEQUENCE_FEATURE_SPEC
    assert spec["encoding"] == "tf.train.SequenceExample"
    kind = {"int64": "int64", "float32": "float", "string": "bytes"}
    assert {k: kind[v["dtype"]] for k, v in spec["context"].items()} == {
        k: v[0] for k, v in ctx.items()}
    assert {k: kind[v["dtype"]] for k, v in spec["sequence"].items()} == {
        k: v[0] for k, v in seq.items()}
    assert sequences.STRENGTH_NAMES == {1: "article_view", 2: "article_like", 3: "chat_start"}
