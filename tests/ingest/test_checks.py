"""Tier 1: the row checks, quarantine lines and de-duplication on small literal inputs."""

import datetime as dt
import gzip
import itertools
import json
import random
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from schemas import contract
from transforms.common.span import day_span
from transforms.ingest import checks

pytestmark = pytest.mark.functions

SPAN = day_span(dt.date(2026, 11, 26), "Asia/Seoul")  # [2026-11-25T15:00Z, 2026-11-26T15:00Z)
US = dt.timedelta(microseconds=1)
T = dt.datetime(2026, 11, 26, 3, 4, 5, 123456, tzinfo=dt.timezone.utc)


def row(**overrides):
    base = {
        "event_id": "e1",
        "event_timestamp": T,
        "event_name": contract.ARTICLE_VIEW,
        "source": contract.CLIENT,
        "user_id": "u1",
        "article_id": "a1",
        "region_id": "r1",
        "category_id": "c1",
        "price": 1000,
        "platform": "ios",
        "properties": '{"rank": 3}',
    }
    unknown = set(overrides) - set(base)
    assert not unknown, unknown
    return {**base, **overrides}


def batch(rows):
    return pa.RecordBatch.from_pylist(rows, schema=contract.arrow_schema())


def check(rows):
    return checks.check_rows(batch(rows), SPAN.start_us, SPAN.end_us)


def outcome(rows):
    """(reason or "valid" or "out_of_span") for a single row."""
    out = check(rows)
    assert out.out_of_span + out.quarantined.num_rows + out.valid.num_rows == len(rows) == 1
    if out.out_of_span:
        return "out_of_span"
    if out.valid.num_rows:
        return "valid"
    return out.quarantined.column(checks.ERROR_REASON)[0].as_py()


def quarantined_row(overrides):
    out = check([row(**overrides)])
    assert (out.valid.num_rows, out.out_of_span) == (0, 0)
    return out.quarantined.to_pylist()[0]


# ---------------------------------------------------------------------------------------------
# One row per reason


@pytest.mark.parametrize("overrides, reason, detail", [
    ({"event_id": None}, "missing_event_id", "event_id is null"),
    ({"event_timestamp": None}, "bad_timestamp", "event_timestamp is null"),
    ({"event_name": "bogus"}, "unknown_event_name", 'event_name="bogus" is not a known event name'),
    ({"event_name": "Article_View"}, "unknown_event_name",
     'event_name="Article_View" is not a known event name'),
    ({"event_name": None}, "unknown_event_name", "event_name is null"),
    ({"source": contract.SERVER}, "source_mismatch",
     'source="server" but event_name=article_view needs source=client'),
    ({"source": None}, "source_mismatch",
     "source is null but event_name=article_view needs source=client"),
    ({"event_name": contract.ARTICLE_SOLD}, "source_mismatch",
     'source="client" but event_name=article_sold needs source=server'),
    ({"user_id": None}, "missing_user_id", "user_id is null for event_name=article_view"),
    ({"event_name": contract.SEARCH, "user_id": None}, "missing_user_id",
     "user_id is null for event_name=search"),
    ({"article_id": None}, "missing_article_id", "article_id is null for event_name=article_view"),
    ({"event_name": contract.ARTICLE_DELETED, "source": contract.SERVER, "article_id": None},
     "missing_article_id", "article_id is null for event_name=article_deleted"),
    ({"article_id": "a\u00a0b"}, "malformed_id", "article_id contains a U+00A0 character"),
    ({"article_id": "a" * 130}, "malformed_id", "article_id is 130 characters long (max 128)"),
    ({"region_id": ""}, "malformed_id", "region_id is empty"),
    ({"price": -500}, "negative_price", "price=-500 is negative"),
    ({"properties": '{"a":1,}'}, "bad_properties",
     "properties is not valid JSON: Expecting property name enclosed in double quotes: "
     "line 1 column 8 (char 7)"),
    ({"properties": '{"x": NaN}'}, "bad_properties",
     "properties is not valid JSON: NaN is not allowed (RFC 8259)"),
])
def test_each_reason_and_detail(overrides, reason, detail):
    assert quarantined_row(overrides) == {**row(**overrides), "_error_reason": reason,
                                          "_error_detail": detail}


def test_every_reason_has_a_case():
    reasons = {"missing_event_id", "bad_timestamp", "unknown_event_name", "source_mismatch",
               "missing_user_id", "missing_article_id", "malformed_id", "negative_price",
               "bad_properties"}
    assert set(contract.REASONS) == reasons


@pytest.mark.parametrize("overrides", [
    {},
    {"event_name": contract.SEARCH, "article_id": None},  # search needs no article
    {"event_name": contract.ARTICLE_CREATED, "source": contract.SERVER, "user_id": None,
     "platform": "server"},  # server events need no user
    {"price": 0},
    {"price": None},
    {"properties": None},
    {"region_id": None, "category_id": None, "platform": None},
    {"article_id": "서울-1"},
])
def test_valid_rows(overrides):
    out = check([row(**overrides)])
    assert out.valid.to_pylist() == [row(**overrides)]
    assert (out.quarantined.num_rows, out.out_of_span) == (0, 0)


@pytest.mark.parametrize("overrides, reason", [
    ({"event_id": None, "event_timestamp": None, "event_name": "x", "price": -1},
     "missing_event_id"),
    ({"event_timestamp": None, "event_name": "x", "user_id": None}, "bad_timestamp"),
    ({"event_name": "x", "source": None, "user_id": None, "article_id": None},
     "unknown_event_name"),
    ({"source": "server", "user_id": None, "article_id": None}, "source_mismatch"),
    ({"user_id": None, "article_id": None, "region_id": "", "price": -1}, "missing_user_id"),
    ({"article_id": None, "region_id": "", "price": -1, "properties": "x"}, "missing_article_id"),
    ({"region_id": "", "price": -1, "properties": "x"}, "malformed_id"),
    ({"price": -1, "properties": "x"}, "negative_price"),
])
def test_first_failing_check_wins(overrides, reason):
    assert outcome([row(**overrides)]) == reason


@pytest.mark.parametrize("overrides, detail", [
    ({"user_id": "u\u3000", "article_id": ""}, "user_id contains a U+3000 character"),
    ({"event_id": "e" * 129, "user_id": ""}, "event_id is 129 characters long (max 128)"),
    ({"category_id": "c\x7f", "region_id": "r\t"}, "region_id contains a U+0009 character"),
    ({"category_id": ""}, "category_id is empty"),
    ({"user_id": " " * 200}, "user_id is 200 characters long (max 128)"),
])
def test_malformed_id_names_first_offending_column(overrides, detail):
    assert quarantined_row(overrides)["_error_detail"] == detail


# ---------------------------------------------------------------------------------------------
# The span


@pytest.mark.parametrize("timestamp, expected", [
    (SPAN.start, "valid"),
    (SPAN.end - US, "valid"),
    (SPAN.end, "out_of_span"),
    (SPAN.start - US, "out_of_span"),
    (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), "out_of_span"),
    (None, "bad_timestamp"),
])
def test_span_boundaries(timestamp, expected):
    assert outcome([row(event_timestamp=timestamp)]) == expected


@pytest.mark.parametrize("overrides", [
    {"event_id": None}, {"event_name": None}, {"source": "x"}, {"user_id": None},
    {"article_id": ""}, {"price": -1}, {"properties": "{"},
])
def test_out_of_span_wins_over_every_check(overrides):
    assert outcome([row(event_timestamp=SPAN.end, **overrides)]) == "out_of_span"
    assert outcome([row(event_timestamp=SPAN.start - US, **overrides)]) == "out_of_span"


# ---------------------------------------------------------------------------------------------
# Legacy aliases


@pytest.mark.parametrize("alias", sorted(contract.LEGACY_ALIASES))
def test_alias_normalised_in_valid_output(alias):
    out = check([row(event_name=alias)])
    assert out.valid.to_pylist() == [row(event_name=contract.ARTICLE_VIEW)]


@pytest.mark.parametrize("alias", sorted(contract.LEGACY_ALIASES))
def test_alias_kept_original_in_quarantine(alias):
    assert quarantined_row({"event_name": alias, "user_id": None}) == {
        **row(event_name=alias, user_id=None),
        "_error_reason": "missing_user_id",
        "_error_detail": f"user_id is null for event_name={alias}",
    }


@pytest.mark.parametrize("alias", sorted(contract.LEGACY_ALIASES))
def test_alias_with_server_source_is_source_mismatch(alias):
    assert quarantined_row({"event_name": alias, "source": contract.SERVER}) == {
        **row(event_name=alias, source=contract.SERVER),
        "_error_reason": "source_mismatch",
        "_error_detail": f'source="server" but event_name={alias} needs source=client',
    }


# ---------------------------------------------------------------------------------------------
# malformed_id


@pytest.mark.parametrize("value, ok", [
    ("", False),
    ("x" * 128, True),
    ("x" * 129, False),
    ("서" * 128, True),  # length is in code points, not bytes
    ("서" * 129, False),
    ("a\u00a0b", False),  # no-break space, Zs
    ("a\u3000b", False),  # ideographic space, Zs
    ("a\u2028b", False),  # line separator, Zl
    ("a\u2029b", False),  # paragraph separator, Zp
    ("a b", False),
    ("a\tb", False),  # Cc
    ("a\x7fb", False),  # Cc
    ("a\x85b", False),  # NEL, Cc
    ("a\x00b", False),  # Cc
    ("a\u200bb", True),  # zero-width space is Cf, not Z
    ("서울-1", True),
    ("é_ü-ß.ø:1", True),
])
@pytest.mark.parametrize("column", contract.ID_COLUMNS)
def test_malformed_id_values(column, value, ok):
    assert outcome([row(**{column: value})]) == ("valid" if ok else "malformed_id")


def test_bad_id_char_regex_matches_unicodedata_on_every_code_point():
    code_points = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]
    ids = pa.array([f"a{chr(cp)}b" for cp in code_points], pa.string())
    matched = pc.match_substring_regex(ids, checks.BAD_ID_CHAR_RE).to_pylist()
    categories = [unicodedata.category(chr(cp)) for cp in code_points]
    expected = [category[0] == "Z" or category == "Cc" for category in categories]
    mismatches = [hex(cp) for cp, m, e in zip(code_points, matched, expected) if m != e]
    assert mismatches == []
    assert sum(expected) == 19 + 65  # 19 Z (17 Zs, 1 Zl, 1 Zp) and 65 Cc since Unicode 6.3


# ---------------------------------------------------------------------------------------------
# properties


@pytest.mark.parametrize("properties", [
    '{"a": 1,}', "[1, 2,]", '{"x": NaN}', "NaN", "Infinity", "-Infinity", "[1, -Infinity]",
    "{'a': 1}", "{a: 1}", "", "   ", '"tab\there"', '{"a": 1} x', "01", "+1", "1.", ".5",
    "True", "none", '{"a" 1}', "\ufeff{}", '"\\x"',
])
def test_bad_properties(properties):
    assert outcome([row(properties=properties)]) == "bad_properties"


@pytest.mark.parametrize("properties", [
    "1", "null", "[]", "{}", '{"a": [1, 2.5e3]}', '"x"', "true", "-0", "1E+400", " \t\n\r{} \n",
    '"\\u00e9\\ud83d\\ude00"', '{"a": {"a": 1}, "a": 2}', "1" * 5000, '{"emoji": "😀", "k": "서울"}',
])
def test_good_properties(properties):
    assert outcome([row(properties=properties)]) == "valid"


@pytest.mark.parametrize("properties, message", [
    ("", "Expecting value: line 1 column 1 (char 0)"),
    ("   ", "Expecting value: line 1 column 4 (char 3)"),
    ("Infinity", "Infinity is not allowed (RFC 8259)"),
    ("[-Infinity]", "-Infinity is not allowed (RFC 8259)"),
    ("{'a': 1}", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ('{"a": 1} x', "Extra data: line 1 column 10 (char 9)"),
])
def test_bad_properties_detail(properties, message):
    assert quarantined_row({"properties": properties})["_error_detail"] == (
        f"properties is not valid JSON: {message}")


@pytest.mark.parametrize("depth, expected", [(100, "valid"), (100_000, "bad_properties")])
def test_properties_nesting_depth(depth, expected):
    # RFC 8259 section 9 lets a parser limit the depth; Python's json stops at its recursion limit.
    assert outcome([row(properties="[" * depth + "]" * depth)]) == expected


def test_deep_properties_detail():
    assert quarantined_row({"properties": "[" * 100_000 + "]" * 100_000})["_error_detail"] == (
        "properties is not valid JSON: nested too deeply to parse")


def test_properties_parsed_once_per_distinct_value(monkeypatch):
    parsed = []

    def counting(text):
        parsed.append(text)
        return json_error(text)

    json_error = checks.json_error
    monkeypatch.setattr(checks, "json_error", counting)
    values = ['{"a": 1}', "[1,]", None, "2"]
    out = check([row(event_id=f"e{i}", properties=values[i % 4]) for i in range(1000)])
    assert sorted(parsed) == sorted(['{"a": 1}', "[1,]", "2"])
    assert (out.valid.num_rows, checks.reason_counts(out.quarantined)) == (
        750, {"bad_properties": 250})


def test_properties_not_parsed_on_rows_already_failing(monkeypatch):
    parsed = []
    monkeypatch.setattr(checks, "json_error", lambda text: parsed.append(text))
    check([row(price=-1, properties="a"), row(event_timestamp=SPAN.end, properties="b"),
           row(properties="c")])
    assert parsed == ["c"]


# ---------------------------------------------------------------------------------------------
# A mixed batch


def mixed_rows():
    return [
        row(event_id="v1"),
        row(event_id="q1", user_id=None),
        row(event_id="o1", event_timestamp=SPAN.end),
        row(event_id="v2", event_name="click_item"),
        row(event_id=None, event_timestamp=SPAN.start - US),
        row(event_id="q2", properties="[1,]"),
        row(event_id="v3", event_name=contract.SEARCH, article_id=None),
        row(event_id="q3", price=-2),
        row(event_id="q4", user_id=None, properties="{"),
        row(event_id="v4", event_timestamp=SPAN.start),
    ]


def test_mixed_batch_accounting():
    rows = mixed_rows()
    out = check(rows)
    assert len(rows) == out.out_of_span + out.quarantined.num_rows + out.valid.num_rows
    assert out.out_of_span == 2
    assert out.valid.column("event_id").to_pylist() == ["v1", "v2", "v3", "v4"]
    assert out.valid.column("event_name").to_pylist() == [
        "article_view", "article_view", "search", "article_view"]
    assert out.quarantined.column("event_id").to_pylist() == ["q1", "q2", "q3", "q4"]
    assert out.quarantined.column(checks.ERROR_REASON).to_pylist() == [
        "missing_user_id", "bad_properties", "negative_price", "missing_user_id"]
    assert checks.reason_counts(out.quarantined) == {
        "missing_user_id": 2, "negative_price": 1, "bad_properties": 1}
    assert out.valid.schema == contract.arrow_schema()
    assert out.quarantined.schema == checks.quarantine_schema()


def test_table_in_several_chunks_gives_the_same_result():
    rows = mixed_rows()
    table = pa.Table.from_batches([batch(rows[:3]), batch(rows[3:7]), batch(rows[7:])])
    assert table.column("event_id").num_chunks == 3
    assert checks.check_rows(table, SPAN.start_us, SPAN.end_us) == check(rows)


def test_empty_batch():
    out = check([])
    assert (out.valid.num_rows, out.quarantined.num_rows, out.out_of_span) == (0, 0, 0)
    assert out.valid.schema == contract.arrow_schema()
    assert out.quarantined.schema == checks.quarantine_schema()
    assert checks.reason_counts(out.quarantined) == {}
    assert checks.quarantine_lines(out.quarantined) == []


def test_empty_span_is_an_error():
    with pytest.raises(ValueError, match="start_us must be below end_us"):
        checks.check_rows(batch([row()]), SPAN.end_us, SPAN.start_us)


def test_missing_column_is_an_error():
    with pytest.raises(ValueError, match="price"):
        checks.check_rows(table([row()]).drop(["price"]), SPAN.start_us, SPAN.end_us)


# ---------------------------------------------------------------------------------------------
# Quarantine lines


def test_quarantine_lines_round_trip():
    out = check([
        row(event_id="q1", user_id=None, properties=None, price=None),
        row(event_id="q2", event_timestamp=None, event_name="item_click"),
        row(event_id="q3", article_id="서울\u00a01", properties='{"q": "a\\"b"}'),
    ])
    assert [json.loads(line) for line in checks.quarantine_lines(out.quarantined)] == [
        {"event_id": "q1", "event_timestamp": "2026-11-26T03:04:05.123456Z",
         "event_name": "article_view", "source": "client", "user_id": None, "article_id": "a1",
         "region_id": "r1", "category_id": "c1", "price": None, "platform": "ios",
         "properties": None, "_error_reason": "missing_user_id",
         "_error_detail": "user_id is null for event_name=article_view"},
        {"event_id": "q2", "event_timestamp": None, "event_name": "item_click",
         "source": "client", "user_id": "u1", "article_id": "a1", "region_id": "r1",
         "category_id": "c1", "price": 1000, "platform": "ios", "properties": '{"rank": 3}',
         "_error_reason": "bad_timestamp", "_error_detail": "event_timestamp is null"},
        {"event_id": "q3", "event_timestamp": "2026-11-26T03:04:05.123456Z",
         "event_name": "article_view", "source": "client", "user_id": "u1",
         "article_id": "서울\u00a01", "region_id": "r1", "category_id": "c1", "price": 1000,
         "platform": "ios", "properties": '{"q": "a\\"b"}', "_error_reason": "malformed_id",
         "_error_detail": "article_id contains a U+00A0 character"},
    ]


def test_a_quarantine_line_with_unicode_line_breaks_reads_back_as_one_line(tmp_path):
    """U+2028, U+2029 and U+0085 in a quarantined row: the published file holds them as JSON
    escapes, every line reader (ours splits on \\n; str.splitlines on any line break) sees
    one line per row, and the row reads back as it was."""
    from transforms.publishing.readers import read_jsonl_file
    from transforms.publishing.writers import write_piece
    values = ["a\u2028b", "\u2029", "x\u0085y\u2028\u2029z"]
    out = check([row(event_id=f"q{i}", user_id=None, properties=json.dumps({"query": value}),
                     region_id=value) for i, value in enumerate(values)])
    lines = checks.quarantine_lines(out.quarantined)
    assert len(lines) == 3 and "\u2028" in lines[0]          # raw in the JSON text
    [record] = write_piece(str(tmp_path), "r1", "jsonl", "quarantine", "k", lines, 1 << 20)
    assert record.rows == 3
    path = str(tmp_path / record.name)
    raw = gzip.decompress(open(path, "rb").read()).decode("utf-8")
    assert not {"\u2028", "\u2029", "\u0085"} & set(raw)
    assert raw.count("\n") == 3 and len(raw.splitlines()) == 3
    read = read_jsonl_file(path)
    assert len(read) == 3
    assert [json.loads(line) for line in read] == [json.loads(line) for line in lines]
    assert [json.loads(line)["region_id"] for line in read] == values
    assert [json.loads(json.loads(line)["properties"])["query"] for line in read] == values
    # A file an earlier version wrote (the characters raw) also reads one line per row.
    older = tmp_path / "older.jsonl.gz"
    older.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode("utf-8")))
    assert read_jsonl_file(str(older)) == lines


def test_a_json_line_with_a_raw_line_break_is_refused():
    from transforms.publishing.writers import json_lines_bytes
    assert json_lines_bytes(['{"a": "\u2028"}', "{}"]) == b'{"a": "\\u2028"}\n{}\n'
    assert json_lines_bytes([]) == b""
    for bad in (['{"a": "x\ny"}'], ['{"a": "x\ry"}']):
        with pytest.raises(ValueError, match="raw line break"):
            json_lines_bytes(bad)


def test_quarantine_line_text_is_json_dumps_of_the_row():
    tricky = ['a"b', "back\\slash", "tab\tnew\nline", "\x00\x1f\x7f", "서울 😀", "\u2028", "", None]
    rows = [{**row(event_id=str(i), event_timestamp=T + i * US, price=-i), "properties": value,
             "platform": value, "_error_reason": "negative_price", "_error_detail": value}
            for i, value in enumerate(tricky)]
    quarantined = pa.RecordBatch.from_pylist(rows, schema=checks.quarantine_schema())
    expected = [
        json.dumps({**r, "event_timestamp": (T + i * US).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
                   ensure_ascii=False) for i, r in enumerate(rows)]
    assert checks.quarantine_lines(quarantined) == expected
    assert expected[1].startswith(
        '{"event_id": "1", "event_timestamp": "2026-11-26T03:04:05.123457Z"')


# ---------------------------------------------------------------------------------------------
# De-duplication


def table(rows):
    return pa.Table.from_pylist(rows, schema=contract.arrow_schema())


def dedup_rows():
    return [
        # e1: the earliest timestamp wins.
        row(event_id="e1", event_timestamp=T + 2 * US, user_id="early-loser"),
        row(event_id="e1", event_timestamp=T, user_id="zz-winner"),
        row(event_id="e1", event_timestamp=T + US, user_id="a-loser"),
        # e2: same timestamp, event_name decides (byte order).
        row(event_id="e2", event_name=contract.ARTICLE_VIEW),
        row(event_id="e2", event_name=contract.ARTICLE_LIKE),
        # e3: same up to user_id; null first.
        row(event_id="e3", user_id="u0"),
        row(event_id="e3", user_id=None),
        # e4: same up to price; null first, then numeric order.
        row(event_id="e4", price=10),
        row(event_id="e4", price=9),
        row(event_id="e5", price=10),
        row(event_id="e5", price=None),
        # e6: same up to properties; byte order ("z" 0x7a < "é" 0xc3 0xa9, "Z" < "a").
        row(event_id="e6", properties='"é"'),
        row(event_id="e6", properties='"z"'),
        row(event_id="e7", properties='"a"'),
        row(event_id="e7", properties='"Z"'),
        # e8: exact duplicates.
        row(event_id="e8"), row(event_id="e8"), row(event_id="e8"),
        # e9: alone.
        row(event_id="e9"),
    ]


def test_deduplicate_keeps_the_smallest_row_per_event_id():
    kept, dropped = checks.deduplicate(table(dedup_rows()))
    assert dropped == 19 - 9
    assert kept.to_pylist() == [
        row(event_id="e1", event_timestamp=T, user_id="zz-winner"),
        row(event_id="e2", event_name=contract.ARTICLE_LIKE),
        row(event_id="e3", user_id=None),
        row(event_id="e4", price=9),
        row(event_id="e5", price=None),
        row(event_id="e6", properties='"z"'),
        row(event_id="e7", properties='"Z"'),
        row(event_id="e8"),
        row(event_id="e9"),
    ]
    assert kept.schema == contract.arrow_schema()


def test_deduplicate_ignores_input_order():
    rows = dedup_rows()
    expected = checks.deduplicate(table(rows))
    rng = random.Random(7)
    for _ in range(30):
        rng.shuffle(rows)
        for chunk in (len(rows), 4):
            shuffled = pa.Table.from_batches(
                [batch(rows[i:i + chunk]) for i in range(0, len(rows), chunk)])
            kept, dropped = checks.deduplicate(shuffled)
            assert (kept.to_pylist(), dropped) == (expected[0].to_pylist(), expected[1])


def test_deduplicate_every_permutation_of_ties():
    rows = [row(event_id="e", user_id=u, platform=p)
            for u, p in [("b", "ios"), ("a", "web"), ("a", None), (None, "web"), ("a", "ios")]]
    results = {json.dumps(checks.deduplicate(table(list(p)))[0].to_pylist(), default=str)
               for p in itertools.permutations(rows)}
    assert results == {json.dumps([row(event_id="e", user_id=None, platform="web")], default=str)}


def test_deduplicate_sorts_event_ids_in_byte_order():
    ids = ["b", "a", "Z", "é", "\uffff", "\U0001f600", "a0", "A", "서울"]
    kept, dropped = checks.deduplicate(table([row(event_id=i) for i in ids]))
    assert dropped == 0
    assert kept.column("event_id").to_pylist() == sorted(ids, key=lambda s: s.encode("utf-8"))


def test_arrow_sorts_strings_in_byte_order_nulls_first():
    rng = random.Random(3)
    alphabet = [chr(cp) for cp in (0x41, 0x61, 0x7f, 0xe9, 0x800, 0xfffd, 0xffff, 0x10000, 0x1f600)]
    values = ["".join(rng.choices(alphabet, k=rng.randrange(4))) for _ in range(500)] + [None] * 5
    order = pc.sort_indices(pa.table({"s": values}), sort_keys=[("s", "ascending")],
                            null_placement="at_start")
    present = [v for v in values if v is not None]
    assert pa.array(values).take(order).to_pylist() == [None] * 5 + sorted(
        present, key=lambda s: s.encode("utf-8"))


def test_deduplicate_empty_and_null_event_id():
    kept, dropped = checks.deduplicate(table([]))
    assert (kept.num_rows, dropped) == (0, 0)
    with pytest.raises(ValueError, match="null event_id"):
        checks.deduplicate(table([row(event_id=None)]))
