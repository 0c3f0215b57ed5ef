"""Browsing sessions and the article pairs they contain, as numpy arrays.

Everything here works on integer codes (users, articles) and int64 microsecond
timestamps, whole shards at a time; the Beam stage maps strings to codes.
"""

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Sessions(NamedTuple):
    """One entry per position of a collapsed session, sessions in order, positions in order."""

    session: np.ndarray   # int64 session number, non-decreasing
    article: np.ndarray   # int64 article code
    weight: np.ndarray    # float64 event weight (the largest of a collapsed run)


def order_by_user_time_id(users: np.ndarray, ts_us: np.ndarray, event_ids) -> np.ndarray:
    """Row order by (user, timestamp, event_id in byte order). Integer keys sort in numpy;
    only rows that tie on (user, timestamp) are then ordered by their event ids."""
    n = len(users)
    span = int(ts_us.max() - ts_us.min()) + 1 if n else 1
    if n and span.bit_length() + int(users.max()).bit_length() <= 62:
        # One int64 key (user, timestamp): a single numpy sort instead of a lexsort.
        key = (users.astype(np.int64) << span.bit_length()) | (ts_us - ts_us.min())
        order = np.argsort(key, kind="stable")
    else:
        order = np.lexsort((ts_us, users))
    if n < 2:
        return order
    u, t = users[order], ts_us[order]
    same = (u[1:] == u[:-1]) & (t[1:] == t[:-1])
    if not same.any():
        return order
    in_tie = np.zeros(n, dtype=bool)
    in_tie[1:] |= same
    in_tie[:-1] |= same
    run = np.cumsum(np.r_[True, ~same])
    positions = np.flatnonzero(in_tie)
    if isinstance(event_ids, pa.ChunkedArray):
        event_ids = event_ids.combine_chunks()
    tied = pa.table({"run": run[positions],
                     "event_id": event_ids.take(pa.array(order[positions]))})
    within = pc.sort_indices(tied, sort_keys=[("run", "ascending"),
                                              ("event_id", "ascending")]).to_numpy()
    order[positions] = order[positions][within]
    return order


def _starts(flags: np.ndarray) -> np.ndarray:
    return np.flatnonzero(flags)


def rank_in_runs(starts_run: np.ndarray) -> np.ndarray:
    """Each row's place (0, 1, ...) inside its run, given a bool flag per row that is True
    where a run starts (the first row must start one)."""
    n = len(starts_run)
    first = _starts(starts_run)
    return np.arange(n) - np.repeat(first, np.diff(np.append(first, n)))


def first_rows_per_user(user: np.ndarray, cap: int) -> np.ndarray:
    """Mask of each user's first `cap` rows, rows grouped by user (--max_events_per_user)."""
    new_user = np.ones(len(user), dtype=bool)
    np.not_equal(user[1:], user[:-1], out=new_user[1:])
    return rank_in_runs(new_user) < cap


def sessionize(user: np.ndarray, ts_us: np.ndarray, article: np.ndarray, weight: np.ndarray,
               gap_us: int, max_events_per_user: int = 0,
               max_session_length: int = 0) -> Sessions:
    """See session_runs (which also says where each position starts)."""
    return session_runs(user, ts_us, article, weight, gap_us, max_events_per_user,
                        max_session_length)[0]


def session_runs(user: np.ndarray, ts_us: np.ndarray, article: np.ndarray, weight: np.ndarray,
                 gap_us: int, max_events_per_user: int = 0,
                 max_session_length: int = 0):
    """Sessions of rows already in (user, timestamp, event_id) order.

    A new session starts at a new user or when the gap to the previous
    interaction is strictly greater than `gap_us`. `max_events_per_user` (0: off)
    keeps each user's first N rows; consecutive repeats of an article collapse to
    one position keeping the largest weight; `max_session_length` (0: off) then
    cuts sessions into consecutive pieces of that length.

    Returns (Sessions, first_row, row_position): first_row[i] is the input row where
    position i's run starts; row_position[r] is the position input row r collapsed
    into (-1 for rows dropped by the per-user cap).
    """
    user = np.asarray(user)
    ts_us = np.asarray(ts_us, dtype=np.int64)
    article = np.asarray(article, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    n = len(user)
    rows = np.arange(n, dtype=np.int64)
    row_position = np.full(n, -1, dtype=np.int64)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Sessions(empty, empty, np.zeros(0, dtype=np.float64)), empty, row_position
    new_user = np.empty(n, dtype=bool)
    new_user[0] = True
    np.not_equal(user[1:], user[:-1], out=new_user[1:])
    if max_events_per_user:
        keep = rank_in_runs(new_user) < max_events_per_user
        user, ts_us, article, weight = user[keep], ts_us[keep], article[keep], weight[keep]
        rows = rows[keep]
        new_user = new_user[keep]
        n = len(user)
    new_session = new_user.copy()
    new_session[1:] |= (ts_us[1:] - ts_us[:-1]) > gap_us
    # Collapse runs of the same article inside a session.
    run_start = new_session.copy()
    run_start[1:] |= article[1:] != article[:-1]
    starts = _starts(run_start)
    run_weight = np.maximum.reduceat(weight, starts) if n else weight
    session = np.cumsum(new_session)[starts] - 1
    row_position[rows] = np.cumsum(run_start) - 1
    first_row = rows[starts]
    article = article[starts]
    if max_session_length:
        m = len(article)
        first = np.empty(m, dtype=bool)
        first[0] = True
        np.not_equal(session[1:], session[:-1], out=first[1:])
        piece_start = first | (rank_in_runs(first) % max_session_length == 0)
        session = np.cumsum(piece_start) - 1
    return (Sessions(session.astype(np.int64), article, run_weight), first_row.astype(np.int64),
            row_position)


def window_pair_positions(sessions: Sessions, window: int):
    """(left, right) position indexes of every pair i < j of a session with j - i <= window
    and different articles (each unordered pair once)."""
    session, article, _ = sessions
    lefts, rights = [], []
    for d in range(1, window + 1):
        if d >= len(article):
            break
        mask = (session[d:] == session[:-d]) & (article[d:] != article[:-d])
        left = np.flatnonzero(mask)
        lefts.append(left)
        rights.append(left + d)
    if not lefts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(lefts), np.concatenate(rights)
