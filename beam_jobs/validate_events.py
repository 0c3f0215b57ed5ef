"""Validate one day of events: row checks and quarantine, de-duplication, TFDV
statistics, schema and drift validation, and the gate.

python -m beam_jobs.validate_events --events=DIR|bq://p.d.t --run_date=YYYY-MM-DD \
    --output_dir=DIR [--runner=DataflowRunner ...]
"""

import functools
import os
from typing import Dict, List, Optional

import apache_beam as beam

import schemas
from beam_jobs import launch, options as opts
from transforms.common.sharding import parse_shard_count
from transforms.common.span import DaySpan
from transforms.ingest.provenance import DescribeInput, DescribeValidated
from transforms.ingest.quarantine import CheckEvents, GroupQuarantine
from transforms.ingest.read import ReadEvents, ReadValidatedEvents
from transforms.ingest.validation import ValidateDay
from transforms.publishing.protocol import PublishFileSets
from transforms.report.publish import report_refusal

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.PublishingOptions,
                  opts.ValidationOptions)
REQUIRED_OPTIONS = ("events", "output_dir")
DESCRIPTION = ("Read one day of events, quarantine bad rows, drop duplicates, validate the "
               "day with TFDV against the reviewed schema and the last blessed day, and "
               "refuse (fail) an unblessed day.")


def default_tfdv_schema() -> str:
    return os.path.join(os.path.dirname(schemas.__file__), "events_schema.pbtxt")


def build_validation(pipeline, args, span: DaySpan, on_refusal=None) -> Dict:
    """read -> checks -> quarantine -> TFDV -> gate (a refused day's earlier outputs are
    withdrawn by the gate, its quarantine kept; `on_refusal` runs before a refusal fails
    the job). Returns {"valid": (shard, Table) PCollection of the day's valid rows, "gate":
    the blessed day's summary, "input": one dict describing what was read
    (transforms.ingest.provenance), "published": the quarantine's and the validated rows'
    commits}."""
    out = args.output_dir.rstrip("/")
    day = span.run_date.isoformat()
    source = {"run_date": day, "timezone": span.timezone, "events": args.events}
    described = pipeline | "DescribeInput" >> DescribeInput(args.events, span)
    read = pipeline | "ReadEvents" >> ReadEvents(args.events, span, args.allow_missing_partitions)
    checked = read | "CheckEvents" >> CheckEvents(
        span, parse_shard_count(args.dedup_shards, "--dedup_shards"), args.max_rows_per_shard)
    # A refused day's quarantine is published too (no gate). Its commit is the run's
    # claim on the day (docs/publishing.md#one-claim-per-run): the gate's files, a
    # withdrawal and every later commit wait on it.
    quarantine_dir = f"{out}/quarantine/dt={day}"
    publish_quarantine = PublishFileSets(
        quarantine_dir, source, fmt="jsonl", target_shard_mb=args.target_shard_mb,
        file_sets=("quarantine",), extra={"input_provenance": described},
        keep_hours=args.keep_replaced_hours)
    quarantined = ({"lines": checked["quarantine"], "counts": checked["counts"]}
                   | "GroupQuarantine" >> GroupQuarantine(args.max_rows_per_shard)
                   | "PublishQuarantine" >> publish_quarantine)
    counts = checked["counts"] | "AwaitQuarantine" >> beam.Map(
        lambda counts, _published: counts, _published=beam.pvalue.AsSingleton(quarantined))
    valid_batches = checked["valid"] | "ValidTables" >> beam.FlatMap(
        lambda element: element[1].to_batches())
    gate = {"valid": valid_batches, "counts": counts} | "ValidateDay" >> ValidateDay(
        output_dir=out, run_date=span.run_date,
        schema_path=args.tfdv_schema or default_tfdv_schema(),
        max_quarantine_fraction=args.max_quarantine_fraction,
        allow_anomalies=args.allow_anomalies,
        stats_sample_fraction=args.stats_sample_fraction, stats_seed=args.stats_seed,
        claim=(quarantine_dir, publish_quarantine.run_id),
        min_volume_ratio=args.min_volume_ratio, max_volume_ratio=args.max_volume_ratio,
        on_refusal=on_refusal)
    validated = (
        checked["valid"]
        | "NameValidatedPieces" >> beam.Map(lambda e: ("part", e[0], e[1]))
        | "PublishValidated" >> PublishFileSets(
            f"{out}/validated/dt={day}", dict(source, dedup_shards_requested=args.dedup_shards),
            gate, fmt="parquet", target_shard_mb=args.target_shard_mb, file_sets=("part",),
            extra={"dedup_shards_resolved": checked["dedup_shards"],
                   "input_provenance": described},
            after={f"quarantine/dt={day}": quarantined},
            keep_hours=args.keep_replaced_hours))
    return {"valid": checked["valid"], "gate": gate, "input": described,
            "published": [quarantined, validated]}


def check_args(args) -> None:
    opts.require(args.output_dir, "--output_dir", "a local or gs:// directory")
    opts.require(args.events, "--events", "bq://project.dataset.table or a directory in the "
                 "export layout <dir>/dt=YYYY-MM-DD/*.parquet")
    if not 0 <= args.max_quarantine_fraction <= 1:
        raise ValueError(f"--max_quarantine_fraction={args.max_quarantine_fraction} must be "
                         "in [0, 1]")
    parse_shard_count(args.dedup_shards, "--dedup_shards")
    if not 0 < args.stats_sample_fraction <= 1:
        raise ValueError(f"--stats_sample_fraction={args.stats_sample_fraction} must be in "
                         "(0, 1]")


def check_input_args(args) -> None:
    """A job that reads raw --events (validated inline) or a blessed --validated_events
    day: exactly one of them, and the validation options when raw."""
    opts.require(args.output_dir, "--output_dir", "a local or gs:// directory")
    if bool(args.events) == bool(args.validated_events):
        raise ValueError("give exactly one of --events (raw, validated inline) and "
                         "--validated_events (<output_dir>/validated of a blessed day)")
    if args.events:
        check_args(args)


def read_input(pipeline, args, span: DaySpan, columns=None, event_names=None):
    """(valid rows, gate, input description) of a job that takes --events (validated
    inline here) or --validated_events (a blessed day, read with `columns` and only the
    rows of `event_names`, all when None)."""
    if args.events:
        validated = build_validation(pipeline, args, span, refusal_report(args, span))
        return validated["valid"], validated["gate"], validated["input"]
    day = span.run_date.isoformat()
    read = pipeline | "ReadValidatedEvents" >> ReadValidatedEvents(
        args.validated_events, day, columns=columns, event_names=event_names)
    described = pipeline | "DescribeInput" >> DescribeValidated(args.validated_events, day)
    return read["valid"], read["gate"], described


def build(pipeline, args, span: DaySpan) -> None:
    build_validation(pipeline, args, span, refusal_report(args, span))


def refusal_report(args, span: DaySpan):
    """What a gate calls when it refuses the day, before the job fails: the day's report
    page with the refusal (docs/report.md). Every job hands it to its gates."""
    return functools.partial(report_refusal, args.output_dir.rstrip("/"),
                             span.run_date.isoformat(), args.keep_replaced_hours)


def run(argv: Optional[List[str]] = None):
    return launch.run_job(argv, "beam_jobs.validate_events", OPTION_CLASSES, DESCRIPTION,
                        check_args, build)


if __name__ == "__main__":
    launch.main(run)
