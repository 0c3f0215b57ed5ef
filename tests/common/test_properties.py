"""`properties` in the contract (schemas.contract.PROPERTY_KEYS) and its parsing
(transforms/common/properties.py), tier 1."""

import datetime as dt
import json

import pyarrow as pa
import pytest

from datagen.events import generate_events
from schemas import contract
from transforms.common.properties import OTHER_KEYS_FEATURE, STATISTICS_FEATURES, \
    property_values, statistics_columns

pytestmark = pytest.mark.functions

ROWS = pa.array([
    '{"surface":"home_feed","position":3}', None, '{"position":"3","surface":"banner"}',
    '{"surface":7,"position":true,"experiment":"b"}', '{"query":"자전거 010-1234-5678"}',
    "[1, 2]", '{"referrer":"https://example.com/?u=42","x":1,"y":2}', "not json",
    '{"channel":"chat","reason":"moderation"}', '{"surface":"home_feed","position":3}',
    '{"position":2.0,"query":""}', '{"position":100000000000000000000}',
    '{"position":-9223372036854775808}'])


def test_the_contract_names_each_key_once_with_a_type_and_free_text_apart():
    names = [key.name for key in contract.PROPERTY_KEYS]
    assert len(set(names)) == len(names) == len(contract.PROPERTY_KEY_NAMES)
    assert [key.name for key in contract.PROPERTY_KEYS if key.free_text] == ["query"]
    for key in contract.PROPERTY_KEYS:
        assert key.type in ("int", "string"), key
        assert set(key.events) <= set(contract.EVENT_NAMES), key
        # A closed vocabulary for every string key that is not free text, and only there.
        assert bool(key.values) == (key.type == "string" and not key.free_text), key
        assert contract.OTHER_VALUE not in key.values


def test_every_key_the_sample_generator_writes_is_in_the_contract():
    table = generate_events(3000, dt.date(2026, 11, 26), seed=2, dirty_fraction=0.0).table
    keys = {key.name: key for key in contract.PROPERTY_KEYS}
    seen = set()
    for name, text in zip(table.column("event_name").to_pylist(),
                          table.column("properties").to_pylist()):
        if text is None:
            continue
        for key, value in json.loads(text).items():
            seen.add(key)
            canonical = contract.LEGACY_ALIASES.get(name, name)
            assert canonical in keys[key].events, (name, key)
            if keys[key].type == "int":
                assert isinstance(value, int) and not isinstance(value, bool)
            else:
                assert isinstance(value, str)
                assert keys[key].free_text or value in keys[key].values, (key, value)
    assert seen == set(keys)


def test_property_values_are_typed_as_the_contract_says():
    values = property_values(ROWS, ("surface", "position", "query"))
    assert values["surface"].type == pa.string() and values["position"].type == pa.int64()
    assert values["surface"].to_pylist() == [
        "home_feed", None, "other", None, None, None, None, None, None, "home_feed", None,
        None, None]
    # An integer outside int64 (the row checks accept any length) reads as absent.
    assert values["position"].to_pylist() == [3, None, None, None, None, None, None, None,
                                              None, 3, None, None, -(1 << 63)]
    assert values["query"].to_pylist()[4] == "자전거 010-1234-5678"
    chunked = property_values(pa.chunked_array([ROWS.slice(0, 5), ROWS.slice(5)]), ("surface",))
    assert chunked["surface"].to_pylist() == values["surface"].to_pylist()


def test_statistics_columns_hold_no_string_a_user_or_client_sent():
    columns = statistics_columns(ROWS)
    assert tuple(columns) == STATISTICS_FEATURES == (
        "properties_position", "properties_surface", "properties_referrer",
        "properties_query_length", "properties_channel", "properties_reason",
        OTHER_KEYS_FEATURE)
    assert columns["properties_surface"].to_pylist() == [
        "home_feed", None, "other", None, None, None, None, None, None, "home_feed", None,
        None, None]
    assert columns["properties_position"].to_pylist() == [
        3, None, None, None, None, None, None, None, None, 3, None, None, -(1 << 63)]
    assert columns["properties_referrer"].to_pylist()[6] == "other"
    assert columns["properties_query_length"].to_pylist() == [
        None, None, None, None, 17, None, None, None, None, None, 0, None, None]
    assert columns["properties_channel"].to_pylist()[8] == "chat"
    assert columns["properties_reason"].to_pylist()[8] == "moderation"
    assert columns[OTHER_KEYS_FEATURE].to_pylist() == [0, None, 0, 1, 0, None, 2, None, 0, 0, 0,
                                                       0, 0]
    strings = {value for name, column in columns.items() if column.type == pa.string()
               for value in column.to_pylist() if value is not None}
    allowed = {v for key in contract.PROPERTY_KEYS for v in key.values} | {contract.OTHER_VALUE}
    assert strings <= allowed
    assert all(len(column) == len(ROWS) for column in columns.values())
    assert [len(c) for c in statistics_columns(pa.array([], pa.string())).values()] == [0] * 7
