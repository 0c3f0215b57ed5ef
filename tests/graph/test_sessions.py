"""Tier 1: sessionising sorted interactions and the window pairs of sessions."""

import datetime as dt
from typing import NamedTuple

import pytest
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.graph import sessions

pytestmark = pytest.mark.functions

MIN = 60_000_000          # one minute in microseconds
GAP = 30 * MIN


def run(user, minutes, article, weight=None, gap_us=GAP, **kw):
    ts = [int(round(m * MIN)) for m in minutes]
    weight = [1.0] * len(user) if weight is None else weight
    out = sessions.sessionize(np.array(user), np.array(ts, dtype=np.int64),
                              np.array(article), np.array(weight, dtype=np.float64), gap_us,
                              **kw)
    assert out.session.dtype == np.int64 and out.article.dtype == np.int64
    assert out.weight.dtype == np.float64
    return out.session.tolist(), out.article.tolist(), out.weight.tolist()


def as_sessions(session, article, weight=None):
    weight = [1.0] * len(article) if weight is None else weight
    return sessions.Sessions(np.array(session, dtype=np.int64), np.array(article, dtype=np.int64),
                             np.array(weight, dtype=np.float64))


class Pairs(NamedTuple):
    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray


def window_pairs(s, window, with_weights=False):
    """Ordered pairs (both directions) of window_pair_positions, with w_i * w_j."""
    left, right = sessions.window_pair_positions(s, window)
    article, weight = s.article, s.weight
    w = weight[left] * weight[right] if with_weights else np.ones(0)
    return Pairs(np.concatenate([article[left], article[right]]),
                 np.concatenate([article[right], article[left]]),
                 np.concatenate([w, w]) if with_weights else np.ones(0))


def interaction_order(table):
    """Rows by (user id bytes, timestamp, event id bytes): users ranked by their id, then
    sessions.order_by_user_time_id (which only needs users as integers)."""
    ids = table.column("user_id").to_pylist()
    rank = {u: i for i, u in enumerate(sorted(set(ids), key=str.encode))}
    users = np.array([rank[u] for u in ids], dtype=np.int64)
    ts = table.column("event_timestamp").cast(pa.int64()).to_numpy()
    return sessions.order_by_user_time_id(users, ts, table.column("event_id"))


def pair_list(pairs, weighted=False):
    if weighted:
        return sorted(zip(pairs.src.tolist(), pairs.dst.tolist(), pairs.weight.tolist()))
    return sorted(zip(pairs.src.tolist(), pairs.dst.tolist()))


# ---------------------------------------------------------------- interaction_order

def test_interaction_order_sorts_by_user_then_timestamp_then_event_id_in_byte_order():
    t = dt.datetime(2026, 11, 26, 3, tzinfo=dt.timezone.utc)
    s = dt.timedelta(seconds=1)
    table = pa.table({
        "user_id": ["u2", "u1", "u1", "u1", "u1", "U9", "u1"],
        "event_timestamp": pa.array([t, t + s, t, t, t, t + 5 * s, t], pa.timestamp("us", "UTC")),
        "event_id": ["a", "z", "é", "b", "B", "x", "Z"],
    })
    order = interaction_order(table).tolist()
    # "U9" < "u1" < "u2"; inside u1 at time t: "B" < "Z" < "b" < "é" (0x42 < 0x5a < 0x62 < 0xc3).
    assert order == [5, 4, 6, 3, 2, 1, 0]


# ---------------------------------------------------------------- sessionize

def test_empty_input():
    assert run([], [], []) == ([], [], [])


def test_gap_equal_to_the_session_gap_stays_in_the_session():
    # gaps: 30 min (same session), 30 min + 1 us (new session), 0 (same).
    user = [0, 0, 0, 0]
    ts = [0, GAP, 2 * GAP + 1, 2 * GAP + 1]
    out = sessions.sessionize(np.array(user), np.array(ts), np.array([1, 2, 3, 4]),
                              np.ones(4), GAP)
    assert out.session.tolist() == [0, 0, 1, 1]
    assert out.article.tolist() == [1, 2, 3, 4]


def test_zero_gap_splits_on_any_time_difference():
    assert run([0, 0, 0, 0], [0, 0, 1, 1], [1, 2, 3, 4], gap_us=0) == (
        [0, 0, 1, 1], [1, 2, 3, 4], [1.0] * 4)


def test_a_new_user_starts_a_new_session_even_without_a_gap():
    assert run([0, 0, 1, 1, 2], [0, 1, 1, 2, 2], [1, 2, 2, 3, 1]) == (
        [0, 0, 1, 1, 2], [1, 2, 2, 3, 1], [1.0] * 5)


def test_consecutive_repeats_collapse_keeping_the_largest_weight():
    got = run([0] * 7, [0, 1, 2, 3, 4, 5, 6], [5, 5, 5, 7, 5, 5, 7],
              weight=[1.0, 3.0, 2.0, 1.0, 0.5, 0.25, 5.0])
    assert got == ([0, 0, 0, 0], [5, 7, 5, 7], [3.0, 1.0, 0.5, 5.0])


def test_repeats_do_not_collapse_across_sessions_or_users():
    # Same article across a session gap, and across a user boundary.
    got = run([0, 0, 0, 1, 1], [0, 1, 40, 40, 41], [5, 5, 5, 5, 6],
              weight=[1.0, 2.0, 3.0, 4.0, 1.0])
    assert got == ([0, 1, 2, 2], [5, 5, 5, 6], [2.0, 3.0, 4.0, 1.0])


def test_max_events_per_user_keeps_each_users_first_rows_before_collapsing():
    # user 0: rows A A B C (first 3: A A B -> A B); user 1: D D D D E (first 3: D).
    got = run([0, 0, 0, 0, 1, 1, 1, 1, 1], [0, 1, 2, 3, 0, 1, 2, 3, 4],
              [1, 1, 2, 3, 4, 4, 4, 4, 5], weight=[1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 3.0, 9.0, 1.0],
              max_events_per_user=3)
    assert got == ([0, 0, 1], [1, 2, 4], [2.0, 1.0, 3.0])


def test_max_events_per_user_counts_rows_across_sessions():
    got = run([0, 0, 0, 0], [0, 100, 200, 201], [1, 2, 3, 4], max_events_per_user=3)
    assert got == ([0, 1, 2], [1, 2, 3], [1.0, 1.0, 1.0])


def test_max_session_length_cuts_collapsed_sessions_into_pieces():
    # One session A A B C D E F (collapsed: A B C D E F) and one of G H, cut at 4.
    got = run([0] * 7 + [1] * 2, [0, 1, 2, 3, 4, 5, 6, 0, 1], [1, 1, 2, 3, 4, 5, 6, 7, 8],
              max_session_length=4)
    assert got == ([0, 0, 0, 0, 1, 1, 2, 2], [1, 2, 3, 4, 5, 6, 7, 8], [1.0] * 8)


def test_max_session_length_exact_multiple_and_two():
    got = run([0] * 6, range(6), [1, 2, 3, 4, 5, 6], max_session_length=3)
    assert got[0] == [0, 0, 0, 1, 1, 1]
    got = run([0] * 5 + [0] * 3, [0, 1, 2, 3, 4, 100, 101, 102], [1, 2, 3, 4, 5, 6, 7, 8],
              max_session_length=2)
    assert got[0] == [0, 0, 1, 1, 2, 3, 3, 4]


def test_all_options_together():
    # user 0 rows (cap 6): A A B | gap | C C D  ; the 7th row E is dropped.
    # collapsed: [A B] [C D]; length cap 2 keeps them whole.
    # user 1 rows: B C D E F (cap 6 keeps all), length cap 2 -> [B C] [D E] [F].
    got = run([0] * 7 + [1] * 5, [0, 1, 2, 60, 61, 62, 63, 0, 1, 2, 3, 4],
              [1, 1, 2, 3, 3, 4, 5, 2, 3, 4, 5, 6],
              weight=[2.0, 1.0, 1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
              max_events_per_user=6, max_session_length=2)
    assert got == ([0, 0, 1, 1, 2, 2, 3, 3, 4], [1, 2, 3, 4, 2, 3, 4, 5, 6],
                   [2.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_string_user_codes_are_accepted():
    out = sessions.sessionize(np.array(["a", "a", "b"]), np.array([0, 1, 1]), np.array([1, 2, 3]),
                              np.ones(3), GAP)
    assert out.session.tolist() == [0, 0, 1]


# ---------------------------------------------------------------- window_pairs

def test_abab_counts_each_ordered_pair_four_times():
    pairs = window_pairs(as_sessions([0, 0, 0, 0], [1, 2, 1, 2]), 5)
    assert pair_list(pairs) == [(1, 2)] * 4 + [(2, 1)] * 4
    assert pairs.src.dtype == np.int64 and pairs.dst.dtype == np.int64
    assert pairs.weight.tolist() == []    # unweighted: no weights


def test_window_limits_the_distance():
    s = as_sessions([0, 0, 0, 0], [1, 2, 3, 4])
    assert pair_list(window_pairs(s, 1)) == [(1, 2), (2, 1), (2, 3), (3, 2), (3, 4),
                                                      (4, 3)]
    assert pair_list(window_pairs(s, 2)) == sorted(
        [(1, 2), (2, 1), (2, 3), (3, 2), (3, 4), (4, 3), (1, 3), (3, 1), (2, 4), (4, 2)])
    three = pair_list(window_pairs(s, 3))
    assert three == sorted([(a, b) for a in range(1, 5) for b in range(1, 5) if a != b])
    assert pair_list(window_pairs(s, 100)) == three


def test_pairs_never_cross_sessions():
    s = as_sessions([0, 0, 1, 1, 2], [1, 2, 3, 1, 2])
    assert pair_list(window_pairs(s, 5)) == [(1, 2), (1, 3), (2, 1), (3, 1)]


def test_same_article_inside_the_window_is_not_a_pair():
    s = as_sessions([0, 0, 0], [7, 8, 7])
    assert pair_list(window_pairs(s, 2)) == [(7, 8), (7, 8), (8, 7), (8, 7)]


def test_weighted_pairs_carry_the_product_of_weights():
    s = as_sessions([0, 0, 0, 1, 1], [1, 2, 3, 1, 2], [2.0, 3.0, 0.5, 4.0, 1.0])
    pairs = window_pairs(s, 2, with_weights=True)
    assert pair_list(pairs, weighted=True) == sorted([
        (1, 2, 6.0), (2, 1, 6.0), (2, 3, 1.5), (3, 2, 1.5), (1, 3, 1.0), (3, 1, 1.0),
        (1, 2, 4.0), (2, 1, 4.0)])


def test_no_pairs():
    for s in [as_sessions([], []), as_sessions([0], [1]), as_sessions([0, 1, 2], [1, 2, 3])]:
        for weighted in (False, True):
            pairs = window_pairs(s, 3, with_weights=weighted)
            assert pairs.src.tolist() == pairs.dst.tolist() == pairs.weight.tolist() == []
            assert pairs.src.dtype == np.int64 and pairs.weight.dtype == np.float64


def test_interaction_order_equals_a_full_multi_key_sort_with_many_ties():
    """The numpy order (ties resolved by event id only where needed) is exactly the
    order of one Arrow sort by (user_id, event_timestamp, event_id)."""
    rng = np.random.default_rng(4)
    n = 5000
    users = rng.choice(["u1", "u10", "u2", "U3", "ü", "u1 "], size=n)
    stamps = rng.integers(0, 40, size=n)            # many equal timestamps
    ids = [f"e{v}" for v in rng.permutation(n * 3)[:n]]
    table = pa.table({
        "user_id": pa.array(users.tolist(), pa.string()),
        "event_timestamp": pa.array(stamps, pa.int64()).cast(pa.timestamp("us", "UTC")),
        "event_id": pa.array(ids, pa.string()),
    })
    expected = pc.sort_indices(table, sort_keys=[("user_id", "ascending"),
                                                 ("event_timestamp", "ascending"),
                                                 ("event_id", "ascending")]).to_numpy()
    assert interaction_order(table).tolist() == expected.tolist()


def test_first_rows_per_user_keeps_each_users_first_rows():
    from transforms.graph.sessions import first_rows_per_user, rank_in_runs
    user = np.array([4, 4, 4, 7, 9, 9, 9, 9])
    assert first_rows_per_user(user, 2).tolist() == [True, True, False, True, True, True,
                                                     False, False]
    assert first_rows_per_user(np.zeros(0, np.int64), 3).tolist() == []
    starts = np.array([True, False, True, False, False])
    assert rank_in_runs(starts).tolist() == [0, 1, 0, 1, 2]
