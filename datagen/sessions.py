"""The drawing of a generated day (`datagen.events`): the catalogue and the rows.

`draw_catalogue` draws users (region, platform, activity), articles (seller, region,
category, price, Zipf-like popularity) and the string vocabularies the rows index
into; `client_rows` draws users' sessions, each mostly inside the user's region and
one category, and `server_rows` the listings created, sold and deleted. Rows are
dicts of numpy arrays of indices into the catalogue's vocabularies (-1 is null);
`datagen.planting` plants the dirty rows in them.
"""

import datetime as dt
import json
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from schemas.contract import ARTICLE_CREATED, ARTICLE_DELETED, ARTICLE_LIKE, ARTICLE_SOLD, \
    ARTICLE_VIEW, CHAT_START, CLIENT, EVENT_NAMES, IMPRESSION, LEGACY_ALIASES, PLATFORMS, \
    SEARCH, SERVER, SOURCES
from transforms.common.span import DaySpan

# Names no stage knows: the unknown_event_name rows and the unknown_name breakage.
UNKNOWN_NAMES = ("app_open", "screen_view", "push_open")
# Properties that are not JSON (RFC 8259): a trailing comma, NaN, an unquoted key.
BAD_PROPERTIES = ('{"position":3,}', '{"score":NaN}', '{position:3}')

SESSION_GAP_US = 31 * 60 * 1_000_000  # between two sessions of a user, where the day has room
MAX_EVENT_GAP_US = 5 * 60 * 1_000_000  # between two events of a session
N_CATEGORIES = 12
CLIENT_PLATFORMS = tuple(p for p in PLATFORMS if p != SERVER)
IN_BLOCK_SHARE = 0.85  # session events on an article of the session's region and category
HEAD_SHARE = 0.1  # with n_articles: share of the article draws that are popularity-weighted
REPEAT_SHARE = 0.6  # likes and chats on the article of the event before
SERVER_NULL_USER_SHARE = 0.2

# Microseconds, and the date the rows' timestamps (microseconds since it, UTC) count from.
US = 1_000_000
DAY_US = 86_400 * US
EPOCH = dt.date(1970, 1, 1)
_PLATFORM_WEIGHTS = {"ios": 0.45, "android": 0.45, "web": 0.10}
_SERVER_MIX = {ARTICLE_CREATED: 0.45, ARTICLE_SOLD: 0.20, ARTICLE_DELETED: 0.35}
_SURFACES = ("home_feed", "search", "category")
_POSITIONS = 50
_REFERRERS = ("feed", "search", "chat", "share_link")
_SEARCH_QUERIES = ("아이폰", "자전거", "책상", "유모차", "캠핑 의자", "닌텐도 스위치", "에어팟",
                   "원피스", "전기밥솥", "레고", "골프채", "noise cancelling", "iPad mini",
                   "의자", "모니터", "러닝화")
_DELETE_REASONS = ("seller", "moderation", "expired")


def draw_catalogue(rng: np.random.Generator, n_events: int,
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


def client_rows(rng: np.random.Generator, catalogue: dict, n_client: int,
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
    gap = np.clip(rng.lognormal(np.log(20.0), 1.0, size=n_client) * US, US, MAX_EVENT_GAP_US)
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


def server_rows(rng: np.random.Generator, catalogue: dict, n_server: int,
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


def concat_rows(*parts: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def random_event_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """`n` UUID-shaped ids (8-4-4-4-12 lowercase hex) of 128 random bits each."""
    digits = np.frombuffer(rng.bytes(16 * n).hex().encode("ascii"), dtype=np.uint8).reshape(n, 32)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    for to, at, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        text[:, to:to + width] = digits[:, at:at + width]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))
