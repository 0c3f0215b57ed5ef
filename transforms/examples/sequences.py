"""Next-article sequences: one tf.train.SequenceExample per browsing session.

Input is one user shard's sessionised positions (transforms/graph/sessions.py
session_runs); the last position of a session is the label, the earlier ones
the sequence. Plain functions on numpy / Arrow arrays; the Beam stage calls them.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract
from transforms.examples.sequence_proto import encode_sequence_examples

STRENGTH_NAMES = {strength: name for name, strength in contract.ENGAGEMENT_STRENGTH.items()}

SEQUENCE_FEATURE_SPEC: Dict = {
    "encoding": "tf.train.SequenceExample",
    "context": {
        "user_id": {"dtype": "string", "shape": []},
        "region_id": {"dtype": "string", "shape": []},
        "label_article": {"dtype": "int64", "shape": []},
        "start_time": {"dtype": "int64", "shape": []},
    },
    "sequence": {
        "article": {"dtype": "int64", "shape": []},
        "event_name": {"dtype": "string", "shape": []},
        "seconds_since_prev": {"dtype": "float32", "shape": []},
    },
}

_EVENT_OF_STRENGTH = np.array([None] + [STRENGTH_NAMES[s].encode() for s in (1, 2, 3)],
                              dtype=object)


def group_mode(group: np.ndarray, values: pa.Array, n_groups: int) -> List[str]:
    """Per group id 0..n_groups-1, its most frequent non-null value; ties go to the
    smallest in UTF-8 byte order; '' for a group without any non-null value."""
    group = np.asarray(group, dtype=np.int64)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(group) != len(values):
        raise ValueError(f"group has {len(group)} rows, values {len(values)}")
    if len(group) and (group.min() < 0 or group.max() >= n_groups):
        raise ValueError(f"group ids must lie in [0, {n_groups}), got "
                         f"[{group.min()}, {group.max()}]")
    out = np.full(n_groups, "", dtype=object)
    table = pa.table({"g": group, "v": values.cast(pa.string())}).filter(pc.is_valid(values))
    if table.num_rows == 0:
        return out.tolist()
    counts = table.group_by(["g", "v"]).aggregate([("g", "count")])
    ranked = counts.sort_by([("g", "ascending"), ("g_count", "descending"), ("v", "ascending")])
    g = ranked.column("g").to_numpy()
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    keep = np.flatnonzero(first)
    out[g[keep]] = ranked.column("v").take(pa.array(keep)).to_pylist()
    return out.tolist()


def sequence_records(session: np.ndarray, article: np.ndarray, strength: np.ndarray,
                     first_ts_us: np.ndarray, session_user: Sequence[str],
                     session_region: Sequence[str]) -> Tuple[np.ndarray, List[bytes]]:
    """One serialized SequenceExample per session of at least two positions.

    `session` holds non-decreasing session ids (a session's positions consecutive,
    in time order); the other arrays are per position; `session_user` and
    `session_region` per session id. Context: user_id, region_id, label_article
    (the last position's article), start_time (the first position's first_ts_us).
    Feature lists over all positions but the last: article, event_name (from
    strength), seconds_since_prev (0.0 at the first position).

    Returns (the session ids that made a record, increasing; the records)."""
    session = np.asarray(session, dtype=np.int64)
    article = np.asarray(article, dtype=np.int64)
    strength = np.asarray(strength)
    ts = np.asarray(first_ts_us, dtype=np.int64)
    n = len(session)
    if not (len(article) == len(strength) == len(ts) == n):
        raise ValueError("session, article, strength and first_ts_us must have equal lengths")
    if n == 0:
        return np.zeros(0, dtype=np.int64), []
    if np.any(np.diff(session) < 0):
        raise ValueError("session ids must be non-decreasing")
    if strength.min() < 1 or strength.max() > 3:
        raise ValueError(f"strength must be 1, 2 or 3, got [{strength.min()}, {strength.max()}]")
    first = np.ones(n, dtype=bool)
    first[1:] = session[1:] != session[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)
    made = (ends - starts) >= 2
    seconds = np.zeros(n, dtype=np.float64)
    seconds[1:] = (ts[1:] - ts[:-1]) / 1e6
    seconds[first] = 0.0
    seconds = seconds.astype(np.float32)
    made_starts, made_ends = starts[made], ends[made]
    ids = session[made_starts]
    # Steps: every position of a kept session but its last.
    step = np.repeat(made, ends - starts)
    step[ends - 1] = False
    bounds = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(made_ends - made_starts - 1, out=bounds[1:])
    id_list = ids.tolist()
    records = encode_sequence_examples(
        {"user_id": ("bytes", [session_user[s] for s in id_list]),
         "region_id": ("bytes", [session_region[s] for s in id_list]),
         "label_article": ("int64", article[made_ends - 1]),
         "start_time": ("int64", ts[made_starts])},
        {"article": ("int64", article[step]),
         "event_name": ("bytes", _EVENT_OF_STRENGTH[strength[step].astype(np.int64)].tolist()),
         "seconds_since_prev": ("float", seconds[step])},
        bounds)
    return ids, records
