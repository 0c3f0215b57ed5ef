"""Validate one day of events: row checks and quarantine, de-duplication, TFDV
statistics, schema and drift validation, and the gate.

python -m beam_jobs.validate_events --events=DIR|bq://p.d.t --run_date=YYYY-MM-DD \
    --output_dir=DIR [--runner=DataflowRunner ...]
"""

import os
from typing import Dict, List, Optional

import apache_beam as beam

from beam_jobs import options as opts
from transforms.publish import PublishFiles, StageFiles, staging_dir_for
from transforms.quarantine import CheckEvents
from transforms.read import ReadEvents
from transforms.span import DaySpan

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.ValidationOptions)
REQUIRED_OPTIONS = ("events", "output_dir")
DESCRIPTION = ("Read one day of events, quarantine bad rows, drop duplicates, validate the "
               "day with TFDV against the reviewed schema and the last blessed day, and "
               "refuse (fail) an unblessed day.")


def default_tfdv_schema() -> str:
    import schemas
    return os.path.join(os.path.dirname(schemas.__file__), "events_schema.pbtxt")


def build_validation(pipeline, args, span: DaySpan) -> Dict:
    """read -> checks -> quarantine -> TFDV -> gate. Returns {"valid": (shard, Table)
    PCollection of the day's valid rows, "gate": the blessed day's summary}."""
    from transforms.validation import ValidateDay
    out = args.output_dir.rstrip("/")
    day = span.run_date.isoformat()
    read = pipeline | "ReadEvents" >> ReadEvents(args.events, span)
    checked = read | "CheckEvents" >> CheckEvents(span, args.dedup_shards)
    quarantined = checked["quarantine"] | "WriteQuarantine" >> beam.io.WriteToText(
        f"{out}/quarantine/dt={day}/quarantine", file_name_suffix=".jsonl.gz", num_shards=1,
        shard_name_template="-SSSSS-of-NNNNN")
    counts = checked["counts"] | "AwaitQuarantine" >> beam.Map(
        lambda counts, _written: counts, _written=beam.pvalue.AsList(quarantined))
    valid_batches = checked["valid"] | "ValidTables" >> beam.FlatMap(
        lambda element: element[1].to_batches())
    gate = {"valid": valid_batches, "counts": counts} | "ValidateDay" >> ValidateDay(
        output_dir=out, run_date=span.run_date,
        schema_path=args.tfdv_schema or default_tfdv_schema(),
        max_quarantine_fraction=args.max_quarantine_fraction,
        allow_anomalies=args.allow_anomalies,
        stats_sample_fraction=args.stats_sample_fraction, stats_seed=args.stats_seed)
    final_dir = f"{out}/validated/dt={day}"
    shards = args.dedup_shards
    _ = (checked["valid"]
         | "NameValidatedFiles" >> beam.Map(lambda e: ("part", e[0], shards, e[1]))
         | "StageValidated" >> beam.ParDo(StageFiles(staging_dir_for(final_dir), "parquet"))
         | "PublishValidated" >> PublishFiles(final_dir, {"run_date": day,
                                                          "timezone": span.timezone,
                                                          "events": args.events}, gate))
    return {"valid": checked["valid"], "gate": gate}


def check_args(args) -> None:
    opts.require(args.output_dir, "--output_dir", "a local or gs:// directory")
    opts.require(args.events, "--events", "bq://project.dataset.table or a directory in the "
                 "export layout <dir>/dt=YYYY-MM-DD/*.parquet")
    if not 0 <= args.max_quarantine_fraction <= 1:
        raise ValueError(f"--max_quarantine_fraction={args.max_quarantine_fraction} must be "
                         "in [0, 1]")
    if not 0 < args.stats_sample_fraction <= 1:
        raise ValueError(f"--stats_sample_fraction={args.stats_sample_fraction} must be in "
                         "(0, 1]")


def build(pipeline, args, span: DaySpan) -> None:
    build_validation(pipeline, args, span)


def run(argv: Optional[List[str]] = None):
    return opts.run_job(argv, "beam_jobs.validate_events", OPTION_CLASSES, DESCRIPTION,
                        check_args, build)


if __name__ == "__main__":
    opts.main(run)
