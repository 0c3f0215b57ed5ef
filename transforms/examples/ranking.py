"""Learning-to-rank lists: impressions with their engagement labels, in TF-Ranking's
SequenceExample layout (context per list, one feature-list step per item).

Input is one user shard's valid rows in (user, event_timestamp, event_id) order.
Sessions, lists and labels are computed a whole shard at a time with numpy and
Arrow; only the encoding loops over lists.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract
from transforms.examples.sequence_proto import encode_sequence_examples
from transforms.examples.sequences import group_mode

IMPRESSION = "impression"
ENGAGEMENT_STRENGTH = contract.ENGAGEMENT_STRENGTH

RANKING_FEATURE_SPEC: Dict = {
    "encoding": "tf.train.SequenceExample",
    "context": {
        "user_id": {"dtype": "string", "shape": []},
        "region_id": {"dtype": "string", "shape": []},
        "platform": {"dtype": "string", "shape": []},
        "surface": {"dtype": "string", "shape": []},
        "start_time": {"dtype": "int64", "shape": []},
    },
    "sequence": {
        "article": {"dtype": "int64", "shape": []},
        "position": {"dtype": "int64", "shape": []},
        "display_position": {"dtype": "int64", "shape": []},
        "label": {"dtype": "int64", "shape": []},
        "label_complete": {"dtype": "int64", "shape": []},
    },
}


def _flat(array) -> pa.Array:
    """One plain (not dictionary-encoded) array."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    return array


def _is(event_name: pa.Array, name: str) -> np.ndarray:
    return pc.fill_null(pc.equal(event_name, name), False).to_numpy(zero_copy_only=False)


def engagement_strength(event_name: pa.Array) -> np.ndarray:
    """int8 per row: 1 article_view, 2 article_like, 3 chat_start, 0 anything else (or null)."""
    strength = np.zeros(len(event_name), dtype=np.int8)
    for name, value in ENGAGEMENT_STRENGTH.items():
        strength[_is(event_name, name)] = value
    return strength


def _starts(sorted_keys: Sequence[np.ndarray]) -> np.ndarray:
    """True where any of the (equal-length, already sorted) key arrays changes."""
    n = len(sorted_keys[0])
    new = np.zeros(n, dtype=bool)
    if n:
        new[0] = True
        for key in sorted_keys:
            new[1:] |= key[1:] != key[:-1]
    return new


def impression_labels(user: np.ndarray, article: np.ndarray, ts_us: np.ndarray,
                      strength: np.ndarray, impressions: np.ndarray,
                      label_window_us: int) -> np.ndarray:
    """int64 label of each impression row: the largest strength among the rows with
    strength > 0, the same user and article and a timestamp in [t, t + label_window_us]
    (t the impression's); 0 when there is none."""
    eng = np.flatnonzero(strength > 0)
    m, k = len(eng), len(impressions)
    if m == 0 or k == 0:
        return np.zeros(k, dtype=np.int64)
    # Dense codes of (user, article) over engagements and impressions together.
    pu = np.concatenate([user[eng], user[impressions]])
    pa_ = np.concatenate([article[eng], article[impressions]])
    order = np.lexsort((pa_, pu))
    code = np.empty(m + k, dtype=np.int64)
    code[order] = np.cumsum(_starts([pu[order], pa_[order]])) - 1
    # Dense ranks of every time that is compared: engagement times, window starts and ends.
    t = ts_us[impressions]
    times, rank = np.unique(np.concatenate([ts_us[eng], t, t + label_window_us]),
                            return_inverse=True)
    n_times = len(times)
    if (int(code.max()) + 1) * n_times >= 2**62:
        raise ValueError("too many rows in one shard for the (user, article, time) key")
    e_key = code[:m] * n_times + rank[:m]
    e_order = np.argsort(e_key, kind="stable")
    e_key = e_key[e_order]
    e_strength = strength[eng][e_order]
    lo = np.searchsorted(e_key, code[m:] * n_times + rank[m:m + k], side="left")
    hi = np.searchsorted(e_key, code[m:] * n_times + rank[m + k:], side="right")
    at_least_2 = np.concatenate([[0], np.cumsum(e_strength >= 2)])
    at_least_3 = np.concatenate([[0], np.cumsum(e_strength >= 3)])
    return np.where(at_least_3[hi] > at_least_3[lo], 3,
                    np.where(at_least_2[hi] > at_least_2[lo], 2,
                             np.where(hi > lo, 1, 0))).astype(np.int64)


def ranking_records(user: np.ndarray, ts_us: np.ndarray, event_name: pa.Array,
                    article: np.ndarray, side: np.ndarray, surface: pa.Array,
                    display_position: np.ndarray, region: pa.Array, platform: pa.Array,
                    user_pseudonym: Sequence[str], gap_us: int, label_window_us: int,
                    day_end_us: int, list_size: int
                    ) -> Tuple[np.ndarray, np.ndarray, List[bytes]]:
    """One serialized SequenceExample per list of impressions.

    Sessions run over each user's impression and engagement rows (article_view,
    article_like, chat_start) in row order; a new one starts at a new user or after
    a gap strictly greater than `gap_us`. A user's impressions are grouped by
    (session, side, surface; null its own group), each group in row order, and cut
    into consecutive lists of at most `list_size`. An impression's label is its
    user's strongest engagement with its article in [t, t + label_window_us] over
    the whole shard (either side); label_complete is 0 when t + label_window_us
    >= day_end_us.

    Returns (side per record, int8; key per record: the row index of the list's first
    impression, int64, increasing; the records), records in key order."""
    if list_size < 1:
        raise ValueError(f"list_size must be at least 1, got {list_size}")
    if gap_us < 0 or label_window_us < 0:
        raise ValueError(f"gap_us and label_window_us must be >= 0, got {gap_us}, "
                         f"{label_window_us}")
    user = np.asarray(user, dtype=np.int64)
    ts_us = np.asarray(ts_us, dtype=np.int64)
    article = np.asarray(article, dtype=np.int64)
    side = np.asarray(side, dtype=np.int8)
    display_position = np.asarray(display_position, dtype=np.int64)
    event_name, surface, region, platform = (_flat(a) for a in
                                             (event_name, surface, region, platform))
    n = len(user)
    for name, column in (("ts_us", ts_us), ("event_name", event_name), ("article", article),
                         ("side", side), ("surface", surface),
                         ("display_position", display_position), ("region", region),
                         ("platform", platform)):
        if len(column) != n:
            raise ValueError(f"{name} has {len(column)} rows, user {n}")
    if n and np.any((user[1:] == user[:-1]) & (ts_us[1:] < ts_us[:-1])):
        raise ValueError("rows must be in (user, event_timestamp) order")

    strength = engagement_strength(event_name)
    impression = _is(event_name, IMPRESSION)
    if not impression.any():
        return np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int64), []

    # Sessions over impressions and engagements.
    rows = np.flatnonzero(impression | (strength > 0))
    new = _starts([user[rows]])
    new[1:] |= (ts_us[rows][1:] - ts_us[rows][:-1]) > gap_us
    session = (np.cumsum(new) - 1)[impression[rows]]
    imp = rows[impression[rows]]

    # Lists: (session, side, surface) groups in row order, cut every list_size.
    imp_surface = surface.take(pa.array(imp))
    surface_code = pc.dictionary_encode(imp_surface).indices
    surface_code = pc.fill_null(surface_code, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    imp_side = side[imp]
    order = np.lexsort((imp, surface_code, imp_side, session))
    group_start = _starts([session[order], imp_side[order], surface_code[order]])
    starts = np.flatnonzero(group_start)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.append(starts, len(order))))
    position = rank % list_size
    list_of = np.cumsum(position == 0) - 1          # list number, in `order`
    first_row = imp[order][position == 0]
    # Renumber lists by first row; lay impressions out list by list, in row order.
    renumber = np.empty(len(first_row), dtype=np.int64)
    renumber[np.argsort(first_row)] = np.arange(len(first_row))
    list_id = renumber[list_of]
    by_list = np.argsort(list_id, kind="stable")
    layout, position, list_id = order[by_list], position[by_list], list_id[by_list]
    first_row = np.sort(first_row)
    n_lists = len(first_row)
    bounds = np.append(np.flatnonzero(_starts([list_id])), len(list_id))   # bounds[0] == 0

    rows_out = imp[layout]
    label = impression_labels(user, article, ts_us, strength, rows_out, label_window_us)
    complete = (ts_us[rows_out] + label_window_us < day_end_us).astype(np.int64)
    regions = group_mode(list_id, region.take(pa.array(rows_out)), n_lists)
    platforms = group_mode(list_id, platform.take(pa.array(rows_out)), n_lists)
    surfaces = ["" if s is None else s
                for s in surface.take(pa.array(first_row)).to_pylist()]
    records = encode_sequence_examples(
        {"user_id": ("bytes", [user_pseudonym[u] for u in user[first_row].tolist()]),
         "region_id": ("bytes", regions),
         "platform": ("bytes", platforms),
         "surface": ("bytes", surfaces),
         "start_time": ("int64", ts_us[first_row])},
        {"article": ("int64", article[rows_out]),
         "position": ("int64", position.astype(np.int64)),
         "display_position": ("int64", display_position[rows_out]),
         "label": ("int64", label),
         "label_complete": ("int64", complete)},
        bounds)
    return side[first_row], first_row.astype(np.int64), records
