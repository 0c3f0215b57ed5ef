"""transforms/validation.py and schemas/events_schema.pbtxt."""

import datetime as dt
import json
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from schemas import contract
from transforms.common.anomalies import anomaly_dicts
from transforms.common.stats_html import render_stats_html
from transforms.ingest import day_files, validation
from transforms.ingest.validation import ANOMALIES, EMPTY_DAY, QUARANTINE_FRACTION, \
    ValidateDay, gate_decision, sample_mask, stats_batch
from tests.helpers.paths import ROOT

SCHEMA_PATH = os.path.join(ROOT, "schemas", "events_schema.pbtxt")
UTC = dt.timezone.utc


def _ts(*args) -> int:
    """Microseconds since the epoch of a UTC datetime."""
    return int(dt.datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000


def _batch(columns: dict) -> pa.RecordBatch:
    schema = contract.arrow_schema()
    return pa.RecordBatch.from_arrays(
        [pa.array(columns[f.name], f.type) for f in schema], schema=schema)


# ---------------------------------------------------------------- stats_batch


@pytest.mark.functions
def test_stats_batch_types_and_values():
    valid = _batch({
        "event_id": ["e1", "e2", "e3"],
        "event_timestamp": [_ts(2024, 5, 1, 0, 30), _ts(2024, 5, 1, 13, 0), _ts(2024, 5, 1, 23, 59)],
        "event_name": ["article_view", "search", "article_created"],
        "source": ["client", "client", "server"],
        "user_id": ["alice", "alice", None],
        "article_id": ["a1", None, "a2"],
        "region_id": ["r1", "r2", None],
        "category_id": ["c1", None, "c2"],
        "price": [15000, None, 0],
        "platform": ["ios", "web", "server"],
        "properties": ['{"q": 1, "referrer": "feed"}', '{"query": "alice 010-1234"}',
                       '{"reason": "moderation"}'],
    })
    out = stats_batch(valid)
    strings, ints = pa.list_(pa.string()), pa.list_(pa.int64())
    assert out.schema == pa.schema([
        ("event_name", strings), ("source", strings), ("user_bucket", ints),
        ("article_id", strings), ("region_id", strings), ("category_id", strings),
        ("price", ints), ("platform", strings), ("properties_position", ints),
        ("properties_surface", strings), ("properties_referrer", strings),
        ("properties_query_length", ints), ("properties_channel", strings),
        ("properties_reason", strings), ("properties_other_keys", ints),
        ("hour_of_day", ints)])
    got = out.to_pydict()
    bucket = got["user_bucket"][0][0]
    assert 0 <= bucket < validation.USER_BUCKETS
    assert got == {
        "event_name": [["article_view"], ["search"], ["article_created"]],
        "source": [["client"], ["client"], ["server"]],
        "user_bucket": [[bucket], [bucket], None],
        "article_id": [["a1"], None, ["a2"]],
        "region_id": [["r1"], ["r2"], None],
        "category_id": [["c1"], None, ["c2"]],
        "price": [[15000], None, [0]],
        "platform": [["ios"], ["web"], ["server"]],
        "properties_position": [None, None, None],
        "properties_surface": [None, None, None],
        "properties_referrer": [["feed"], None, None],
        "properties_query_length": [None, [14], None],
        "properties_channel": [None, None, None],
        "properties_reason": [None, None, ["moderation"]],
        "properties_other_keys": [[1], [0], [0]],
        "hour_of_day": [[0], [13], [23]],
    }
    # No raw user id anywhere, under any name.
    assert "user_id" not in out.schema.names and "event_id" not in out.schema.names
    assert "alice" not in repr(got)


@pytest.mark.functions
def test_stats_batch_columns_are_exactly_the_schema_features():
    schema = day_files.load_schema(SCHEMA_PATH)
    out = stats_batch(pa.RecordBatch.from_pylist([], schema=contract.arrow_schema()))
    assert out.num_rows == 0
    assert out.schema.names == [f.name for f in schema.feature]


@pytest.mark.functions
def test_user_buckets_all_null_and_empty():
    assert validation.user_buckets(pa.array([None, None], pa.string())).to_pylist() == [None, None]
    assert validation.user_buckets(pa.array([], pa.string())).to_pylist() == []


@pytest.mark.functions
def test_user_buckets_same_id_same_bucket_across_calls():
    first = validation.user_buckets(pa.array(["u1", "u2", None, "u1"])).to_pylist()
    second = validation.user_buckets(pa.array(["u2", "u1"])).to_pylist()
    assert first[0] == first[3] == second[1]
    assert first[1] == second[0]
    assert first[2] is None


@pytest.mark.functions
def test_stats_batches_by_source_cuts_to_environment_features():
    schema = day_files.load_schema(SCHEMA_PATH)
    features = {source: validation.environment_features(schema, env)
                for source, env in contract.ENVIRONMENTS.items()}
    valid = _batch({
        "event_id": ["e1", "e2", "e3"], "event_timestamp": [_ts(2024, 5, 1, 3)] * 3,
        "event_name": ["impression", "article_sold", "search"],
        "source": ["client", "server", "client"], "user_id": ["u1", "u2", "u3"],
        "article_id": ["a1", "a2", None], "region_id": ["r1"] * 3, "category_id": ["c1"] * 3,
        "price": [1, 2, None], "platform": ["ios", "server", "web"], "properties": [None] * 3})
    out = validation.stats_batches_by_source(valid, features, 1.0, 0)
    assert sorted(out) == ["client", "server"]
    assert out["client"].schema.names == list(features["client"])
    assert out["server"].schema.names == list(features["server"])
    assert set(features["client"]) ^ set(features["server"]) == {
        "user_bucket", "properties_position", "properties_surface", "properties_referrer",
        "properties_query_length", "properties_channel", "properties_reason"}
    assert out["client"].column("event_name").to_pylist() == [["impression"], ["search"]]
    assert out["server"].column("price").to_pylist() == [[2]]
    assert validation.stats_batches_by_source(valid.slice(0, 0), features, 1.0, 0) == {}
    bad = _batch({**valid.to_pydict(), "source": ["client", "backend", "client"]})
    with pytest.raises(ValueError, match="backend"):
        validation.stats_batches_by_source(bad, features, 1.0, 0)


# ---------------------------------------------------------------- sample_mask


def _ids(n):
    return pa.array([f"evt-{i:08d}" for i in range(n)])


@pytest.mark.functions
def test_sample_mask_deterministic_and_batch_independent():
    ids = _ids(10_000)
    whole = sample_mask(ids, 0.5, seed=7)
    np.testing.assert_array_equal(whole, sample_mask(ids, 0.5, seed=7))
    pieces = np.concatenate([sample_mask(ids.slice(a, b - a), 0.5, seed=7)
                             for a, b in [(0, 1), (1, 3333), (3333, 3334), (3334, 10_000)]])
    np.testing.assert_array_equal(whole, pieces)
    # Another seed picks other rows.
    assert (whole != sample_mask(ids, 0.5, seed=8)).sum() > 4000


@pytest.mark.functions
def test_sample_mask_fractions():
    ids = _ids(10_000)
    assert abs(sample_mask(ids, 0.5, seed=0).sum() - 5000) < 250
    assert abs(sample_mask(ids, 0.1, seed=0).sum() - 1000) < 100
    assert sample_mask(ids, 1.0, seed=0).all()
    assert not sample_mask(ids, 0.0, seed=0).any()
    # A smaller fraction keeps a subset of a larger one.
    assert not (sample_mask(ids, 0.1, seed=3) & ~sample_mask(ids, 0.5, seed=3)).any()
    with pytest.raises(ValueError, match="fraction"):
        sample_mask(ids, 1.5, seed=0)


# ---------------------------------------------------------------- gate_decision


def _counts(rows_read=1000, out_of_span=0, rows_quarantined=0, rows_valid=None,
            duplicates_dropped=0, input_anomalies=()):
    if rows_valid is None:
        rows_valid = rows_read - out_of_span - rows_quarantined - duplicates_dropped
    return {"rows_read": rows_read, "out_of_span": out_of_span,
            "rows_quarantined": rows_quarantined,
            "quarantined_by_reason": {"unknown_event_name": rows_quarantined} if rows_quarantined else {},
            "duplicates_dropped": duplicates_dropped, "rows_valid": rows_valid,
            "input_anomalies": list(input_anomalies), "missing_partitions": [], "new_columns": []}


ERROR = {"feature": "price", "severity": "ERROR", "description": "drift", "environment": "CLIENT"}
WARNING = {"feature": "price", "severity": "WARNING", "description": "meh", "environment": "CLIENT"}


@pytest.mark.functions
def test_gate_clean_day():
    assert gate_decision(_counts(), [WARNING], 0.05, False) == {
        "blessed": True, "overridden": False, "reasons": []}


@pytest.mark.functions
def test_gate_each_reason():
    assert gate_decision(_counts(rows_valid=0), [], 0.05, False) == {
        "blessed": False, "overridden": False, "reasons": [EMPTY_DAY]}
    # Every row out of the span: nothing in span is an empty day, not a 0/0 fraction.
    assert gate_decision(_counts(rows_read=10, out_of_span=10, rows_valid=0), [], 0.05, False) == {
        "blessed": False, "overridden": False, "reasons": [EMPTY_DAY]}
    assert gate_decision(_counts(), [ERROR], 0.05, False) == {
        "blessed": False, "overridden": False, "reasons": [ANOMALIES]}
    input_error = {"feature": "price", "severity": "ERROR", "description": "column missing"}
    assert gate_decision(_counts(input_anomalies=[input_error]), [], 0.05, False) == {
        "blessed": False, "overridden": False, "reasons": [ANOMALIES]}
    assert gate_decision(_counts(rows_quarantined=100), [], 0.05, False) == {
        "blessed": False, "overridden": False, "reasons": [QUARANTINE_FRACTION]}
    assert gate_decision(_counts(rows_quarantined=100), [ERROR], 0.05, False)["reasons"] == [
        ANOMALIES, QUARANTINE_FRACTION]


@pytest.mark.functions
def test_gate_threshold_is_strictly_under():
    # 50 of 1000 in span (100 out of span not counted) is exactly 0.05: not under.
    at = _counts(rows_read=1100, out_of_span=100, rows_quarantined=50)
    assert gate_decision(at, [], 0.05, False)["reasons"] == [QUARANTINE_FRACTION]
    below = _counts(rows_read=1100, out_of_span=100, rows_quarantined=49)
    assert gate_decision(below, [], 0.05, False)["blessed"] is True
    # max 0 refuses any quarantined row, max 1 accepts all but a fully quarantined day.
    assert gate_decision(_counts(rows_quarantined=1), [], 0.0, False)["blessed"] is False
    assert gate_decision(_counts(rows_quarantined=0), [], 0.0, False)["blessed"] is False


@pytest.mark.functions
def test_gate_override():
    assert gate_decision(_counts(rows_quarantined=100), [ERROR], 0.05, True) == {
        "blessed": True, "overridden": True, "reasons": [ANOMALIES, QUARANTINE_FRACTION]}
    # Nothing to override on a clean day.
    assert gate_decision(_counts(), [], 0.05, True) == {
        "blessed": True, "overridden": False, "reasons": []}
    # An empty day is never blessed.
    assert gate_decision(_counts(rows_valid=0), [], 0.05, True) == {
        "blessed": False, "overridden": False, "reasons": [EMPTY_DAY]}


@pytest.mark.functions
def test_gate_rejects_incomplete_counts():
    with pytest.raises(ValueError, match="input_anomalies"):
        gate_decision({"rows_read": 1, "out_of_span": 0, "rows_quarantined": 0,
                       "quarantined_by_reason": {}, "duplicates_dropped": 0, "rows_valid": 1},
                      [], 0.05, False)


# ---------------------------------------------------------------- schema


@pytest.mark.functions
def test_schema_environments_and_domains():
    schema = day_files.load_schema(SCHEMA_PATH)
    assert list(schema.default_environment) == ["CLIENT", "SERVER"]
    assert set(contract.ENVIRONMENTS.values()) == {"CLIENT", "SERVER"}
    features = {f.name: f for f in schema.feature}
    with_domain = {name for name, f in features.items() if f.WhichOneof("domain_info") == "domain"}
    closed_keys = {f"properties_{key.name}": key.values for key in contract.PROPERTY_KEYS
                   if key.values}
    assert with_domain == {"event_name", "source", "platform"} | set(closed_keys)
    domains = {d.name: tuple(d.value) for d in schema.string_domain}
    assert set(domains) == {"event_name", "source", "platform"} | set(closed_keys)
    for name, values in closed_keys.items():
        assert features[name].domain == name
        assert domains[name] == values + (contract.OTHER_VALUE,)
    assert set(domains["event_name"]) == set(contract.EVENT_NAMES)
    assert len(domains["event_name"]) == len(contract.EVENT_NAMES)
    assert domains["source"] == contract.SOURCES
    assert domains["platform"] == contract.PLATFORMS
    for name in ("article_id", "region_id", "category_id", "user_bucket"):
        assert features[name].WhichOneof("domain_info") in (None, "int_domain")
        assert features[name].domain == ""
    assert "user_id" not in features and "event_id" not in features
    assert "properties" not in features and "properties_query" not in features
    assert features["user_bucket"].int_domain.max == validation.USER_BUCKETS - 1
    for name in ("event_name", "source", "hour_of_day"):
        assert features[name].presence.min_fraction == 1.0


@pytest.mark.functions
def test_schema_environment_features_and_drift():
    schema = day_files.load_schema(SCHEMA_PATH)
    everything = [f.name for f in schema.feature]
    server_keys = {f"properties_{k.name}" for k in contract.PROPERTY_KEYS
                   if set(k.events) <= set(contract.SERVER_EVENTS)}
    client_keys = {f"properties_{k.name}" + ("_length" if k.free_text else "")
                   for k in contract.PROPERTY_KEYS if set(k.events) <= set(contract.CLIENT_EVENTS)}
    assert server_keys == {"properties_channel", "properties_reason"}
    assert validation.environment_features(schema, "CLIENT") == tuple(
        n for n in everything if n not in server_keys)
    assert validation.environment_features(schema, "SERVER") == tuple(
        n for n in everything if n != "user_bucket" and n not in client_keys)
    l_infinity = {f.name for f in schema.feature if f.drift_comparator.HasField("infinity_norm")}
    jsd = {f.name for f in schema.feature
           if f.drift_comparator.HasField("jensen_shannon_divergence")}
    assert l_infinity == {"event_name", "source", "platform", "region_id", "category_id"}
    assert jsd == {"price", "hour_of_day"}


# ---------------------------------------------------------------- plain I/O helpers


def _write_summary(output_dir, day, blessed, overridden=None):
    directory = day_files.day_dir(str(output_dir), day)
    os.makedirs(directory, exist_ok=True)
    summary = {"blessed": blessed}
    if overridden is not None:
        summary["overridden"] = overridden
    with open(os.path.join(directory, day_files.SUMMARY_FILE), "w") as handle:
        json.dump(summary, handle)


@pytest.mark.functions
def test_find_previous_blessed(tmp_path):
    assert day_files.find_previous_blessed(str(tmp_path), dt.date(2024, 5, 10)) is None
    _write_summary(tmp_path, "2024-05-07", True)
    _write_summary(tmp_path, "2024-05-08", True)
    _write_summary(tmp_path, "2024-05-09", False)
    _write_summary(tmp_path, "2024-05-10", True)  # the run date itself: not before it
    _write_summary(tmp_path, "2024-05-11", True)
    os.makedirs(tmp_path / "validation" / "dt=2024-05-09b")
    assert day_files.find_previous_blessed(str(tmp_path), dt.date(2024, 5, 10)) == "2024-05-08"
    assert day_files.find_previous_blessed(str(tmp_path), dt.date(2024, 5, 8)) == "2024-05-07"
    assert day_files.find_previous_blessed(str(tmp_path), dt.date(2024, 5, 7)) is None


@pytest.mark.functions
def test_find_previous_blessed_skips_overridden_days(tmp_path):
    """A day blessed only through --allow_anomalies is never a drift baseline."""
    _write_summary(tmp_path, "2024-05-06", True, overridden=False)
    _write_summary(tmp_path, "2024-05-07", True, overridden=True)
    _write_summary(tmp_path, "2024-05-08", False, overridden=False)
    assert day_files.find_previous_blessed(str(tmp_path), dt.date(2024, 5, 9)) == "2024-05-06"
    assert day_files.find_previous_blessed(str(tmp_path), dt.date(2024, 5, 7)) == "2024-05-06"
    _write_summary(tmp_path, "2024-05-06", True, overridden=True)
    assert day_files.find_previous_blessed(str(tmp_path), dt.date(2024, 5, 9)) is None


@pytest.mark.functions
def test_tfrecord_round_trips_through_tfdv(tmp_path):
    import tensorflow_data_validation as tfdv

    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=3)
    dataset.features.add(name="price", type=statistics_pb2.FeatureNameStatistics.INT)
    path = tmp_path / "s.tfrecord"
    path.write_bytes(day_files.tfrecord_bytes(stats.SerializeToString()))
    assert tfdv.load_statistics(str(path)) == stats


@pytest.mark.functions
def test_anomalies_text_round_trips(tmp_path):
    import tensorflow_data_validation as tfdv

    client = anomalies_pb2.Anomalies(data_missing=True)
    server = anomalies_pb2.Anomalies()
    server.anomaly_info["price"].description = "x"
    server.baseline.feature.add(name="price")
    for source, message in (("client", client), ("server", server)):
        (tmp_path / day_files.ANOMALIES_FILES[source]).write_text(
            day_files.anomalies_text(message))
        assert tfdv.load_anomalies_text(
            str(tmp_path / day_files.ANOMALIES_FILES[source])) == message
    assert day_files.ANOMALIES_FILES == {"client": "anomalies_client.pbtxt",
                                          "server": "anomalies_server.pbtxt"}


@pytest.mark.functions
def test_anomaly_dicts():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["price"]
    info.severity = anomalies_pb2.AnomalyInfo.ERROR
    info.description = "too big"
    assert anomaly_dicts(anomalies, "SERVER") == [
        {"feature": "price", "severity": "ERROR", "description": "too big", "environment": "SERVER"}]
    assert anomaly_dicts(anomalies_pb2.Anomalies(data_missing=True), "CLIENT") == [
        {"feature": "", "severity": "ERROR", "environment": "CLIENT",
         "description": "no CLIENT rows: the statistics are empty"}]


# ---------------------------------------------------------------- ValidateDay options


@pytest.mark.functions
@pytest.mark.parametrize("kwargs, message", [
    ({"max_quarantine_fraction": 1.5}, "--max_quarantine_fraction"),
    ({"max_quarantine_fraction": -0.1}, "--max_quarantine_fraction"),
    ({"stats_sample_fraction": 0.0}, "--stats_sample_fraction"),
    ({"stats_sample_fraction": 2}, "--stats_sample_fraction"),
    ({"stats_seed": -1}, "--stats_seed"),
    ({"allow_anomalies": "yes"}, "--allow_anomalies"),
    ({"run_date": "2024-05-01"}, "--run_date"),
    ({"output_dir": ""}, "--output_dir"),
    ({"schema_path": "/nonexistent/schema.pbtxt"}, "--tfdv_schema"),
    ({"min_volume_ratio": 1.2}, "--min_volume_ratio"),
    ({"min_volume_ratio": -0.1}, "--min_volume_ratio"),
    ({"max_volume_ratio": 0.9}, "--max_volume_ratio"),
    ({"max_volume_ratio": float("inf")}, "--max_volume_ratio"),
    ({"max_volume_ratio": True}, "--max_volume_ratio"),
])
def test_validate_day_checks_options(kwargs, message):
    args = {"output_dir": "/tmp/x", "run_date": dt.date(2024, 5, 1), "schema_path": SCHEMA_PATH}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ValidateDay(**args)


# ---------------------------------------------------------------- ValidateDay in a pipeline


CLIENT_SHARES = (0.5, 0.3, 0.1, 0.05, 0.05)  # impression, article_view, article_like, chat_start, search
SERVER_SHARES = (0.6, 0.25, 0.15)             # article_created, article_sold, article_deleted


def _make_day(day: dt.date, n: int, seed: int, price_scale: int = 1,
              unknown_name_share: float = 0.0) -> pa.RecordBatch:
    """n valid-looking rows of `day`: 80% client, 20% server."""
    rng = np.random.default_rng(seed)
    is_client = rng.random(n) < 0.8
    names = np.where(is_client,
                     rng.choice(contract.CLIENT_EVENTS, n, p=CLIENT_SHARES),
                     rng.choice(contract.SERVER_EVENTS, n, p=SERVER_SHARES)).astype(object)
    if unknown_name_share:
        names[is_client & (rng.random(n) < unknown_name_share)] = "new_fancy_event"
    is_search = names == contract.SEARCH
    start = int(dt.datetime.combine(day, dt.time(0), tzinfo=UTC).timestamp()) * 1_000_000
    prices = (np.exp(rng.normal(10.0, 1.0, n)).astype(np.int64) // 100 * 100) * price_scale
    user = rng.integers(0, 500, n)
    columns = {
        "event_id": [f"{day}-{seed}-{i}" for i in range(n)],
        "event_timestamp": (start + rng.integers(0, 86_400_000_000, n)).tolist(),
        "event_name": names.tolist(),
        "source": np.where(is_client, contract.CLIENT, contract.SERVER).tolist(),
        "user_id": [f"user-{u}" if c or i % 2 else None for i, (u, c) in enumerate(zip(user, is_client))],
        "article_id": [None if s else f"article-{a}" for s, a in zip(is_search, rng.integers(0, 3000, n))],
        "region_id": [f"region-{r}" for r in rng.integers(0, 8, n)],
        "category_id": [f"category-{c}" for c in rng.integers(0, 12, n)],
        "price": [None if s else int(p) for s, p in zip(is_search, prices)],
        "platform": np.where(is_client, rng.choice(["ios", "android", "web"], n, p=[0.45, 0.45, 0.1]),
                             "server").tolist(),
        "properties": [None if i % 3 else '{"ab": "b"}' for i in range(n)],
    }
    return _batch(columns)


def _day_counts(valid: pa.RecordBatch, rows_quarantined: int = 20) -> dict:
    return {"rows_read": valid.num_rows + rows_quarantined + 30 + 10, "out_of_span": 30,
            "rows_quarantined": rows_quarantined,
            "quarantined_by_reason": {"missing_user_id": rows_quarantined},
            "duplicates_dropped": 10, "rows_valid": valid.num_rows, "input_anomalies": [],
              "missing_partitions": [], "new_columns": []}


def _run(output_dir, day, valid, counts, check=None, **options):
    """ValidateDay on `valid` (in 3 batches, none when it has no rows) under the FnApiRunner."""
    batches = [valid.slice(0, 1000), valid.slice(1000, 700), valid.slice(1700)]
    batches = [b for b in batches if b.num_rows]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        created = beam.Create(batches, reshuffle=False).with_output_types(pa.RecordBatch)
        summary = {"valid": p | "CreateValid" >> created,
                   "counts": p | "CreateCounts" >> beam.Create([counts])} | ValidateDay(
            output_dir=str(output_dir), run_date=day, schema_path=SCHEMA_PATH, **options)
        if check is not None:
            assert_that(summary | beam.Map(check), equal_to([True]))


def _files(output_dir, day):
    return os.path.join(str(output_dir), "validation", f"dt={day.isoformat()}")


def _summary(output_dir, day):
    with open(os.path.join(_files(output_dir, day), "summary.json")) as handle:
        return json.load(handle)


DAY = dt.date(2024, 5, 2)


@pytest.mark.composites
def test_validate_day_blesses_a_clean_day(tmp_path):
    import tensorflow_data_validation as tfdv

    valid = _make_day(DAY, 3000, seed=1)
    n_client = sum(1 for s in valid.column("source").to_pylist() if s == contract.CLIENT)
    # The volume counts as CheckEvents gives them (summary.json "volume").
    counts = dict(_day_counts(valid), read_by_source={"client": 2000, "other": 1060},
                  valid_by_source={"client": n_client, "server": 3000 - n_client},
                  read_by_partition={"2024-05-02": 3060}, valid_by_partition={"2024-05-02": 3000},
                  span_hours={"2024-05-02": 24.0})
    _run(tmp_path, DAY, valid, counts,
         check=lambda s: (s["blessed"], s["overridden"], s["reasons"], s["rows_valid"])
         == (True, False, [], 3000))
    directory = _files(tmp_path, DAY)
    assert sorted(os.listdir(directory)) == [
        "anomalies_client.pbtxt", "anomalies_server.pbtxt", "stats.html",
        "stats_client.tfrecord", "stats_server.tfrecord", "summary.json"]
    summary = _summary(tmp_path, DAY)
    assert summary == {
        "run_date": "2024-05-02", "blessed": True, "overridden": False, "reasons": [],
        "rows_read": counts["rows_read"], "out_of_span": 30, "rows_quarantined": 20,
        "quarantined_by_reason": {"missing_user_id": 20}, "duplicates_dropped": 10,
        "rows_valid": 3000, "missing_partitions": [], "new_columns": [],
        "quarantine_fraction": 20 / (3000 + 20 + 10),
        "max_quarantine_fraction": 0.05, "anomalies": [], "previous_blessed_date": None,
        "drift": [], "withdrawn": [],
        "stats_sample_fraction": 1.0, "stats_seed": 0,
        "stats_examples": {"client": n_client, "server": 3000 - n_client},
        "volume": {
            "by_source": {"client": {"rows_read": 2000, "rows_valid": n_client},
                          "other": {"rows_read": 1060, "rows_valid": 0},
                          "server": {"rows_read": 0, "rows_valid": 3000 - n_client}},
            "by_partition": {"2024-05-02": {"rows_read": 3060, "rows_valid": 3000,
                                            "span_hours": 24.0}}},
        # No day before it: nothing to compare (tests/ingest/test_volume.py).
        "volume_check": {
            "level_days": [], "level_since_override": None, "checked": False,
            "min_ratio": 0.6, "max_ratio": 3.0, "missing_partitions": [], "failed": [],
            "note": "only 0 day(s) in the 7 days before set the volume level (blessed, or "
                    "overridden for volume alone); the check needs 3 and passes",
            "figures": [
                {"scope": "source", "name": "client", "value": n_client, "level_days": 0,
                 "median": None, "ratio": None, "passed": True},
                {"scope": "source", "name": "server", "value": 3000 - n_client,
                 "level_days": 0, "median": None, "ratio": None, "passed": True},
                {"scope": "partition", "name": "2024-05-02", "span_hours": 24.0,
                 "value": 3000 / 24, "level_days": 0, "median": None, "ratio": None,
                 "passed": True}]}}
    for key in ("rows_read", "out_of_span", "rows_quarantined", "quarantined_by_reason",
                "duplicates_dropped", "rows_valid"):
        assert summary[key] == counts[key], key
    client = tfdv.load_statistics(os.path.join(directory, "stats_client.tfrecord"))
    server = tfdv.load_statistics(os.path.join(directory, "stats_server.tfrecord"))
    assert client.datasets[0].num_examples == n_client
    assert server.datasets[0].num_examples == 3000 - n_client
    client_features = {".".join(f.path.step) for f in client.datasets[0].features}
    server_features = {".".join(f.path.step) for f in server.datasets[0].features}
    assert client_features == set(validation.environment_features(
        day_files.load_schema(SCHEMA_PATH), "CLIENT"))
    assert server_features == set(validation.environment_features(
        day_files.load_schema(SCHEMA_PATH), "SERVER"))
    for name in ("anomalies_client.pbtxt", "anomalies_server.pbtxt"):
        anomalies = tfdv.load_anomalies_text(os.path.join(directory, name))
        assert not anomalies.anomaly_info and not anomalies.data_missing, name
    page = open(os.path.join(directory, "stats.html"), encoding="utf-8").read()
    assert "BLESSED" in page and "hour_of_day" in page


@pytest.mark.composites
def test_validate_day_refuses_an_empty_day(tmp_path):
    valid = pa.RecordBatch.from_pylist([], schema=contract.arrow_schema())
    counts = {"rows_read": 5, "out_of_span": 5, "rows_quarantined": 0, "quarantined_by_reason": {},
              "duplicates_dropped": 0, "rows_valid": 0, "input_anomalies": [],
              "missing_partitions": [], "new_columns": []}
    with pytest.raises(Exception, match="not blessed: empty_day, anomalies"):
        _run(tmp_path, DAY, valid, counts)
    summary = _summary(tmp_path, DAY)
    assert (summary["blessed"], summary["reasons"], summary["quarantine_fraction"]) == (
        False, [EMPTY_DAY, ANOMALIES], None)
    assert summary["stats_examples"] == {"client": 0, "server": 0}
    assert [(a["environment"], a["description"]) for a in summary["anomalies"]] == [
        ("DATASET", "empty day: 5 rows read, 0 valid; usually an upstream outage"),
        ("CLIENT", "no CLIENT rows: the statistics are empty"),
        ("SERVER", "no SERVER rows: the statistics are empty")]
    assert sorted(os.listdir(_files(tmp_path, DAY))) == [
        "anomalies_client.pbtxt", "anomalies_server.pbtxt", "stats.html",
        "stats_client.tfrecord", "stats_server.tfrecord", "summary.json"]


@pytest.mark.composites
def test_validate_day_refuses_unknown_names_and_high_quarantine(tmp_path):
    valid = _make_day(DAY, 2000, seed=2, unknown_name_share=0.05)
    counts = _day_counts(valid, rows_quarantined=400)
    with pytest.raises(Exception, match="not blessed") as caught:
        _run(tmp_path, DAY, valid, counts)
    assert "anomalies, quarantine_fraction" in str(caught.value)
    assert "summary.json" in str(caught.value)
    summary = _summary(tmp_path, DAY)
    assert (summary["blessed"], summary["overridden"], summary["reasons"]) == (
        False, False, [ANOMALIES, QUARANTINE_FRACTION])
    assert summary["rows_quarantined"] == 400
    assert [(a["environment"], a["feature"], a["severity"]) for a in summary["anomalies"]] == [
        ("DATASET", "user_id", "ERROR"), ("CLIENT", "event_name", "ERROR")]
    in_span = summary["rows_read"] - summary["out_of_span"]
    assert summary["anomalies"][0]["description"] == (
        f"{400 / in_span:.2%} of the rows in the span were quarantined (max 5.00%): "
        "missing_user_id 400")
    assert "new_fancy_event" in summary["anomalies"][1]["description"]


@pytest.mark.composites
def test_validate_day_refuses_an_input_anomaly(tmp_path):
    valid = _make_day(DAY, 2000, seed=3)
    counts = {**_day_counts(valid), "input_anomalies": [
        {"feature": "platform", "severity": "ERROR", "description": "column missing from the files"}]}
    with pytest.raises(Exception, match="column missing from the files"):
        _run(tmp_path, DAY, valid, counts)
    summary = _summary(tmp_path, DAY)
    assert summary["reasons"] == [ANOMALIES]
    assert summary["anomalies"] == [{"feature": "platform", "severity": "ERROR", "environment": "INPUT",
                                     "description": "column missing from the files"}]


def _add_raw_properties_feature(output_dir, day):
    """Adds a `properties` BYTES feature with a top value to each statistics file of `day`."""
    import tensorflow_data_validation as tfdv
    for name in day_files.STATS_FILES.values():
        path = os.path.join(_files(output_dir, day), name)
        stats = tfdv.load_statistics(path)
        for dataset in stats.datasets:
            feature = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
            feature.path.step.append("properties")
            feature.string_stats.common_stats.num_non_missing = dataset.num_examples
            feature.string_stats.top_values.add(value='{"query": "010-1234-5678"}', frequency=1)
        with open(path, "wb") as handle:
            handle.write(day_files.tfrecord_bytes(stats.SerializeToString()))
        assert "properties" in {f.path.step[0] for f in tfdv.load_statistics(path).datasets[0].features}
    # Its page, as that version rendered it: the top values of properties.
    directory = _files(output_dir, day)
    old = day_files.load_day_stats(str(output_dir), day.isoformat())
    page = render_stats_html(old, day_files.read_summary(directory))
    assert "010-1234-5678" in page
    with open(os.path.join(directory, day_files.HTML_FILE), "w", encoding="utf-8") as handle:
        handle.write(page)


@pytest.mark.composites
def test_validate_day_drift_against_last_blessed_day_and_an_override(tmp_path, capsys):
    # The previous day, blessed, its statistics from a seeded half sample.
    before = DAY - dt.timedelta(days=1)
    first = _make_day(before, 2000, seed=4)
    _run(tmp_path, before, first, _day_counts(first), stats_sample_fraction=0.5, stats_seed=11)
    summary = _summary(tmp_path, before)
    mask = sample_mask(first.column("event_id"), 0.5, 11)
    sources = np.array(first.column("source").to_pylist())
    assert (summary["blessed"], summary["rows_valid"], summary["stats_sample_fraction"]) == (
        True, 2000, 0.5)
    assert summary["stats_examples"] == {
        "client": int((mask & (sources == "client")).sum()),
        "server": int((mask & (sources == "server")).sum())}
    # Its statistics as a version before issue 32 wrote them: with the raw `properties`
    # text. The next days are compared with them all the same.
    _add_raw_properties_feature(tmp_path, before)

    # The same day with a unit change in prices (over a folder left by an earlier version,
    # whose single anomalies.pbtxt the rerun removes).
    valid = _make_day(DAY, 2000, seed=5, price_scale=1000)
    os.makedirs(_files(tmp_path, DAY))
    with open(os.path.join(_files(tmp_path, DAY), "anomalies.pbtxt"), "w") as handle:
        handle.write("# environment: CLIENT\n")
    with pytest.raises(Exception, match="not blessed"):
        _run(tmp_path, DAY, valid, _day_counts(valid))
    assert sorted(os.listdir(_files(tmp_path, DAY))) == [
        "anomalies_client.pbtxt", "anomalies_server.pbtxt", "stats.html",
        "stats_client.tfrecord", "stats_server.tfrecord", "summary.json"]
    # Each file is one Anomalies message with its baseline: what tfdv.load_anomalies_text
    # refused when both environments shared one file.
    import tensorflow_data_validation as tfdv
    for name in ("anomalies_client.pbtxt", "anomalies_server.pbtxt"):
        loaded = tfdv.load_anomalies_text(os.path.join(_files(tmp_path, DAY), name))
        assert loaded.HasField("baseline") and sorted(loaded.anomaly_info) == ["price"]
        assert "Jensen-Shannon" in loaded.anomaly_info["price"].description
    summary = _summary(tmp_path, DAY)
    assert (summary["blessed"], summary["reasons"], summary["previous_blessed_date"]) == (
        False, [ANOMALIES], "2024-05-01")
    assert [(a["environment"], a["feature"]) for a in summary["anomalies"]] == [
        ("CLIENT", "price"), ("SERVER", "price")]
    assert all("Jensen-Shannon" in a["description"] for a in summary["anomalies"])
    above = [(d["environment"], d["feature"], d["type"]) for d in summary["drift"]
             if d["value"] > d["threshold"]]
    assert above == [("CLIENT", "price", "JENSEN_SHANNON_DIVERGENCE"),
                     ("SERVER", "price", "JENSEN_SHANNON_DIVERGENCE")]
    assert {d["feature"] for d in summary["drift"]} == {
        "event_name", "source", "platform", "region_id", "category_id", "price", "hour_of_day"}

    # The override blesses it, and says so.
    _run(tmp_path, DAY, valid, _day_counts(valid), allow_anomalies=True,
         check=lambda s: (s["blessed"], s["overridden"]) == (True, True))
    summary = _summary(tmp_path, DAY)
    assert (summary["blessed"], summary["overridden"], summary["reasons"]) == (True, True, [ANOMALIES])
    assert len(summary["anomalies"]) == 2

    # An overridden day is not the next day's baseline: the day after it, with normal
    # prices, is compared with the day before it and blessed (against the overridden
    # day it would drift on price and be refused).
    after = DAY + dt.timedelta(days=1)
    third = _make_day(after, 2000, seed=6)
    _run(tmp_path, after, third, _day_counts(third))
    summary = _summary(tmp_path, after)
    assert (summary["blessed"], summary["overridden"], summary["reasons"],
            summary["previous_blessed_date"]) == (True, False, [], "2024-05-01")

    # The documented rewrite takes the raw properties out of the earlier day's statistics
    # and page; every other file of the validated days stays as it was.
    _rewrite_the_days_before_issue_32(tmp_path, [before, DAY, after], capsys)


def _validation_files(output_dir, days):
    """(day, name) -> bytes of each validation file (the local store's _cas- counters of a
    compare-and-swap left out)."""
    return {(day, name): open(os.path.join(_files(output_dir, day), name), "rb").read()
            for day in days for name in sorted(os.listdir(_files(output_dir, day)))
            if not name.startswith("_cas-")}


def _rewrite_the_days_before_issue_32(output_dir, days, capsys):
    import tensorflow_data_validation as tfdv
    from beam_jobs import rewrite_stats
    first = days[0]
    kept = _validation_files(output_dir, days)
    assert rewrite_stats.main([f"--output_dir={output_dir}"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{first}  rewritten  (features removed: client 1, server 1)",
        f"{days[1]}  clean  (features removed: client 0, server 0)",
        f"{days[2]}  clean  (features removed: client 0, server 0)",
        f"3 day(s) read under {output_dir}"]
    now = _validation_files(output_dir, days)
    assert set(now) == set(kept)
    changed = {key for key in kept if kept[key] != now[key]}
    assert changed == {(first, name) for name in (
        "stats_client.tfrecord", "stats_server.tfrecord", day_files.HTML_FILE)}
    for name in day_files.STATS_FILES.values():
        stats = tfdv.load_statistics(os.path.join(_files(output_dir, first), name))
        names = [f.path.step[0] for f in stats.datasets[0].features]
        assert "properties" not in names and "price" in names
    page = now[(first, day_files.HTML_FILE)].decode("utf-8")
    assert "010-1234-5678" not in page and "<h3>price</h3>" in page and "BLESSED" in page
    # A second pass finds every day clean and writes nothing.
    assert rewrite_stats.main([f"--output_dir={output_dir}", f"--from_date={first}",
                               f"--to_date={days[1]}"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"{first}  clean  (features removed: client 0, server 0)",
        f"{days[1]}  clean  (features removed: client 0, server 0)"]
    assert _validation_files(output_dir, days) == now


@pytest.mark.functions
def test_gate_anomalies_name_the_gate_reasons_in_words():
    counts = {"rows_read": 1000, "out_of_span": 0, "rows_quarantined": 300,
              "quarantined_by_reason": {"negative_price": 20, "unknown_event_name": 280},
              "duplicates_dropped": 0, "rows_valid": 700, "input_anomalies": [],
              "missing_partitions": [], "new_columns": []}
    assert validation.gate_anomalies(counts, [QUARANTINE_FRACTION], 0.05) == [
        {"feature": "event_name", "severity": "ERROR", "environment": "DATASET",
         "description": "30.00% of the rows in the span were quarantined (max 5.00%): "
                        "unknown_event_name 280, negative_price 20"}]
    assert validation.gate_anomalies(counts, [], 0.05) == []
    empty = dict(counts, rows_read=0, rows_quarantined=0, quarantined_by_reason={}, rows_valid=0)
    assert validation.gate_anomalies(empty, [EMPTY_DAY], 0.05) == [
        {"feature": "", "severity": "ERROR", "environment": "DATASET",
         "description": "empty day: 0 rows read, 0 valid; usually an upstream outage"}]


@pytest.mark.functions
def test_a_refused_day_is_withdrawn_before_its_summary_is_written(tmp_path, monkeypatch):
    """validate_day, refusing an empty day that was published and blessed before: the old
    summary.json is gone when the withdrawal runs, every kind but the quarantine loses
    _SUCCESS, and the new summary.json lists what was withdrawn."""
    from transforms.publishing import latest, protocol, writers
    out, day = str(tmp_path), DAY.isoformat()
    _write_summary(tmp_path, day, True, overridden=False)
    for kind in ("validated", "cooccurrence", "examples/skipgram", "quarantine"):
        final = os.path.join(out, kind, f"dt={day}")
        records = list(writers.write_piece(final, "r1", "jsonl", "lines", "k", ["{}"], 1 << 20))
        protocol.publish_day(final, "r1", records, {})
    summary_path = os.path.join(_files(tmp_path, DAY), day_files.SUMMARY_FILE)
    seen = []

    def withdraw(output_dir, run_date, bases=None):
        seen.append(os.path.exists(summary_path))
        return latest.withdraw_day(output_dir, run_date, bases)

    monkeypatch.setattr(validation, "withdraw_day", withdraw)
    empty = statistics_pb2.DatasetFeatureStatisticsList()
    empty.datasets.add(num_examples=0)
    counts = {"rows_read": 5, "out_of_span": 5, "rows_quarantined": 0, "quarantined_by_reason": {},
              "duplicates_dropped": 0, "rows_valid": 0, "input_anomalies": [],
              "missing_partitions": [], "new_columns": []}
    summary, path = validation.validate_day(
        {contract.CLIENT: empty, contract.SERVER: empty}, counts,
        day_files.load_schema(SCHEMA_PATH), out, DAY, 0.05, False, 1.0, 0)
    assert seen == [False]
    assert (summary["blessed"], summary["withdrawn"]) == (
        False, ["cooccurrence", "examples/skipgram", "validated"])
    assert _summary(tmp_path, DAY) == summary and path == summary_path
    assert [os.path.exists(os.path.join(out, kind, f"dt={day}", "_SUCCESS"))
            for kind in ("validated", "cooccurrence", "examples/skipgram", "quarantine")] == [
        False, False, False, True]
