"""Tier 1: the events table contract and the shared names keep their invariants."""

import pytest

import json
import pathlib

import pyarrow as pa

from schemas import contract

pytestmark = pytest.mark.functions

TABLE_JSON = pathlib.Path(contract.__file__).with_name("events_table.json")


def table_json():
    return json.loads(TABLE_JSON.read_text(encoding="utf-8"))


def test_events_table_json_equals_the_contract():
    fields = table_json()
    assert [(f["name"], f["type"], f["mode"]) for f in fields] == list(contract.COLUMNS)
    for field in fields:
        assert set(field) == {"name", "type", "mode", "description"}, field
        assert isinstance(field["description"], str)


def test_column_names_and_partition_column():
    assert contract.COLUMN_NAMES == (
        "event_id", "event_timestamp", "event_name", "source", "user_id", "article_id",
        "region_id", "category_id", "price", "platform", "properties")
    assert len(set(contract.COLUMN_NAMES)) == len(contract.COLUMN_NAMES)
    assert contract.PARTITION_COLUMN == "event_timestamp"
    assert dict((n, t) for n, t, _ in contract.COLUMNS)[contract.PARTITION_COLUMN] == "TIMESTAMP"
    required = [n for n, _, m in contract.COLUMNS if m == "REQUIRED"]
    assert required == ["event_id", "event_timestamp", "event_name", "source"]
    assert {m for _, _, m in contract.COLUMNS} == {"REQUIRED", "NULLABLE"}


def test_arrow_schema():
    assert contract.arrow_schema() == pa.schema([
        pa.field("event_id", pa.string()),
        pa.field("event_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("event_name", pa.string()),
        pa.field("source", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("article_id", pa.string()),
        pa.field("region_id", pa.string()),
        pa.field("category_id", pa.string()),
        pa.field("price", pa.int64()),
        pa.field("platform", pa.string()),
        pa.field("properties", pa.string()),
    ])
    assert all(field.nullable for field in contract.arrow_schema())
    assert contract.arrow_schema().metadata is None
    assert set(contract.ARROW_TYPES) == {t for _, t, _ in contract.COLUMNS}


def test_reasons_in_the_order_the_checks_apply_them():
    assert contract.REASONS == (
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


def test_event_names():
    assert contract.CLIENT_EVENTS == (
        "impression", "article_view", "article_like", "chat_start", "search")
    assert contract.SERVER_EVENTS == ("article_created", "article_sold", "article_deleted")
    assert not set(contract.CLIENT_EVENTS) & set(contract.SERVER_EVENTS)
    assert contract.EVENT_NAMES == contract.CLIENT_EVENTS + contract.SERVER_EVENTS
    assert len(set(contract.EVENT_NAMES)) == len(contract.EVENT_NAMES)


def test_legacy_aliases_mean_article_view():
    assert contract.LEGACY_ALIASES == {"item_click": "article_view", "click_item": "article_view"}
    assert not set(contract.LEGACY_ALIASES) & set(contract.EVENT_NAMES)


def test_interaction_events_are_client_events():
    assert contract.INTERACTION_EVENTS == ("article_view", "article_like", "chat_start")
    assert set(contract.INTERACTION_EVENTS) < set(contract.CLIENT_EVENTS)
    assert set(contract.USER_REQUIRED_EVENTS) <= set(contract.CLIENT_EVENTS)
    assert set(contract.ARTICLE_OPTIONAL_EVENTS) <= set(contract.EVENT_NAMES)
    assert not set(contract.ARTICLE_OPTIONAL_EVENTS) & set(contract.INTERACTION_EVENTS)


def test_sources_platforms_and_ids():
    assert contract.SOURCES == ("client", "server")
    assert set(contract.ENVIRONMENTS) == set(contract.SOURCES)
    assert contract.PLATFORMS == ("ios", "android", "web", "server")
    assert set(contract.ID_COLUMNS) <= set(contract.COLUMN_NAMES)
    types = {n: t for n, t, _ in contract.COLUMNS}
    assert all(types[n] == "STRING" for n in contract.ID_COLUMNS)
    assert contract.MAX_ID_LENGTH == 128


def test_schema_descriptions_name_every_event_and_platform():
    descriptions = {f["name"]: f["description"] for f in table_json()}
    for name in contract.EVENT_NAMES + tuple(contract.LEGACY_ALIASES):
        assert name in descriptions["event_name"], name
    for source in contract.SOURCES:
        assert source in descriptions["source"], source
    for platform in contract.PLATFORMS:
        assert platform in descriptions["platform"], platform
