"""Dataset-level validation of one day with TFDV: statistics, schema and drift checks, the gate.

Input: the VALID rows (Arrow record batches with ``contract.arrow_schema()``) and
the one dict of row counts from the row checks. The day's rows are split by
``source`` into the CLIENT and SERVER environments of ``schemas/events_schema.pbtxt``;
each gets its own statistics, validated against the schema and against the
statistics of the last blessed day before the run date (drift). The gate blesses
the day or fails the pipeline, after writing ``<output_dir>/validation/dt=<run_date>/``
(statistics, anomalies, stats.html, and summary.json last; withdrawing a refused day
first). What the files hold and what a verdict means:
docs/validation.md#the-day-tfdv-statistics-drift-and-the-gate.

Statistics never see a raw user id: ``user_id`` becomes ``user_bucket``, a
1024-way hash bucket. With ~N/1024 users in each bucket it identifies nobody,
yet it still shows how many rows have a user and whether one user (a bot)
takes an outsized share. It is deterministic, so it needs no key to manage.
"""

import datetime as dt
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from schemas import contract
from transforms.common.anomalies import anomaly_dicts, drift_dicts
from transforms.common.properties import statistics_columns
from transforms.common.sharding import mix64, stable_hash
from transforms.common.stats_html import render_stats_html
from transforms.ingest.quarantine import volume_summary
from transforms.ingest.day_files import DayNotBlessedError, day_dir, find_previous_blessed, \
    load_day_stats, load_schema, remove_summary, window_summaries, write_day_outputs
from transforms.ingest.volume import DEFAULT_RATIOS as DEFAULT_VOLUME_RATIOS, VOLUME, \
    WINDOW_DAYS, check_volume, volume_descriptions
from transforms.publishing.latest import day_bases, withdraw_day
from transforms.publishing.protocol import check_claim

# Features derived by stats_batch (the rest keep their contract names).
HOUR_OF_DAY = "hour_of_day"
USER_BUCKET = "user_bucket"
USER_BUCKETS = 1024

# Contract columns left out of the statistics (user_id only as USER_BUCKET, properties only
# as its known keys parsed: transforms.common.properties.STATISTICS_FEATURES).
DROPPED_COLUMNS = ("event_id", "event_timestamp", "user_id", "properties")

# Gate reasons.
EMPTY_DAY = "empty_day"
ANOMALIES = "anomalies"
QUARANTINE_FRACTION = "quarantine_fraction"

# Environment label of the input anomalies (e.g. a contract column missing from the files).
INPUT_ENVIRONMENT = "INPUT"

COUNT_KEYS = ("rows_read", "out_of_span", "rows_quarantined", "quarantined_by_reason",
              "duplicates_dropped", "rows_valid", "input_anomalies", "missing_partitions",
              "new_columns")

_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------
# Feature batches and sampling.


def _as_list_column(values: pa.Array) -> pa.ListArray:
    """One-element lists of `values`; a null value becomes a null list."""
    valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(valid, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), values.drop_null(), mask=pa.array(~valid))


def user_buckets(user_ids: pa.Array) -> pa.Array:
    """int64 bucket in [0, USER_BUCKETS) of each user id; null stays null.
    Hashes each distinct id once."""
    encoded = pc.dictionary_encode(user_ids)
    buckets = pa.array(stable_hash(encoded.dictionary) % np.uint64(USER_BUCKETS),
                       pa.uint64()).cast(pa.int64())
    return buckets.take(encoded.indices)


def stats_batch(valid: pa.RecordBatch) -> pa.RecordBatch:
    """The feature batch TFDV's GenerateStatistics takes: every feature a list column
    (a null value -> a null list), no timestamp, no event_id, no raw user_id, no
    `properties` text.

    Columns: the contract's columns in order, with event_id and event_timestamp left
    out, user_id replaced by user_bucket and properties by its known keys parsed
    (transforms.common.properties.statistics_columns: no string a user or client sent),
    then hour_of_day (UTC hour of event_timestamp)."""
    names, columns = [], []
    for name in contract.COLUMN_NAMES:
        if name == "user_id":
            names.append(USER_BUCKET)
            columns.append(_as_list_column(user_buckets(valid.column(name))))
        elif name == "properties":
            for feature, values in statistics_columns(valid.column(name)).items():
                names.append(feature)
                columns.append(_as_list_column(values))
        elif name not in DROPPED_COLUMNS:
            names.append(name)
            columns.append(_as_list_column(valid.column(name)))
    names.append(HOUR_OF_DAY)
    columns.append(_as_list_column(pc.hour(valid.column(contract.PARTITION_COLUMN))))
    return pa.RecordBatch.from_arrays(columns, names=names)


def sample_mask(event_ids: pa.Array, fraction: float, seed: int) -> np.ndarray:
    """Which rows a `fraction` sample keeps: row i is kept when a seeded 64-bit hash of
    its event_id is below fraction * 2**64. Depends only on (id, seed), so it is
    the same however the ids are split into batches or workers. 1.0 keeps all,
    0.0 none. About 0.5 s for a million ids."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} must be in [0, 1]")
    n = len(event_ids)
    if fraction == 1.0:
        return np.ones(n, dtype=bool)
    if fraction == 0.0:
        return np.zeros(n, dtype=bool)
    salt = mix64(np.array([seed & _MASK64], dtype=np.uint64))[0]
    hashes = mix64(stable_hash(event_ids) ^ salt)
    return hashes < np.uint64(min(int(fraction * 2.0**64), _MASK64))


def environment_features(schema: schema_pb2.Schema, environment: str) -> Tuple[str, ...]:
    """Names of the schema's features expected in `environment`."""
    names = []
    for feature in schema.feature:
        if environment in feature.not_in_environment:
            continue
        if feature.in_environment and environment not in feature.in_environment:
            continue
        names.append(feature.name)
    return tuple(names)


def stats_batches_by_source(valid: pa.RecordBatch, features_by_source: Dict[str, Sequence[str]],
                            fraction: float, seed: int) -> Dict[str, pa.RecordBatch]:
    """The sampled feature batch of each source present in `valid`, cut to that
    source's environment features. Raises on a source outside the contract."""
    sources = set(valid.column("source").unique().to_pylist())
    unknown = sources - set(contract.SOURCES)
    if unknown:
        raise ValueError(f"valid rows with source {sorted(map(str, unknown))}: the row checks "
                         f"should have quarantined them (source must be one of {contract.SOURCES})")
    mask = sample_mask(valid.column("event_id"), fraction, seed)
    if not mask.all():
        valid = valid.filter(pa.array(mask))
    out = {}
    for source in contract.SOURCES:
        if source not in sources:
            continue
        rows = valid.filter(pc.equal(valid.column("source"), source))
        if rows.num_rows == 0:
            continue
        features = stats_batch(rows)
        names = list(features_by_source[source])
        out[source] = pa.RecordBatch.from_arrays(
            [features.column(name) for name in names], names=names)
    return out


# --------------------------------------------------------------------------
# The gate.


def check_counts(counts: dict) -> None:
    missing = [key for key in COUNT_KEYS if key not in counts]
    if missing:
        raise ValueError(f"the counts dict lacks {missing}; it needs {list(COUNT_KEYS)}")


def quarantine_fraction(counts: dict) -> Optional[float]:
    """rows_quarantined / rows in the span, None when the span had no rows."""
    in_span = counts["rows_read"] - counts["out_of_span"]
    if in_span <= 0:
        return None
    return counts["rows_quarantined"] / in_span


def gate_decision(counts: dict, anomalies: List[dict], max_quarantine_fraction: float,
                  allow_anomalies: bool, volume_check: Optional[dict] = None) -> dict:
    """{"blessed", "overridden", "reasons"} for a day.

    Reasons, in this order: "empty_day" (no valid row, or no row in the span),
    "anomalies" (an ERROR in `anomalies` or in counts["input_anomalies"]),
    "quarantine_fraction" (quarantined / rows in span is not strictly under the max),
    "volume" (a figure of `volume_check`, transforms.ingest.volume.check_volume, failed).
    `allow_anomalies` blesses a day that fails only on anomalies, the quarantine
    fraction and/or the volume, with overridden=True; an empty day is never blessed
    (nothing to publish, and it would become the next day's drift baseline)."""
    check_counts(counts)
    reasons = []
    fraction = quarantine_fraction(counts)
    if counts["rows_valid"] <= 0 or fraction is None:
        reasons.append(EMPTY_DAY)
    if any(a["severity"] == "ERROR" for a in list(anomalies) + list(counts["input_anomalies"])):
        reasons.append(ANOMALIES)
    if fraction is not None and not fraction < max_quarantine_fraction:
        reasons.append(QUARANTINE_FRACTION)
    if volume_check is not None and volume_check["failed"]:
        reasons.append(VOLUME)
    if not reasons:
        return {"blessed": True, "overridden": False, "reasons": []}
    if allow_anomalies and EMPTY_DAY not in reasons:
        return {"blessed": True, "overridden": True, "reasons": reasons}
    return {"blessed": False, "overridden": False, "reasons": reasons}


# The column each quarantine reason is about (for the gate's own anomalies).
REASON_COLUMNS = {
    "missing_event_id": "event_id", "bad_timestamp": "event_timestamp",
    "unknown_event_name": "event_name", "source_mismatch": "source",
    "missing_user_id": "user_id", "missing_article_id": "article_id",
    "malformed_id": "event_id, user_id, article_id, region_id, category_id",
    "negative_price": "price", "bad_properties": "properties",
}
GATE_ENVIRONMENT = "DATASET"


def gate_anomalies(counts: dict, reasons: List[str], max_quarantine_fraction: float,
                   volume_check: Optional[dict] = None) -> List[dict]:
    """Readable ERROR anomalies for the gate's own reasons (an empty day, too many
    quarantined rows, a volume out of its range), so summary.json says in words why a
    day was refused."""
    found = []
    if EMPTY_DAY in reasons:
        found.append({"feature": "", "severity": "ERROR", "environment": GATE_ENVIRONMENT,
                      "description": f"empty day: {counts['rows_read']} rows read, "
                                     f"{counts['rows_valid']} valid; usually an upstream outage"})
    if QUARANTINE_FRACTION in reasons:
        by_reason = sorted(counts["quarantined_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
        top = by_reason[0][0] if by_reason else ""
        found.append({
            "feature": REASON_COLUMNS.get(top, ""), "severity": "ERROR",
            "environment": GATE_ENVIRONMENT,
            "description": f"{quarantine_fraction(counts):.2%} of the rows in the span were "
                           f"quarantined (max {max_quarantine_fraction:.2%}): "
                           + ", ".join(f"{reason} {n:,}" for reason, n in by_reason)})
    if VOLUME in reasons:
        found.extend({"feature": "", "severity": "ERROR", "environment": GATE_ENVIRONMENT,
                      "description": description}
                     for description in volume_descriptions(volume_check))
    return found


def validate_environments(stats: Dict[str, statistics_pb2.DatasetFeatureStatisticsList],
                          schema: schema_pb2.Schema,
                          previous: Optional[Dict[str, statistics_pb2.DatasetFeatureStatisticsList]],
                          ) -> Dict[str, anomalies_pb2.Anomalies]:
    """tfdv.validate_statistics of each source's statistics in its environment,
    with drift against `previous` (the last blessed day's statistics) when given."""
    import tensorflow_data_validation as tfdv  # heavy; imported where it is used

    return {
        source: tfdv.validate_statistics(
            stats[source], schema, environment=contract.ENVIRONMENTS[source],
            previous_statistics=None if previous is None else previous[source])
        for source in contract.SOURCES
    }


def not_blessed_message(summary: dict, summary_path: str) -> str:
    lines = [f"day {summary['run_date']} is not blessed: {', '.join(summary['reasons'])}"]
    if summary["quarantine_fraction"] is not None:
        lines.append(f"quarantine fraction {summary['quarantine_fraction']:.4f} "
                     f"(max {summary['max_quarantine_fraction']})")
    for a in summary["anomalies"]:
        lines.append(f"[{a['environment']}] {a['severity']} {a['feature'] or '(dataset)'}: "
                     f"{a['description']}")
    lines.append(f"see {summary_path}")
    return "\n".join(lines)


def _num_examples(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return sum(dataset.num_examples for dataset in stats.datasets)


def validate_day(stats: Dict[str, statistics_pb2.DatasetFeatureStatisticsList], counts: dict,
                 schema: schema_pb2.Schema, output_dir: str, run_date: dt.date,
                 max_quarantine_fraction: float, allow_anomalies: bool,
                 stats_sample_fraction: float, stats_seed: int,
                 bases: Optional[Dict[str, int]] = None,
                 volume_ratios: Tuple[float, float] = DEFAULT_VOLUME_RATIOS,
                 ) -> Tuple[dict, str]:
    """Validates the day, writes its files, returns (summary, summary.json path).

    A refused day is withdrawn first (transforms.publishing.latest.withdraw_day: every published
    kind of the day but the quarantine loses its _SUCCESS, if still at the generation in
    `bases`, read when the run started), after the old summary.json is removed and
    before the new one is written, so a blessed summary.json and the published outputs
    never disagree; summary["withdrawn"] lists the kind folders."""
    check_counts(counts)
    previous_day = find_previous_blessed(output_dir, run_date)
    previous = None if previous_day is None else load_day_stats(output_dir, previous_day)
    anomalies = validate_environments(stats, schema, previous)
    found = [a for source in contract.SOURCES
             for a in anomaly_dicts(anomalies[source], contract.ENVIRONMENTS[source])]
    drift = [d for source in contract.SOURCES
             for d in drift_dicts(anomalies[source], contract.ENVIRONMENTS[source])]
    volume = volume_summary(counts)
    volume_check = check_volume(volume, counts["missing_partitions"],
                                window_summaries(output_dir, run_date, WINDOW_DAYS), run_date,
                                *volume_ratios)
    gate = gate_decision(counts, found, max_quarantine_fraction, allow_anomalies, volume_check)
    inputs = [{"feature": a["feature"], "severity": a["severity"],
               "description": a["description"], "environment": INPUT_ENVIRONMENT}
              for a in counts["input_anomalies"]]
    summary = {
        "run_date": run_date.isoformat(),
        "blessed": gate["blessed"],
        "overridden": gate["overridden"],
        "reasons": gate["reasons"],
        "rows_read": counts["rows_read"],
        "out_of_span": counts["out_of_span"],
        "rows_quarantined": counts["rows_quarantined"],
        "quarantined_by_reason": dict(counts["quarantined_by_reason"]),
        "duplicates_dropped": counts["duplicates_dropped"],
        "rows_valid": counts["rows_valid"],
        "missing_partitions": list(counts["missing_partitions"]),
        "new_columns": list(counts["new_columns"]),
        "volume": volume,
        "volume_check": volume_check,
        "quarantine_fraction": quarantine_fraction(counts),
        "max_quarantine_fraction": max_quarantine_fraction,
        "anomalies": inputs + gate_anomalies(counts, gate["reasons"], max_quarantine_fraction,
                                             volume_check) + found,
        "previous_blessed_date": previous_day,
        "drift": drift,
        "stats_sample_fraction": stats_sample_fraction,
        "stats_seed": stats_seed,
        "stats_examples": {source: _num_examples(stats[source]) for source in contract.SOURCES},
    }
    directory = day_dir(output_dir, run_date.isoformat())
    remove_summary(directory)
    summary["withdrawn"] = [] if gate["blessed"] else withdraw_day(
        output_dir, run_date.isoformat(), bases)
    html = render_stats_html(stats, summary)
    return summary, write_day_outputs(directory, stats, anomalies, html, summary)


# --------------------------------------------------------------------------
# Beam.


@beam.typehints.with_input_types(pa.RecordBatch)
@beam.typehints.with_output_types(pa.RecordBatch)
class _SplitForStatsFn(beam.DoFn):
    """Samples a batch of valid rows and emits its feature batch per source, tagged by source."""

    def __init__(self, features_by_source, fraction, seed):
        self._features_by_source = features_by_source
        self._fraction = fraction
        self._seed = seed

    def process(self, valid: pa.RecordBatch):
        batches = stats_batches_by_source(valid, self._features_by_source, self._fraction, self._seed)
        for source, batch in batches.items():
            beam.metrics.Metrics.counter("validation", f"stats_rows_{source}").inc(batch.num_rows)
            yield beam.pvalue.TaggedOutput(source, batch)


class _GateDayFn(beam.DoFn):
    """Validates, writes the day's files, and raises DayNotBlessedError or emits the summary."""

    def __init__(self, schema, output_dir, run_date, max_quarantine_fraction, allow_anomalies,
                 stats_sample_fraction, stats_seed, claim=None,
                 volume_ratios=DEFAULT_VOLUME_RATIOS, on_refusal=None):
        self._schema = schema
        self._on_refusal = on_refusal
        self._volume_ratios = tuple(volume_ratios)
        self._claim = claim
        self._output_dir = output_dir
        self._run_date = run_date
        self._max_quarantine_fraction = max_quarantine_fraction
        self._allow_anomalies = allow_anomalies
        self._stats_sample_fraction = stats_sample_fraction
        self._stats_seed = stats_seed

    def process(self, unused_start, client_stats, server_stats, counts,
                bases=None) -> Iterable[dict]:
        if self._claim is not None:
            check_claim(*self._claim)
        summary, summary_path = validate_day(
            {contract.CLIENT: client_stats, contract.SERVER: server_stats}, counts, self._schema,
            self._output_dir, self._run_date, self._max_quarantine_fraction,
            self._allow_anomalies, self._stats_sample_fraction, self._stats_seed, bases,
            self._volume_ratios)
        if not summary["blessed"]:
            message = not_blessed_message(summary, summary_path)
            if self._on_refusal is not None:    # the job's report of the day, before it fails
                message += "\n" + self._on_refusal({
                    "stage": "validation", "reasons": summary["reasons"], "message": message})
            raise DayNotBlessedError(message)
        yield summary


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class ValidateDay(beam.PTransform):
    """{"valid": PCollection[RecordBatch], "counts": PCollection[dict] (exactly one)}
    -> PCollection with the day's summary dict (one element), or a failed pipeline
    (DayNotBlessedError) when the gate refuses the day. See the module docstring
    for the files it writes. With `claim` (the folder of the run's first commit, and
    the run id), the gate writes nothing and withdraws nothing unless that folder still
    names the run (docs/publishing.md#one-claim-per-run). `on_refusal` (a picklable
    callable of {"stage", "reasons", "message"} returning a line for the error) runs when
    the gate refuses, after the day's files are written and before the pipeline fails: the
    job's report of the day."""

    def __init__(self, output_dir: str, run_date: dt.date, schema_path: str,
                 max_quarantine_fraction: float = 0.05, allow_anomalies: bool = False,
                 stats_sample_fraction: float = 1.0, stats_seed: int = 0,
                 claim: Optional[Tuple[str, str]] = None,
                 min_volume_ratio: float = DEFAULT_VOLUME_RATIOS[0],
                 max_volume_ratio: float = DEFAULT_VOLUME_RATIOS[1],
                 on_refusal: Optional[Callable[[Dict], object]] = None):
        super().__init__()
        self._on_refusal = on_refusal
        if not isinstance(output_dir, str) or not output_dir:
            raise ValueError(f"--output_dir={output_dir!r} must be a non-empty path or gs:// URI")
        if not isinstance(run_date, dt.date) or isinstance(run_date, dt.datetime):
            raise ValueError(f"--run_date={run_date!r} must be a datetime.date")
        if not _is_number(max_quarantine_fraction) or not 0.0 <= max_quarantine_fraction <= 1.0:
            raise ValueError(f"--max_quarantine_fraction={max_quarantine_fraction!r} must be in [0, 1]")
        if not isinstance(allow_anomalies, bool):
            raise ValueError(f"--allow_anomalies={allow_anomalies!r} must be true or false")
        if not _is_number(stats_sample_fraction) or not 0.0 < stats_sample_fraction <= 1.0:
            raise ValueError(f"--stats_sample_fraction={stats_sample_fraction!r} must be in (0, 1]")
        if isinstance(stats_seed, bool) or not isinstance(stats_seed, int) or stats_seed < 0:
            raise ValueError(f"--stats_seed={stats_seed!r} must be an integer >= 0")
        if not _is_number(min_volume_ratio) or not 0.0 <= min_volume_ratio <= 1.0:
            raise ValueError(f"--min_volume_ratio={min_volume_ratio!r} must be in [0, 1]")
        if not _is_number(max_volume_ratio) or not 1.0 <= max_volume_ratio < float("inf"):
            raise ValueError(f"--max_volume_ratio={max_volume_ratio!r} must be a number >= 1")
        try:
            schema = load_schema(schema_path)
        except Exception as err:  # re-raised with the option's name
            raise ValueError(f"--tfdv_schema={schema_path!r} is not a readable TFDV schema "
                             f"(schema_pb2.Schema text format): {err}") from err
        environments = set(schema.default_environment)
        if not environments >= set(contract.ENVIRONMENTS.values()):
            raise ValueError(f"--tfdv_schema={schema_path!r} must have default_environment "
                             f"{sorted(contract.ENVIRONMENTS.values())}, has {sorted(environments)}")
        self._schema = schema
        self._features_by_source = {
            source: environment_features(schema, environment)
            for source, environment in contract.ENVIRONMENTS.items()}
        self._output_dir = output_dir
        self._run_date = run_date
        self._max_quarantine_fraction = float(max_quarantine_fraction)
        self._allow_anomalies = allow_anomalies
        self._stats_sample_fraction = float(stats_sample_fraction)
        self._stats_seed = stats_seed
        self._claim = None if claim is None else tuple(claim)
        self._volume_ratios = (float(min_volume_ratio), float(max_volume_ratio))

    def expand(self, inputs):
        import tensorflow_data_validation as tfdv  # heavy; imported where it is used

        valid, counts = inputs["valid"], inputs["counts"]
        parts = valid | "SplitForStats" >> beam.ParDo(_SplitForStatsFn(
            self._features_by_source, self._stats_sample_fraction, self._stats_seed,
        )).with_outputs(*contract.SOURCES)
        stats = {
            source: parts[source] | f"Generate{source.capitalize()}Stats" >> tfdv.GenerateStatistics(
                tfdv.StatsOptions(schema=self._schema))
            for source in contract.SOURCES
        }
        output_dir, day = self._output_dir, self._run_date.isoformat()
        # The day's published kinds as the run finds them at its start: a refusal
        # withdraws only those, never a kind another run publishes after that.
        bases = (valid.pipeline
                 | "StartReadPublishedDay" >> beam.Create([None])
                 | "ReadPublishedDay" >> beam.Map(lambda _: day_bases(output_dir, day)))
        return (
            valid.pipeline
            | "StartGate" >> beam.Create([None])
            | "GateDay" >> beam.ParDo(
                _GateDayFn(self._schema, self._output_dir, self._run_date,
                           self._max_quarantine_fraction, self._allow_anomalies,
                           self._stats_sample_fraction, self._stats_seed, self._claim,
                           self._volume_ratios, self._on_refusal),
                client_stats=beam.pvalue.AsSingleton(stats[contract.CLIENT]),
                server_stats=beam.pvalue.AsSingleton(stats[contract.SERVER]),
                counts=beam.pvalue.AsSingleton(counts),
                bases=beam.pvalue.AsSingleton(bases))
            .with_output_types(dict))
