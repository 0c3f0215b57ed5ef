"""The planted rows of a generated day (`datagen.events`), each kind on rows of its own.

`dirty_counts` says how many rows of each dirty kind a day gets; `plant` plants them,
with the legacy event names and the out-of-span rows, in the rows that
`datagen.sessions` drew, so that a test can count each kind back exactly.
"""

from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa

from datagen.sessions import BAD_PROPERTIES, DAY_US, EPOCH, UNKNOWN_NAMES, US
from schemas.contract import ARTICLE_VIEW, CLIENT, LEGACY_ALIASES, MAX_ID_LENGTH, REASONS, \
    SERVER, SOURCES
from transforms.common.span import DaySpan

# Planted kinds besides the quarantine reasons, which are `REASONS` themselves.
DUPLICATE_EVENT_ID = "duplicate_event_id"
LEGACY_NAME = "legacy_name"
OUT_OF_SPAN = "out_of_span"
DIRTY_KINDS = (DUPLICATE_EVENT_ID,) + REASONS
PLANTED_KINDS = DIRTY_KINDS + (LEGACY_NAME, OUT_OF_SPAN)

# The malformed-id forms, planted in turn; `_malformed_id` says where each goes.
MALFORMED_FORMS = ("empty", "too_long", "no_break_space", "ideographic_space", "control_char")

LEGACY_SHARE = 0.01
MIN_ROWS_FOR_EVERY_KIND = 1000

# Share of the dirty rows per kind (1 where not named), and the least rows of a kind
# in a day of MIN_ROWS_FOR_EVERY_KIND rows or more: one, or one of each form.
_DIRTY_WEIGHTS = {DUPLICATE_EVENT_ID: 3.0, "malformed_id": 1.5, "bad_properties": 1.5}
_DIRTY_MINIMUM = {"malformed_id": len(MALFORMED_FORMS), "bad_properties": len(BAD_PROPERTIES)}


def dirty_counts(n_events: int, dirty_fraction: float) -> Dict[str, int]:
    """Rows per dirty kind: `dirty_fraction` of `n_events` shared by `_DIRTY_WEIGHTS`."""
    weights = np.array([_DIRTY_WEIGHTS.get(kind, 1.0) for kind in DIRTY_KINDS])
    total = int(round(dirty_fraction * n_events))
    shares = total * weights / weights.sum()
    counts = np.floor(shares).astype(np.int64)
    counts[np.argsort(counts - shares, kind="stable")[:total - counts.sum()]] += 1
    if dirty_fraction > 0 and n_events >= MIN_ROWS_FOR_EVERY_KIND:
        counts = np.maximum(counts, [_DIRTY_MINIMUM.get(kind, 1) for kind in DIRTY_KINDS])
    return dict(zip(DIRTY_KINDS, counts.tolist()))

def choose(permutation: np.ndarray, eligible: np.ndarray, k: int, what: str) -> np.ndarray:
    """The first `k` rows of `permutation` that are `eligible`."""
    chosen = permutation[eligible[permutation]][:k]
    if len(chosen) < k:
        raise ValueError(f"{what}: {k} rows asked for, only {len(chosen)} can take it; "
                         "ask for a smaller fraction or more rows")
    return chosen


def _malformed_id(form: str, row: int, rows: Dict[str, np.ndarray], catalogue: dict,
                  event_ids: pa.Array) -> Tuple[str, str]:
    """The (column, value) that makes `row`'s id malformed in `form`. Event ids stay unique."""
    event_id = event_ids[int(rows["event_id"][row])].as_py()
    if form == "empty":
        return "article", ""
    if form == "too_long":
        return "event_id", event_id * (MAX_ID_LENGTH // len(event_id) + 1)
    if form == "no_break_space":
        return "user", catalogue["user_ids"][rows["user"][row]] + "\u00a0"
    if form == "ideographic_space":
        return "article", "\u3000" + catalogue["article_ids"][rows["article"][row]]
    return "event_id", event_id[:8] + "\x01" + event_id[8:]


def plant(rng: np.random.Generator, rows: Dict[str, np.ndarray], catalogue: dict,
          event_ids: pa.Array, counts: Dict[str, int], out_of_span_fraction: float,
          span: DaySpan) -> Tuple[Dict[str, int], np.ndarray, Dict[str, List[str]]]:
    """Plants every kind in `rows`, each on rows of its own, duplicates appended.

    Returns the count per kind, the mask of rows that carry nothing planted, and
    the malformed ids per column: row value -2 is the first, -3 the second, ..."""
    n = len(rows["ts"])
    names = catalogue["names"]
    permutation = rng.permutation(n)
    unused = np.ones(n, dtype=bool)
    anywhere = np.ones(n, dtype=bool)
    client = rows["source"] == SOURCES.index(CLIENT)
    view = rows["name"] == names.index(ARTICLE_VIEW)
    in_span = (rows["ts"] >= span.start_us) & (rows["ts"] < span.end_us)

    def take(kind: str, k: int, where: np.ndarray) -> np.ndarray:
        chosen = choose(permutation, unused & where, k, kind)
        unused[chosen] = False
        return chosen

    planted = dict.fromkeys(PLANTED_KINDS, 0)
    planted.update(counts)

    # A few minutes before the span or after it, inside its first or last UTC date.
    first_midnight = (span.utc_dates()[0] - EPOCH).days * DAY_US
    next_midnight = (span.utc_dates()[-1] - EPOCH).days * DAY_US + DAY_US
    room = np.array([min(span.start_us - first_midnight, 30 * 60 * US),
                     min(next_midnight - span.end_us, 30 * 60 * US)])
    k = int(round(out_of_span_fraction * n)) if room.any() else 0
    if k and n >= MIN_ROWS_FOR_EVERY_KIND:
        k = max(k, 2)
    chosen = take(OUT_OF_SPAN, k, anywhere)
    late = (np.arange(k) % 2 == 1) if room.all() else np.full(k, room[1] > 0)
    by = np.floor(rng.random(k) * room[late.astype(int)]).astype(np.int64)
    rows["ts"][chosen] = np.where(late, span.end_us + by, span.start_us - 1 - by)
    planted[OUT_OF_SPAN] = k

    chosen = take(LEGACY_NAME, int(round(LEGACY_SHARE * n)), view)
    legacy = np.array([names.index(name) for name in LEGACY_ALIASES])
    rows["name"][chosen] = legacy[rng.integers(0, len(legacy), len(chosen))]
    planted[LEGACY_NAME] = len(chosen)

    rows["event_id"][take("missing_event_id", counts["missing_event_id"], anywhere)] = -1
    rows["ts_null"][take("bad_timestamp", counts["bad_timestamp"], anywhere)] = True
    chosen = take("unknown_event_name", counts["unknown_event_name"], client)
    unknown = np.array([names.index(name) for name in UNKNOWN_NAMES])
    rows["name"][chosen] = unknown[np.arange(len(chosen)) % len(unknown)]
    rows["source"][take("source_mismatch", counts["source_mismatch"], client)] = \
        SOURCES.index(SERVER)
    rows["user"][take("missing_user_id", counts["missing_user_id"], client)] = -1
    rows["article"][take("missing_article_id", counts["missing_article_id"], view)] = -1
    chosen = take("negative_price", counts["negative_price"], ~rows["price_null"])
    rows["price"][chosen] *= -1
    chosen = take("bad_properties", counts["bad_properties"], anywhere)
    rows["properties"][chosen] = (catalogue["property_starts"]["bad"]
                                  + np.arange(len(chosen)) % len(BAD_PROPERTIES))
    chosen = take("malformed_id", counts["malformed_id"], client & (rows["article"] >= 0))
    extra = {"event_id": [], "user": [], "article": []}
    for i, row in enumerate(chosen):
        column, value = _malformed_id(MALFORMED_FORMS[i % len(MALFORMED_FORMS)], row, rows,
                                      catalogue, event_ids)
        extra[column].append(value)
        rows[column][row] = -1 - len(extra[column])

    # Client retries: exact copies of clean rows, half of them a little later.
    k = counts[DUPLICATE_EVENT_ID]
    sources = take(DUPLICATE_EVENT_ID, k, in_span)
    later = np.where(rng.random(k) < 0.5, 0, rng.integers(50_000, 3 * US, k))
    for key, value in rows.items():
        rows[key] = np.concatenate([value, value[sources]])
    rows["ts"][n:] = np.minimum(rows["ts"][n:] + later, span.end_us - 1)
    return planted, np.concatenate([unused, np.zeros(k, dtype=bool)]), extra

