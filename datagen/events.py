"""A seeded day of marketplace events, written in BigQuery's Parquet export layout.

`generate_events` builds one local day (`transforms.common.span.day_span`) of events as an
Arrow table with exactly `schemas.contract.arrow_schema()`; `write_export_layout`
writes it as `<out_dir>/dt=YYYY-MM-DD/part-NNNNN.parquet`, one folder per UTC date
of `event_timestamp`, the way a date-partitioned table is exported.

The day has structure for the graph jobs to find: articles with Zipf-like
popularity, each in one region and one category at one price; users in one
region on one platform, browsing in sessions that stay mostly inside the
user's region and one category, a user's sessions more than 30 minutes apart.

By default the catalogue has one article per 20 events, and every article draw is
popularity-weighted. With `n_articles` (`--articles N`) the catalogue has exactly
N articles and the draws are a long-catalogue mix: HEAD_SHARE of them are the
same popularity-weighted draw (the head of popular articles), the others walk
through the articles of the same region and category in a seeded shuffled
order, each walk starting at a random place, so the tail is seen about once
each before any of it is seen twice. A 2M-event day with N = 1.5M sees about
1.3M distinct articles, most of them once or twice.

It also has planted rows, each kind on rows of its own so that a test can count
them back exactly: one kind per quarantine reason (`schemas.contract.REASONS`),
client-retry duplicates, legacy event names (valid, not dirty) and rows just
outside the day's span. `GeneratedDay.planted` says how many of each.

Rows are built as numpy arrays of indices into small string vocabularies, so a
million events take a few seconds. Run it as `python -m datagen.events --help`.
"""

import argparse
import dataclasses
import datetime as dt
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.contract import ARTICLE_CREATED, ARTICLE_DELETED, ARTICLE_LIKE, ARTICLE_SOLD, \
    ARTICLE_VIEW, CHAT_START, CLIENT, CLIENT_EVENTS, COLUMN_NAMES, EVENT_NAMES, IMPRESSION, \
    LEGACY_ALIASES, MAX_ID_LENGTH, PARTITION_COLUMN, PLATFORMS, REASONS, SEARCH, SERVER, \
    SOURCES, arrow_schema
from transforms.common.span import DaySpan, day_span, parse_run_date

# Planted kinds besides the quarantine reasons, which are `REASONS` themselves.
DUPLICATE_EVENT_ID = "duplicate_event_id"
LEGACY_NAME = "legacy_name"
OUT_OF_SPAN = "out_of_span"
DIRTY_KINDS = (DUPLICATE_EVENT_ID,) + REASONS
PLANTED_KINDS = DIRTY_KINDS + (LEGACY_NAME, OUT_OF_SPAN)

# Names no stage knows: the unknown_event_name rows and the unknown_name breakage.
UNKNOWN_NAMES = ("app_open", "screen_view", "push_open")
# The malformed-id forms, planted in turn; `_malformed_id` says where each goes.
MALFORMED_FORMS = ("empty", "too_long", "no_break_space", "ideographic_space", "control_char")
# Properties that are not JSON (RFC 8259): a trailing comma, NaN, an unquoted key.
BAD_PROPERTIES = ('{"position":3,}', '{"score":NaN}', '{position:3}')
BREAKAGE_FORMS = "drop_column:<column>, unknown_name:<fraction in (0, 1)> or price_x1000"

SESSION_GAP_US = 31 * 60 * 1_000_000  # between two sessions of a user, where the day has room
MAX_EVENT_GAP_US = 5 * 60 * 1_000_000  # between two events of a session
N_CATEGORIES = 12
CLIENT_PLATFORMS = tuple(p for p in PLATFORMS if p != SERVER)
SERVER_SHARE = 0.05
LEGACY_SHARE = 0.01
IN_BLOCK_SHARE = 0.85  # session events on an article of the session's region and category
HEAD_SHARE = 0.1  # with n_articles: share of the article draws that are popularity-weighted
REPEAT_SHARE = 0.6  # likes and chats on the article of the event before
SERVER_NULL_USER_SHARE = 0.2
MIN_ROWS_FOR_EVERY_KIND = 1000

_US = 1_000_000
_DAY_US = 86_400 * _US
_EPOCH = dt.date(1970, 1, 1)
_PLATFORM_WEIGHTS = {"ios": 0.45, "android": 0.45, "web": 0.10}
CLIENT_MIX = {IMPRESSION: 0.62, ARTICLE_VIEW: 0.20, ARTICLE_LIKE: 0.06, CHAT_START: 0.03,
               SEARCH: 0.09}
_SERVER_MIX = {ARTICLE_CREATED: 0.45, ARTICLE_SOLD: 0.20, ARTICLE_DELETED: 0.35}
# Share of the dirty rows per kind (1 where not named), and the least rows of a kind
# in a day of MIN_ROWS_FOR_EVERY_KIND rows or more: one, or one of each form.
_DIRTY_WEIGHTS = {DUPLICATE_EVENT_ID: 3.0, "malformed_id": 1.5, "bad_properties": 1.5}
_DIRTY_MINIMUM = {"malformed_id": len(MALFORMED_FORMS), "bad_properties": len(BAD_PROPERTIES)}
_SURFACES = ("home_feed", "search", "category")
_POSITIONS = 50
_REFERRERS = ("feed", "search", "chat", "share_link")
_SEARCH_QUERIES = ("아이폰", "자전거", "책상", "유모차", "캠핑 의자", "닌텐도 스위치", "에어팟",
                   "원피스", "전기밥솥", "레고", "골프채", "noise cancelling", "iPad mini",
                   "의자", "모니터", "러닝화")
_DELETE_REASONS = ("seller", "moderation", "expired")


@dataclasses.dataclass(frozen=True)
class GeneratedDay:
    """One generated day.

    `table` has every contract column in the contract's order, even under a
    `drop_column` breakage: that names the column in `drop_columns`, and
    `write_export_layout` leaves it out of the files. `planted` counts the rows
    of each kind in `PLANTED_KINDS`; a planted row carries one kind only.
    """

    table: pa.Table
    planted: Dict[str, int]
    span: DaySpan
    breakage: Optional[str]
    drop_columns: Tuple[str, ...]


def parse_breakage(breakage: Optional[str]) -> Tuple[str, Optional[str]]:
    """None -> ("", None); "drop_column:platform" -> ("drop_column", "platform");
    "unknown_name:0.2" -> ("unknown_name", "0.2"); "price_x1000" -> ("price_x1000", None)."""
    if breakage is None:
        return "", None
    kind, _, arg = breakage.partition(":")
    if kind == "drop_column" and arg in COLUMN_NAMES:
        return kind, arg
    if kind == "unknown_name":
        try:
            fraction = float(arg)
        except ValueError:
            fraction = -1.0
        if 0.0 < fraction < 1.0:
            return kind, arg
    if breakage == "price_x1000":
        return kind, None
    raise ValueError(f"--breakage={breakage!r} must be {BREAKAGE_FORMS}; "
                     f"the columns are {', '.join(COLUMN_NAMES)}")


def check_client_mix(mix: Dict[str, float]) -> Dict[str, float]:
    """A client event mix: every client event name once, shares >= 0, summing above 0."""
    if set(mix) != set(CLIENT_EVENTS) or any(not share >= 0 for share in mix.values()) \
            or not sum(mix.values()) > 0:
        raise ValueError(f"--client_mix={mix!r} must give a share >= 0 to each of "
                         f"{', '.join(CLIENT_EVENTS)}")
    return {name: float(mix[name]) for name in CLIENT_EVENTS}


def parse_client_mix(text: str) -> Dict[str, float]:
    """'impression:0.6,article_view:0.2,...' -> {name: share}."""
    mix = {}
    for item in text.split(","):
        name, _, share = item.strip().partition(":")
        try:
            mix[name] = float(share)
        except ValueError:
            raise ValueError(f"--client_mix: {item!r} is not <event>:<share>") from None
    return check_client_mix(mix)


def generate_events(
    n_events: int,
    run_date: dt.date,
    timezone: str = "Asia/Seoul",
    seed: int = 0,
    dirty_fraction: float = 0.03,
    out_of_span_fraction: float = 0.001,
    breakage: Optional[str] = None,
    client_mix: Optional[Dict[str, float]] = None,
    n_articles: Optional[int] = None,
) -> GeneratedDay:
    """`n_events` rows of the local day `run_date` in `timezone`, in time order (a row
    planted without a timestamp stays where its time was).

    About `dirty_fraction` of the rows are dirty: client-retry duplicates and one
    kind per quarantine reason. About `out_of_span_fraction` are clean rows moved
    a few minutes outside the span but kept in its UTC dates (none where the span
    is whole UTC days). With `dirty_fraction > 0` and 1000 rows or more, every
    dirty kind and every malformed-id and bad-properties form is there.
    Same arguments, same table; `breakage` changes only what it names.
    `client_mix` (event name -> share, default CLIENT_MIX) sets the client events' mix.
    `n_articles` (default None: one article per 20 events, at least 50, every draw
    popularity-weighted) sets the catalogue's size and turns on the long-catalogue
    draw (see the module's docstring); article ids are then in [0, n_articles).
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int) or n_events < 1:
        raise ValueError(f"--rows={n_events!r} must be a positive integer")
    if not 0.0 <= dirty_fraction <= 0.5:
        raise ValueError(f"--dirty_fraction={dirty_fraction!r} must be in [0, 0.5]")
    if not 0.0 <= out_of_span_fraction <= 0.1:
        raise ValueError(f"--out_of_span_fraction={out_of_span_fraction!r} must be in [0, 0.1]")
    if n_articles is not None and (isinstance(n_articles, bool) or
                                   not isinstance(n_articles, int) or
                                   not 1 <= n_articles < 10 ** 9):
        raise ValueError(f"--articles={n_articles!r} must be a whole number in [1, 10^9)")
    breakage_kind, breakage_arg = parse_breakage(breakage)
    mix = check_client_mix(client_mix if client_mix is not None else CLIENT_MIX)
    span = day_span(run_date, timezone)
    catalogue_rng, row_rng, plant_rng, breakage_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(4))

    counts = _dirty_counts(n_events, dirty_fraction)
    n_base = n_events - counts[DUPLICATE_EVENT_ID]
    n_server = int(round(SERVER_SHARE * n_base))
    catalogue = _catalogue(catalogue_rng, n_events, n_articles)
    rows = _concat_rows(_client_rows(row_rng, catalogue, n_base - n_server, span, mix),
                        _server_rows(row_rng, catalogue, n_server, span))
    rows["event_id"] = np.arange(n_base)
    event_ids = _event_ids(row_rng, n_base)
    planted, unused, extra = _plant(plant_rng, rows, catalogue, event_ids, counts,
                                    out_of_span_fraction, span)

    if breakage_kind == "unknown_name":
        k = int(round(float(breakage_arg) * n_events))
        chosen = _choose(breakage_rng.permutation(len(unused)), unused, k, breakage)
        rows["name"][chosen] = catalogue["names"].index(UNKNOWN_NAMES[0])
        planted["unknown_event_name"] += k
    elif breakage_kind == "price_x1000":
        rows["price"] *= 1000

    order = np.argsort(rows["ts"], kind="stable")
    table = _to_table({key: value[order] for key, value in rows.items()}, catalogue, event_ids,
                      extra)
    drop = (breakage_arg,) if breakage_kind == "drop_column" else ()
    return GeneratedDay(table, planted, span, breakage, drop)


def write_export_layout(
    table: pa.Table,
    out_dir: str,
    null_partition: dt.date,
    rows_per_file: int = 500_000,
    drop_columns: Sequence[str] = (),
) -> List[str]:
    """Writes `table` as `<out_dir>/dt=YYYY-MM-DD/part-00000.parquet`, part-00001, ...
    by the UTC date of `event_timestamp`; rows without one go to `null_partition`.

    Rows keep their order inside a partition, at most `rows_per_file` to a file.
    Old `part-*.parquet` files in the partitions written are removed first.
    `drop_columns` are left out of the files. Returns the paths written, in order.
    """
    if rows_per_file < 1:
        raise ValueError(f"--rows_per_file={rows_per_file!r} must be a positive integer")
    timestamps = table.column(PARTITION_COLUMN)
    micros = pc.cast(timestamps, pa.int64()).fill_null(0).to_numpy()
    days = np.where(timestamps.is_null().to_numpy(),
                    (null_partition - _EPOCH).days, np.floor_divide(micros, _DAY_US))
    body = table.drop(list(drop_columns))
    paths = []
    for day in np.unique(days):
        partition = body.take(pa.array(np.flatnonzero(days == day)))
        folder = os.path.join(out_dir, f"dt={_EPOCH + dt.timedelta(days=int(day))}")
        os.makedirs(folder, exist_ok=True)
        for name in sorted(os.listdir(folder)):
            if name.startswith("part-") and name.endswith(".parquet"):
                os.remove(os.path.join(folder, name))
        for number, start in enumerate(range(0, partition.num_rows, rows_per_file)):
            path = os.path.join(folder, f"part-{number:05d}.parquet")
            pq.write_table(partition.slice(start, rows_per_file), path)
            paths.append(path)
    return paths


def _dirty_counts(n_events: int, dirty_fraction: float) -> Dict[str, int]:
    """Rows per dirty kind: `dirty_fraction` of `n_events` shared by `_DIRTY_WEIGHTS`."""
    weights = np.array([_DIRTY_WEIGHTS.get(kind, 1.0) for kind in DIRTY_KINDS])
    total = int(round(dirty_fraction * n_events))
    shares = total * weights / weights.sum()
    counts = np.floor(shares).astype(np.int64)
    counts[np.argsort(counts - shares, kind="stable")[:total - counts.sum()]] += 1
    if dirty_fraction > 0 and n_events >= MIN_ROWS_FOR_EVERY_KIND:
        counts = np.maximum(counts, [_DIRTY_MINIMUM.get(kind, 1) for kind in DIRTY_KINDS])
    return dict(zip(DIRTY_KINDS, counts.tolist()))


def _catalogue(rng: np.random.Generator, n_events: int,
               long_catalogue: Optional[int] = None) -> dict:
    """Users, articles, and the string vocabularies that the rows index into.
    `long_catalogue`: the number of articles, with the walks of the long-catalogue
    draw; None: n_events // 20 (at least 50) and popularity-weighted draws only."""
    n_articles = long_catalogue if long_catalogue is not None else max(50, n_events // 20)
    n_users = max(20, n_events // 15)
    n_regions = int(np.clip(n_articles // 400, 4, 30))

    region_weights = 1.0 / np.arange(1, n_regions + 1) ** 0.8
    user_region = rng.choice(n_regions, size=n_users, p=region_weights / region_weights.sum())
    platform_weights = np.array([_PLATFORM_WEIGHTS[p] for p in CLIENT_PLATFORMS])
    user_platform = rng.choice(len(CLIENT_PLATFORMS), size=n_users, p=platform_weights)
    activity = rng.exponential(size=n_users)

    # An article is listed by a user, in the user's region.
    seller = rng.integers(0, n_users, size=n_articles)
    article_region = user_region[seller]
    category_weights = 1.0 / np.arange(1, N_CATEGORIES + 1) ** 0.6
    article_category = rng.choice(N_CATEGORIES, size=n_articles,
                                  p=category_weights / category_weights.sum())
    popularity = 1.0 / (rng.permutation(n_articles) + 1.0) ** 1.1
    category_median = 15_000 * np.exp(rng.normal(0.0, 0.8, size=N_CATEGORIES))
    price = category_median[article_category] * np.exp(rng.normal(0.0, 0.9, size=n_articles))
    price = np.maximum(100, np.round(price / 100) * 100).astype(np.int64)

    # Articles in (region, category) block order with their cumulative popularity,
    # so that a popularity-weighted draw inside a block is one searchsorted.
    block = article_region * N_CATEGORIES + article_category
    by_block = np.argsort(block, kind="stable")
    cumulative = np.concatenate([[0.0], np.cumsum(popularity[by_block])])
    block_edges = np.searchsorted(block[by_block], np.arange(n_regions * N_CATEGORIES + 1))

    # The long catalogue's walks (drawn last, so the default day's draws are unchanged):
    # the articles of each block in a shuffled order (by_block's block edges hold),
    # and all articles in a shuffled order for the draws outside the session's block.
    walks = None
    if long_catalogue is not None:
        walks = {"block": by_block[np.lexsort((rng.random(n_articles), block[by_block]))],
                 "any": rng.permutation(n_articles)}

    properties, property_starts = _property_vocabulary()
    return {
        "n_users": n_users, "n_articles": n_articles, "walks": walks,
        "user_region": user_region, "user_platform": user_platform, "activity": activity,
        "seller": seller, "article_region": article_region,
        "article_category": article_category, "price": price,
        "by_block": by_block, "cumulative": cumulative, "block_edges": block_edges,
        "user_ids": [f"u{i:08d}" for i in range(n_users)],
        "article_ids": [f"a{i:09d}" for i in range(n_articles)],
        "region_ids": [f"region_{i:03d}" for i in range(n_regions)],
        "category_ids": [f"cat_{i:02d}" for i in range(N_CATEGORIES)],
        "names": list(EVENT_NAMES + tuple(LEGACY_ALIASES) + UNKNOWN_NAMES),
        "properties": properties, "property_starts": property_starts,
    }


def _property_vocabulary() -> Tuple[List[str], Dict[str, int]]:
    """Every properties value a row can hold, and where each group of them starts:
    impression (surface-major, _POSITIONS positions each), referrer, query, sold,
    deleted, and BAD_PROPERTIES last."""
    groups = {
        "impression": [{"position": p, "surface": s} for s in _SURFACES for p in range(_POSITIONS)],
        "referrer": [{"referrer": r} for r in _REFERRERS],
        "query": [{"query": q} for q in _SEARCH_QUERIES],
        "sold": [{"channel": "chat"}],
        "deleted": [{"reason": r} for r in _DELETE_REASONS],
    }
    values, starts = [], {}
    for group, objects in groups.items():
        starts[group] = len(values)
        values += [json.dumps(o, ensure_ascii=False, separators=(",", ":")) for o in objects]
    starts["bad"] = len(values)
    return values + list(BAD_PROPERTIES), starts


def _draw_in_blocks(rng: np.random.Generator, catalogue: dict, lo: np.ndarray,
                    hi: np.ndarray) -> np.ndarray:
    """One article per row, popularity-weighted among the articles by_block[lo:hi]."""
    cumulative = catalogue["cumulative"]
    x = cumulative[lo] + rng.random(len(lo)) * (cumulative[hi] - cumulative[lo])
    position = np.clip(np.searchsorted(cumulative, x, side="right") - 1, lo, hi - 1)
    return catalogue["by_block"][position]


def _walk_in_ranges(rng: np.random.Generator, order: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray) -> np.ndarray:
    """One article per row from order[lo:hi], taken in turn: the rows of one range
    (in row order) take consecutive places of it from a random start, wrapping
    around, so a range of size s holding k rows gives min(k, s) distinct articles."""
    if len(lo) == 0:
        return np.zeros(0, dtype=np.int64)
    ranges, at, row_range = np.unique(lo, return_index=True, return_inverse=True)
    sizes = hi[at] - ranges
    if sizes.min() < 1:
        raise ValueError("an article draw from an empty range")
    start = np.floor(rng.random(len(ranges)) * sizes).astype(np.int64)
    by_range = np.argsort(row_range, kind="stable")
    first = np.searchsorted(row_range[by_range], np.arange(len(ranges)))
    turn = np.empty(len(lo), dtype=np.int64)
    turn[by_range] = np.arange(len(lo)) - first[row_range[by_range]]
    return order[ranges[row_range] + (start[row_range] + turn) % sizes[row_range]]


def _draw_articles(rng: np.random.Generator, catalogue: dict, in_block: np.ndarray,
                   lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The article of each row: by popularity among by_block[lo:hi] (where `in_block`,
    the session's block; elsewhere every article); with a long catalogue, a row
    outside the head walks the block's (or every article's) shuffled order instead."""
    n = catalogue["n_articles"]
    article = _draw_in_blocks(rng, catalogue, np.where(in_block, lo, 0),
                              np.where(in_block, hi, n))
    walks = catalogue["walks"]
    if walks is None:
        return article
    tail = rng.random(len(lo)) >= HEAD_SHARE
    at = np.flatnonzero(tail & in_block)
    article[at] = _walk_in_ranges(rng, walks["block"], lo[at], hi[at])
    at = np.flatnonzero(tail & ~in_block)
    article[at] = _walk_in_ranges(rng, walks["any"], np.zeros(len(at), dtype=np.int64),
                                  np.full(len(at), n, dtype=np.int64))
    return article


def _session_lengths(rng: np.random.Generator, n_client: int) -> np.ndarray:
    """Sessions of 2 to 40 events (the last may be shorter), `n_client` events in all."""
    lengths = np.zeros(0, dtype=np.int64)
    while lengths.sum() < n_client:
        batch = np.round(rng.lognormal(np.log(8.0), 0.7, size=n_client // 8 + 16))
        lengths = np.concatenate([lengths, np.clip(batch, 2, 40).astype(np.int64)])
    total = np.cumsum(lengths)
    last = int(np.searchsorted(total, n_client))
    lengths = lengths[:last + 1]
    lengths[-1] -= total[last] - n_client
    return lengths


def _session_starts(rng: np.random.Generator, user: np.ndarray, duration: np.ndarray,
                    budget: float) -> Tuple[np.ndarray, np.ndarray]:
    """Start of each session in [0, budget) and the factor its offsets are scaled by.

    A user's sessions come one after another, SESSION_GAP_US apart, at random
    places in the day; a user whose sessions and gaps do not fit in `budget`
    is squeezed into it (scale < 1, gaps shorter than SESSION_GAP_US)."""
    place = rng.random(len(user))
    order = np.lexsort((place, user))  # by user, then by place
    sorted_user = user[order]
    first = np.concatenate([[True], sorted_user[1:] != sorted_user[:-1]])
    group = np.cumsum(first) - 1
    step = duration[order] + SESSION_GAP_US
    before = np.cumsum(step) - step
    before -= before[first][group]
    need = np.bincount(group, weights=step) - SESSION_GAP_US
    scale = np.minimum(1.0, budget / np.maximum(need, 1.0))
    slack = np.maximum(budget - need, 0.0)
    start = np.empty(len(user))
    start[order] = place[order] * slack[group] + before * scale[group]
    session_scale = np.empty(len(user))
    session_scale[order] = scale[group]
    return start, session_scale


def _client_rows(rng: np.random.Generator, catalogue: dict, n_client: int,
                 span: DaySpan, mix: Dict[str, float]) -> Dict[str, np.ndarray]:
    """Users' sessions, each in the user's region and one category, placed in the span."""
    lengths = _session_lengths(rng, n_client)
    n_sessions = len(lengths)
    activity = catalogue["activity"]
    user = rng.choice(catalogue["n_users"], size=n_sessions, p=activity / activity.sum())

    # The session's block: the region and category of a popular article of the
    # user's region (of any region, where the user's region lists none).
    edges = catalogue["block_edges"]
    region = catalogue["user_region"][user]
    lo, hi = edges[region * N_CATEGORIES], edges[(region + 1) * N_CATEGORIES]
    none = lo == hi
    lo, hi = np.where(none, 0, lo), np.where(none, catalogue["n_articles"], hi)
    anchor = _draw_in_blocks(rng, catalogue, lo, hi)
    if catalogue["walks"] is not None:
        # Outside the head, any article of the region: blocks get sessions in
        # proportion to their articles, so their walks cover them evenly.
        tail = np.flatnonzero(rng.random(n_sessions) >= HEAD_SHARE)
        anchor[tail] = catalogue["by_block"][rng.integers(lo[tail], hi[tail])]
    block = (catalogue["article_region"][anchor] * N_CATEGORIES
             + catalogue["article_category"][anchor])

    # Events seconds to minutes apart; sessions spread over the span.
    session = np.repeat(np.arange(n_sessions), lengths)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    gap = np.clip(rng.lognormal(np.log(20.0), 1.0, size=n_client) * _US, _US, MAX_EVENT_GAP_US)
    gap[first] = 0.0
    offset = np.cumsum(gap)
    offset -= offset[first][session]
    start, scale = _session_starts(rng, user, offset[first + lengths - 1],
                                   float(span.end_us - span.start_us - 1))
    ts = span.start_us + np.floor(start[session] + offset * scale[session]).astype(np.int64)

    # What happens, and on which article.
    names = catalogue["names"]
    shares = np.array(list(mix.values()))
    name = np.array([names.index(n) for n in mix])[
        rng.choice(len(shares), size=n_client, p=shares / shares.sum())]
    event_block = block[session]
    in_block = rng.random(n_client) < IN_BLOCK_SHARE
    article = _draw_articles(rng, catalogue, in_block, edges[event_block],
                             edges[event_block + 1])
    repeat = (np.isin(name, [names.index(ARTICLE_LIKE), names.index(CHAT_START)])
              & (rng.random(n_client) < REPEAT_SHARE))
    repeat[first] = False
    repeat_at = np.flatnonzero(repeat)
    article[repeat_at] = article[repeat_at - 1]
    search = name == names.index(SEARCH)

    starts = catalogue["property_starts"]
    coin = rng.random(n_client)
    properties = np.full(n_client, -1)
    properties = np.where((name == names.index(IMPRESSION)) & (coin < 0.5),
                          starts["impression"] + rng.integers(0, _POSITIONS * len(_SURFACES),
                                                              n_client), properties)
    properties = np.where((name == names.index(ARTICLE_VIEW)) & (coin < 0.3),
                          starts["referrer"] + rng.integers(0, len(_REFERRERS), n_client),
                          properties)
    properties = np.where(search, starts["query"] + rng.integers(0, len(_SEARCH_QUERIES),
                                                                 n_client), properties)
    return {
        "ts": ts,
        "ts_null": np.zeros(n_client, dtype=bool),
        "name": name,
        "source": np.full(n_client, SOURCES.index(CLIENT)),
        "user": user[session],
        "article": np.where(search, -1, article),
        "region": np.where(search, region[session], catalogue["article_region"][article]),
        "category": np.where(search, event_block % N_CATEGORIES,
                             catalogue["article_category"][article]),
        "price": np.where(search, 0, catalogue["price"][article]),
        "price_null": search,
        "platform": np.array([PLATFORMS.index(p) for p in CLIENT_PLATFORMS])[
            catalogue["user_platform"][user[session]]],
        "properties": properties,
    }


def _server_rows(rng: np.random.Generator, catalogue: dict, n_server: int,
                 span: DaySpan) -> Dict[str, np.ndarray]:
    """Listings created, sold and deleted over the day, by their seller or by the system."""
    names = catalogue["names"]
    mix = np.array(list(_SERVER_MIX.values()))
    name = np.array([names.index(n) for n in _SERVER_MIX])[
        rng.choice(len(mix), size=n_server, p=mix / mix.sum())]
    article = rng.integers(0, catalogue["n_articles"], size=n_server)
    starts = catalogue["property_starts"]
    properties = np.where(name == names.index(ARTICLE_SOLD), starts["sold"], -1)
    properties = np.where(name == names.index(ARTICLE_DELETED),
                          starts["deleted"] + rng.integers(0, len(_DELETE_REASONS), n_server),
                          properties)
    return {
        "ts": rng.integers(span.start_us, span.end_us, size=n_server),
        "ts_null": np.zeros(n_server, dtype=bool),
        "name": name,
        "source": np.full(n_server, SOURCES.index(SERVER)),
        "user": np.where(rng.random(n_server) < SERVER_NULL_USER_SHARE, -1,
                         catalogue["seller"][article]),
        "article": article,
        "region": catalogue["article_region"][article],
        "category": catalogue["article_category"][article],
        "price": catalogue["price"][article],
        "price_null": np.zeros(n_server, dtype=bool),
        "platform": np.full(n_server, PLATFORMS.index(SERVER)),
        "properties": properties,
    }


def _concat_rows(*parts: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _event_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """`n` UUID-shaped ids (8-4-4-4-12 lowercase hex) of 128 random bits each."""
    digits = np.frombuffer(rng.bytes(16 * n).hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for to, at, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        text[:, to:to + width] = digits[:, at:at + width]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def _choose(permutation: np.ndarray, eligible: np.ndarray, k: int, what: str) -> np.ndarray:
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


def _plant(rng: np.random.Generator, rows: Dict[str, np.ndarray], catalogue: dict,
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
        chosen = _choose(permutation, unused & where, k, kind)
        unused[chosen] = False
        return chosen

    planted = dict.fromkeys(PLANTED_KINDS, 0)
    planted.update(counts)

    # A few minutes before the span or after it, inside its first or last UTC date.
    first_midnight = (span.utc_dates()[0] - _EPOCH).days * _DAY_US
    next_midnight = (span.utc_dates()[-1] - _EPOCH).days * _DAY_US + _DAY_US
    room = np.array([min(span.start_us - first_midnight, 30 * 60 * _US),
                     min(next_midnight - span.end_us, 30 * 60 * _US)])
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
    later = np.where(rng.random(k) < 0.5, 0, rng.integers(50_000, 3 * _US, k))
    for key, value in rows.items():
        rows[key] = np.concatenate([value, value[sources]])
    rows["ts"][n:] = np.minimum(rows["ts"][n:] + later, span.end_us - 1)
    return planted, np.concatenate([unused, np.zeros(k, dtype=bool)]), extra


def _strings(values: pa.Array, extra: List[str], index: np.ndarray) -> pa.Array:
    """values[index] as strings: -1 is null, -2, -3, ... are extra[0], extra[1], ..."""
    vocabulary = pa.concat_arrays([values, pa.array(extra, pa.string())])
    at = np.where(index <= -2, len(values) - 2 - index, index)
    return vocabulary.take(pa.array(at, mask=index == -1))


def _to_table(rows: Dict[str, np.ndarray], catalogue: dict, event_ids: pa.Array,
              extra: Dict[str, List[str]]) -> pa.Table:
    """The rows as an Arrow table with the contract's schema."""

    def strings(values, key: str) -> pa.Array:
        values = values if isinstance(values, pa.Array) else pa.array(values, pa.string())
        return _strings(values, extra.get(key, []), rows[key])

    columns = {
        "event_id": strings(event_ids, "event_id"),
        "event_timestamp": pa.array(rows["ts"], pa.timestamp("us", tz="UTC"),
                                    mask=rows["ts_null"]),
        "event_name": strings(catalogue["names"], "name"),
        "source": strings(list(SOURCES), "source"),
        "user_id": strings(catalogue["user_ids"], "user"),
        "article_id": strings(catalogue["article_ids"], "article"),
        "region_id": strings(catalogue["region_ids"], "region"),
        "category_id": strings(catalogue["category_ids"], "category"),
        "price": pa.array(rows["price"], pa.int64(), mask=rows["price_null"]),
        "platform": strings(list(PLATFORMS), "platform"),
        "properties": strings(catalogue["properties"], "properties"),
    }
    return pa.Table.from_arrays([columns[name] for name in COLUMN_NAMES], schema=arrow_schema())


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    """Generates a day, writes it in the export layout, prints a one-line summary."""
    parser = argparse.ArgumentParser(prog="python -m datagen.events", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="events in the day")
    parser.add_argument("--run_date", required=True,
                        help="the local day, YYYY-MM-DD, or auto for yesterday in --timezone")
    parser.add_argument("--timezone", default="Asia/Seoul", help="IANA time zone of the day")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same events")
    parser.add_argument("--dirty_fraction", type=float, default=0.03,
                        help="share of dirty rows, in [0, 0.5]")
    parser.add_argument("--out_of_span_fraction", type=float, default=0.001,
                        help="share of rows a few minutes outside the day, in [0, 0.1]")
    parser.add_argument("--breakage", default=None, help=f"break the day: {BREAKAGE_FORMS}")
    parser.add_argument("--client_mix", default="",
                        help="client event shares, e.g. impression:0.62,article_view:0.2,"
                             "article_like:0.06,chat_start:0.03,search:0.09 (the default)")
    parser.add_argument("--articles", type=int, default=None,
                        help="catalogue size N: articles drawn from N ids with a long tail "
                             "(most seen once or twice, a head of popular ones); default: "
                             "one article per 20 events, popularity-weighted")
    parser.add_argument("--out_dir", default="sample_data/events",
                        help="folder to write dt=YYYY-MM-DD/part-NNNNN.parquet under")
    parser.add_argument("--rows_per_file", type=int, default=500_000,
                        help="most rows in one Parquet file")
    args = parser.parse_args(argv)
    day = generate_events(args.rows, parse_run_date(args.run_date, args.timezone),
                          args.timezone, args.seed, args.dirty_fraction,
                          args.out_of_span_fraction, args.breakage,
                          parse_client_mix(args.client_mix) if args.client_mix else None,
                          args.articles)
    paths = write_export_layout(day.table, args.out_dir, day.span.run_date, args.rows_per_file,
                                day.drop_columns)
    partitions = sorted({os.path.basename(os.path.dirname(path)) for path in paths})
    planted = " ".join(f"{kind}={count}" for kind, count in day.planted.items())
    print(f"wrote {day.table.num_rows} rows in {len(paths)} files under {args.out_dir} "
          f"({', '.join(partitions)}); breakage={args.breakage}; planted: {planted}")
    return paths


if __name__ == "__main__":
    main()
