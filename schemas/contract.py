"""The events table contract and every name the stages share.

This module is the one place for column names, event names, aliases and
reason codes. ``schemas/events_table.json`` is the same contract in
BigQuery's JSON schema form; a test keeps the two equal.
"""

from typing import NamedTuple, Tuple

import pyarrow as pa

# (name, BigQuery type, mode), in the table's column order.
COLUMNS = (
    ("event_id", "STRING", "REQUIRED"),
    ("event_timestamp", "TIMESTAMP", "REQUIRED"),
    ("event_name", "STRING", "REQUIRED"),
    ("source", "STRING", "REQUIRED"),
    ("user_id", "STRING", "NULLABLE"),
    ("article_id", "STRING", "NULLABLE"),
    ("region_id", "STRING", "NULLABLE"),
    ("category_id", "STRING", "NULLABLE"),
    ("price", "INT64", "NULLABLE"),
    ("platform", "STRING", "NULLABLE"),
    ("properties", "STRING", "NULLABLE"),
)
COLUMN_NAMES = tuple(name for name, _, _ in COLUMNS)
PARTITION_COLUMN = "event_timestamp"

# BigQuery type -> Arrow type of the table's Parquet export.
ARROW_TYPES = {
    "STRING": pa.string(),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
    "INT64": pa.int64(),
}


def arrow_schema() -> pa.Schema:
    """The contract as an Arrow schema. Every field is nullable: rows that
    break REQUIRED are quarantined by the row checks, not rejected by the reader."""
    return pa.schema([pa.field(name, ARROW_TYPES[bq_type]) for name, bq_type, _ in COLUMNS])


CLIENT = "client"
SERVER = "server"
SOURCES = (CLIENT, SERVER)

IMPRESSION = "impression"
ARTICLE_VIEW = "article_view"
ARTICLE_LIKE = "article_like"
CHAT_START = "chat_start"
SEARCH = "search"
ARTICLE_CREATED = "article_created"
ARTICLE_SOLD = "article_sold"
ARTICLE_DELETED = "article_deleted"

CLIENT_EVENTS = (IMPRESSION, ARTICLE_VIEW, ARTICLE_LIKE, CHAT_START, SEARCH)
SERVER_EVENTS = (ARTICLE_CREATED, ARTICLE_SOLD, ARTICLE_DELETED)
EVENT_NAMES = CLIENT_EVENTS + SERVER_EVENTS
# Legacy clients still send these; they mean article_view.
LEGACY_ALIASES = {"item_click": ARTICLE_VIEW, "click_item": ARTICLE_VIEW}

# Names that need a user_id; every name but search needs an article_id.
USER_REQUIRED_EVENTS = CLIENT_EVENTS
ARTICLE_OPTIONAL_EVENTS = (SEARCH,)

# Rows that count as a user interacting with an article (the graph's input).
INTERACTION_EVENTS = (ARTICLE_VIEW, ARTICLE_LIKE, CHAT_START)
# How strongly an interaction engages (ranking labels, sequences' strongest event).
ENGAGEMENT_STRENGTH = {ARTICLE_VIEW: 1, ARTICLE_LIKE: 2, CHAT_START: 3}
# The training example kinds and the splits every published example kind and feature
# entity has.
EXAMPLE_KINDS = ("skipgram", "sequences", "ranking")
SPLITS = ("train", "eval")

PLATFORMS = ("ios", "android", "web", "server")

ID_COLUMNS = ("event_id", "user_id", "article_id", "region_id", "category_id")
MAX_ID_LENGTH = 128

# Quarantine reasons, in the order the row checks apply them; a row is
# quarantined with the first that fails.
REASONS = (
    "missing_event_id",
    "bad_timestamp",
    "unknown_event_name",
    "source_mismatch",
    "missing_user_id",
    "missing_article_id",
    "malformed_id",
    "negative_price",
    "bad_properties",
)

ENVIRONMENTS = {CLIENT: "CLIENT", SERVER: "SERVER"}


class PropertyKey(NamedTuple):
    """A known key of `properties` (a JSON object's text; docs/events.md#properties).

    type: "int" (a JSON integer, not a boolean) or "string". A free-text key holds the
    user's own words: no output but the quarantine and the validated rows shows it (the
    statistics see its length only). Any other string key has a closed vocabulary:
    statistics show one of `values` or "other", never the string sent."""
    name: str
    type: str
    free_text: bool
    events: Tuple[str, ...]
    values: Tuple[str, ...]
    meaning: str


PROPERTY_KEYS = (
    PropertyKey("position", "int", False, (IMPRESSION,), (),
                "display position of the article in the list shown, 0 first"),
    PropertyKey("surface", "string", False, (IMPRESSION,), ("home_feed", "search", "category"),
                "the list the impression was shown in"),
    # Not free text by intent, but a client can send a URL (a share link's parameters):
    # statistics show it only as one of its values or "other".
    PropertyKey("referrer", "string", False, (ARTICLE_VIEW,),
                ("feed", "search", "chat", "share_link"), "where the view came from"),
    PropertyKey("query", "string", True, (SEARCH,), (), "the search text the user typed"),
    PropertyKey("channel", "string", False, (ARTICLE_SOLD,), ("chat",), "where the sale was agreed"),
    PropertyKey("reason", "string", False, (ARTICLE_DELETED,),
                ("seller", "moderation", "expired"), "why the article was deleted"),
)
PROPERTY_KEY_NAMES = tuple(key.name for key in PROPERTY_KEYS)
# The value statistics show for a closed-vocabulary key's string outside its values.
OTHER_VALUE = "other"
