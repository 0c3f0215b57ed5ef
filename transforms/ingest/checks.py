"""Row checks, the quarantine's line format and de-duplication, as plain functions over Arrow.

The lead wraps these in DoFns; nothing here imports Beam. Every check is vectorised with
pyarrow.compute and numpy; the only per-value Python work is JSON parsing of the *distinct*
`properties` values and formatting the details of the *distinct* failing values.

Row accounting of `check_rows`, in this order:
1. out_of_span: a non-null event_timestamp outside [start_us, end_us). Counted and dropped,
   whatever else is wrong with the row.
2. quarantined: the first failing check in `contract.REASONS` order.
3. valid: the rest, with legacy event names mapped to their canonical name.
"""

import json
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas import contract

ERROR_REASON = "_error_reason"
ERROR_DETAIL = "_error_detail"

# An id must not contain a separator (Unicode category Z: Zs, Zl, Zp) or a control (Cc).
# RE2 syntax, run by pyarrow.compute; tests compare it with unicodedata.category.
BAD_ID_CHAR_RE = r"[\p{Z}\p{Cc}]"

# Reason code per row: 0 for a passing row, REASONS.index(reason) + 1 for a failing one.
_CODES = {reason: code for code, reason in enumerate(contract.REASONS, start=1)}

# Sort order that makes de-duplication independent of input order: every column after
# event_id, timestamp first, then the contract order.
DEDUP_SORT_COLUMNS = ("event_timestamp",) + tuple(
    name for name in contract.COLUMN_NAMES if name not in ("event_id", "event_timestamp"))


class CheckedBatch(NamedTuple):
    valid: pa.RecordBatch  # contract schema, event_name normalised
    quarantined: pa.RecordBatch  # quarantine_schema(), original values
    out_of_span: int


def quarantine_schema() -> pa.Schema:
    """The contract schema plus the reason code and a human-readable detail."""
    return contract.arrow_schema().append(pa.field(ERROR_REASON, pa.string())).append(
        pa.field(ERROR_DETAIL, pa.string()))


# ---------------------------------------------------------------------------------------------
# Row checks


def check_rows(batch: Union[pa.RecordBatch, pa.Table], start_us: int, end_us: int) -> CheckedBatch:
    """Split `batch` into valid rows, quarantined rows and the count of rows outside the span
    [start_us, end_us) (UTC microseconds since the epoch). Input order is kept in both outputs."""
    if not start_us < end_us:
        raise ValueError(f"span [{start_us}, {end_us}) is empty: start_us must be below end_us")
    batch = _as_contract_batch(batch)
    n = batch.num_rows
    col = {name: batch.column(name) for name in contract.COLUMN_NAMES}

    ts_us = col["event_timestamp"].cast(pa.int64())
    ts_present = _np(pc.is_valid(ts_us))
    ts_values = ts_us.fill_null(0).to_numpy(zero_copy_only=False)
    out_of_span = ts_present & ((ts_values < start_us) | (ts_values >= end_us))

    name = col["event_name"]
    normalised = _normalise_event_names(name)
    is_client = _is_in(normalised, contract.CLIENT_EVENTS)
    is_server = _is_in(normalised, contract.SERVER_EVENTS)
    source = col["source"]
    source_ok = (is_client & _np(pc.equal(source, contract.CLIENT))) | (
        is_server & _np(pc.equal(source, contract.SERVER)))
    id_problems = {c: _malformed_ids(col[c]) for c in contract.ID_COLUMNS}

    # Each mask may also be true on rows that an earlier check fails; filling the codes in
    # reverse order of precedence leaves every row with its first failing check.
    masks = {
        "missing_event_id": _np(pc.is_null(col["event_id"])),
        "bad_timestamp": ~ts_present,
        "unknown_event_name": ~(is_client | is_server),
        "source_mismatch": ~source_ok,
        "missing_user_id": _is_in(normalised, contract.USER_REQUIRED_EVENTS)
        & _np(pc.is_null(col["user_id"])),
        "missing_article_id": ~_is_in(normalised, contract.ARTICLE_OPTIONAL_EVENTS)
        & _np(pc.is_null(col["article_id"])),
        "malformed_id": np.logical_or.reduce(list(id_problems.values())),
        "negative_price": _np(pc.less(col["price"], 0)),
    }
    # JSON parsing is the one costly check: run it only on rows it can decide.
    earlier = contract.REASONS[:contract.REASONS.index("bad_properties")]
    checked = ~out_of_span & ~np.logical_or.reduce(
        [masks[r] for r in earlier] + [np.zeros(n, dtype=bool)])
    properties_error = _properties_errors(col["properties"], checked)
    masks["bad_properties"] = checked & properties_error.failed

    codes = np.zeros(n, dtype=np.int8)
    for reason in reversed(contract.REASONS):
        codes[masks[reason]] = _CODES[reason]
    codes[out_of_span] = 0

    valid_rows = (codes == 0) & ~out_of_span
    valid_arrays = [normalised if f == "event_name" else col[f] for f in contract.COLUMN_NAMES]
    valid = pa.RecordBatch.from_arrays(valid_arrays, schema=contract.arrow_schema()).filter(
        pa.array(valid_rows))

    bad_index = np.flatnonzero(codes)
    bad_codes = codes[bad_index]
    reasons = pc.take(pa.array((None,) + contract.REASONS, pa.string()), pa.array(bad_codes))
    details = _details(col, id_problems, properties_error, bad_index, bad_codes)
    quarantined = pa.RecordBatch.from_arrays(
        [batch.column(f).take(pa.array(bad_index)) for f in contract.COLUMN_NAMES]
        + [reasons, details],
        schema=quarantine_schema())
    return CheckedBatch(valid, quarantined, int(out_of_span.sum()))


def _as_contract_batch(data: Union[pa.RecordBatch, pa.Table]) -> pa.RecordBatch:
    """The contract columns of `data`, in contract order and types, as one RecordBatch."""
    missing = [name for name in contract.COLUMN_NAMES if name not in data.schema.names]
    if missing:
        raise ValueError(f"input lacks contract columns {missing}; it has {data.schema.names}")
    schema = contract.arrow_schema()
    return pa.RecordBatch.from_arrays(
        [contract_column(data, f.name, f.type) for f in schema], schema=schema)


def contract_column(data: Union[pa.RecordBatch, pa.Table], name: str,
                    wanted: Optional[pa.DataType] = None) -> pa.Array:
    """One column of `data` as one array of its contract type (`wanted`, looked up when
    None)."""
    column = data.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    wanted = wanted or contract.arrow_schema().field(name).type
    return column if column.type == wanted else column.cast(wanted)


def _np(mask: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null as False."""
    return mask.fill_null(False).to_numpy(zero_copy_only=False)


def _is_in(values: pa.Array, names: Sequence[str]) -> np.ndarray:
    return _np(pc.is_in(values, value_set=pa.array(names, pa.string())))


def _normalise_event_names(names: pa.Array) -> pa.Array:
    """Legacy aliases mapped to their canonical names; everything else unchanged."""
    aliases = pa.array(list(contract.LEGACY_ALIASES), pa.string())
    targets = pa.array(list(contract.LEGACY_ALIASES.values()), pa.string())
    return pc.coalesce(pc.take(targets, pc.index_in(names, value_set=aliases)), names)


def _malformed_ids(ids: pa.Array) -> np.ndarray:
    """Per row: the id is present and empty, too long or holds a separator or control."""
    length = pc.utf8_length(ids)
    out_of_range = pc.or_(pc.equal(length, 0), pc.greater(length, contract.MAX_ID_LENGTH))
    return _np(pc.or_(out_of_range, pc.match_substring_regex(ids, BAD_ID_CHAR_RE)))


# ---------------------------------------------------------------------------------------------
# properties: RFC 8259 JSON


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed (RFC 8259)")


# parse_int/parse_float keep the number text: validity is all we need, and int() would reject
# integers longer than sys.get_int_max_str_digits() that RFC 8259 allows.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=str, parse_float=str,
                            strict=True)


def json_error(text: str) -> Optional[str]:
    """None if `text` is one JSON text per RFC 8259 (any top-level value), else why not."""
    try:
        _DECODER.decode(text)
    except RecursionError:
        # RFC 8259 section 9 lets a parser limit nesting depth; Python's is its recursion limit.
        return "nested too deeply to parse"
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        return str(err)
    return None


class _PropertiesErrors(NamedTuple):
    failed: np.ndarray  # per row; false where null or not checked
    indices: np.ndarray  # per row index into `dictionary`, -1 where null or not checked
    messages: List[Optional[str]]  # per distinct value, None when valid


def _properties_errors(properties: pa.Array, checked: np.ndarray) -> _PropertiesErrors:
    """Parse each distinct non-null `properties` value among the `checked` rows once."""
    indices = np.full(len(properties), -1, dtype=np.int64)
    rows = np.flatnonzero(checked)
    encoded = properties.take(pa.array(rows)).dictionary_encode()
    messages = [json_error(text) for text in encoded.dictionary.to_pylist()]
    indices[rows] = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    bad_values = np.array([m is not None for m in messages] + [False], dtype=bool)
    return _PropertiesErrors(bad_values[indices], indices, messages)


# ---------------------------------------------------------------------------------------------
# Details


def _details(col: Dict[str, pa.Array], id_problems: Dict[str, np.ndarray],
             properties_error: _PropertiesErrors, bad_index: np.ndarray,
             bad_codes: np.ndarray) -> pa.Array:
    """One detail string per quarantined row, built once per distinct failing value."""
    details = np.empty(len(bad_index), dtype=object)

    def fill(reason: str, keys: Sequence[pa.Array], fmt: Callable[..., str]) -> None:
        where = bad_codes == _CODES[reason]
        if where.any():
            rows = pa.array(bad_index[where])
            details[where] = _map_distinct([k.take(rows) for k in keys], fmt)

    fill("missing_event_id", [], lambda: "event_id is null")
    fill("bad_timestamp", [], lambda: "event_timestamp is null")
    fill("unknown_event_name", [col["event_name"]],
         lambda name: "event_name is null" if name is None
         else f"event_name={_quote(name)} is not a known event name")
    fill("source_mismatch", [col["event_name"], col["source"]], _source_mismatch_detail)
    fill("missing_user_id", [col["event_name"]],
         lambda name: f"user_id is null for event_name={name}")
    fill("missing_article_id", [col["event_name"]],
         lambda name: f"article_id is null for event_name={name}")

    # malformed_id names the first offending id column, and its first problem of
    # empty, too long, bad character.
    malformed = bad_codes == _CODES["malformed_id"]
    for name in contract.ID_COLUMNS:
        where = malformed & id_problems[name][bad_index]
        if where.any():
            ids = col[name].take(pa.array(bad_index[where]))
            bad_char = pc.extract_regex(ids, f"(?P<c>{BAD_ID_CHAR_RE})").field("c")
            details[where] = _map_distinct(
                [pc.utf8_length(ids), bad_char],
                lambda length, char, name=name: _malformed_id_detail(name, length, char))
        malformed &= ~where

    fill("negative_price", [col["price"]], lambda price: f"price={price} is negative")

    where = bad_codes == _CODES["bad_properties"]
    if where.any():
        messages = np.array(
            [f"properties is not valid JSON: {m}" for m in properties_error.messages], dtype=object)
        details[where] = messages[properties_error.indices[bad_index[where]]]
    return pa.array(details.tolist(), pa.string())


def _map_distinct(keys: Sequence[pa.Array], fmt: Callable[..., str]) -> np.ndarray:
    """fmt(*row values) for every row of `keys`, calling fmt once per distinct combination."""
    if not keys:
        return np.array([fmt()], dtype=object)
    combined = np.zeros(len(keys[0]), dtype=np.int64)
    for key in keys:
        encoded = key.dictionary_encode()
        width = len(encoded.dictionary) + 1
        combined = combined * width + encoded.indices.fill_null(width - 1).to_numpy(
            zero_copy_only=False)
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    values = [key.take(pa.array(first)).to_pylist() for key in keys]
    texts = np.array([fmt(*combo) for combo in zip(*values)], dtype=object)
    return texts[inverse]


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _source_mismatch_detail(name: str, source: Optional[str]) -> str:
    canonical = contract.LEGACY_ALIASES.get(name, name)
    needed = contract.CLIENT if canonical in contract.CLIENT_EVENTS else contract.SERVER
    got = "source is null" if source is None else f"source={_quote(source)}"
    return f"{got} but event_name={name} needs source={needed}"


def _malformed_id_detail(name: str, length: int, char: Optional[str]) -> str:
    if length == 0:
        return f"{name} is empty"
    if length > contract.MAX_ID_LENGTH:
        return f"{name} is {length} characters long (max {contract.MAX_ID_LENGTH})"
    return f"{name} contains a U+{ord(char):04X} character"


# ---------------------------------------------------------------------------------------------
# Quarantine output


def reason_counts(quarantined: pa.RecordBatch) -> Dict[str, int]:
    """Reason -> number of rows, for the reasons present, in contract.REASONS order."""
    counts = {
        entry["values"]: entry["counts"]
        for entry in pc.value_counts(quarantined.column(ERROR_REASON)).to_pylist()
    }
    return {reason: counts[reason] for reason in contract.REASONS if reason in counts}


def quarantine_lines(quarantined: pa.RecordBatch) -> List[str]:
    """One JSON object per row, as json.dumps(row, ensure_ascii=False) writes it: the contract
    columns (event_timestamp as ISO-8601 UTC with microseconds, null as null), then
    _error_reason and _error_detail. Built column by column; only strings that need escaping
    go through json.dumps. The writer escapes U+2028, U+2029 and U+0085 when it writes them
    (transforms.publishing.writers.json_lines_bytes)."""
    names = contract.COLUMN_NAMES + (ERROR_REASON, ERROR_DETAIL)
    if quarantined.num_rows == 0:
        return []
    parts = []
    for i, name in enumerate(names):
        column = quarantined.column(name)
        if name == "event_timestamp":
            column = _iso_utc(column)
        parts += [("{" if i == 0 else ", ") + json.dumps(name) + ": ", _json_values(column)]
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "").to_pylist()


# json.dumps(ensure_ascii=False) escapes only these characters in a string.
_JSON_ESCAPED_RE = r'["\\\x00-\x1f]'


def _json_values(column: pa.Array) -> pa.Array:
    """Each value as JSON text: a string quoted and escaped, an integer as digits, null as null."""
    if pa.types.is_integer(column.type):
        return column.cast(pa.string()).fill_null("null")
    text = pc.binary_join_element_wise('"', column, '"', "")
    needs_escape = _np(pc.match_substring_regex(column, _JSON_ESCAPED_RE))
    if needs_escape.any():
        encoded = column.filter(pa.array(needs_escape)).dictionary_encode()
        escaped = pa.array([json.dumps(value, ensure_ascii=False)
                            for value in encoded.dictionary.to_pylist()], pa.string())
        text = pc.replace_with_mask(text, pa.array(needs_escape), escaped.take(encoded.indices))
    return text.fill_null("null")


def _iso_utc(timestamps: pa.Array) -> pa.Array:
    """timestamp[us, UTC] as "YYYY-MM-DDTHH:MM:SS.ffffffZ" strings, null kept."""
    us = timestamps.cast(pa.int64())
    text = np.datetime_as_string(us.fill_null(0).to_numpy(zero_copy_only=False).astype(
        "datetime64[us]"), unit="us", timezone="UTC")
    return pa.array(text, pa.string(), mask=_np(pc.is_null(us)))


# ---------------------------------------------------------------------------------------------
# De-duplication


def deduplicate(table: pa.Table) -> Tuple[pa.Table, int]:
    """Keep one row per event_id: the smallest by event_timestamp, then by the other columns in
    contract order, nulls first, strings in byte order. The kept rows come sorted by event_id
    (byte order), so neither the kept rows nor their order depend on the input order.
    Returns (kept, number of rows dropped). event_id must be non-null (valid rows)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if table.column("event_id").null_count:
        raise ValueError("deduplicate takes valid rows only; some have a null event_id")
    if table.num_rows == 0:
        return table, 0
    keys = [("event_id", "ascending")] + [(name, "ascending") for name in DEDUP_SORT_COLUMNS]
    order = pc.sort_indices(table, sort_keys=keys, null_placement="at_start")
    ids = table.column("event_id").take(order).combine_chunks()
    first = np.ones(len(ids), dtype=bool)
    first[1:] = _np(pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)))
    kept = table.take(pc.filter(order, pa.array(first)))
    return kept, table.num_rows - kept.num_rows
