"""Pipeline options, each declared once. The daily job takes every stage's options,
so every flag name is unique across all jobs (Beam silently merges flags of the
same name). Flex Template metadata is generated from these declarations."""

import argparse
import datetime as dt
from typing import List, Optional, Sequence, Type

from apache_beam.options.pipeline_options import PipelineOptions

from transforms import span as span_lib


def str_to_bool(value) -> bool:
    """Flex Templates pass every parameter as --name=value, booleans included."""
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def shard_count(value) -> str:
    """'auto' or a whole number >= 1, as given (parsed by sharding.parse_shard_count)."""
    from transforms.sharding import parse_shard_count
    try:
        parse_shard_count(value, "shard count")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return str(value).strip().lower()


def positive_int(value) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return number


def positive_float(value) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number > 0 and number != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {value!r}")
    return number


class EventsOptions(PipelineOptions):
    """Where a job reads the day from, which day, and where it writes."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--events", default=None,
            help="Raw events: bq://project.dataset.table, or a directory (local or gs://) "
                 "in the table's Parquet export layout <dir>/dt=YYYY-MM-DD/*.parquet.")
        parser.add_argument(
            "--run_date", default="auto",
            help="The local calendar day to process, YYYY-MM-DD, or 'auto' for yesterday in "
                 "--timezone (resolved when the pipeline is built).")
        parser.add_argument(
            "--timezone", default="Asia/Seoul",
            help="IANA time zone of --run_date; the day runs from its 00:00 to the next "
                 "day's 00:00 local time.")
        parser.add_argument(
            "--output_dir", default=None,
            help="Root directory (local or gs://) of every output: validation/, quarantine/, "
                 "validated/, cooccurrence/ under dt=<run_date>. Required.")
        parser.add_argument(
            "--allow_missing_partitions", type=str_to_bool, nargs="?", const=True,
            default=False,
            help="Read the UTC partitions of the day that exist when some are missing (no "
                 "dt= folder or Parquet file, or no BigQuery rows of that date) and list them "
                 "in summary.json as missing_partitions; by default the job fails naming them. "
                 "A day with no data at all is still refused by the gate as empty.")


class ValidationOptions(PipelineOptions):
    """Row checks, de-duplication and the TFDV gate."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--max_quarantine_fraction", type=float, default=0.05,
            help="A day is blessed only when quarantined / (read - out of span) is under this.")
        parser.add_argument(
            "--allow_anomalies", type=str_to_bool, nargs="?", const=True, default=False,
            help="Bless the day even when the gate refuses it; summary.json says overridden.")
        parser.add_argument(
            "--stats_sample_fraction", type=float, default=1.0,
            help="Share of valid rows (chosen by a seeded hash of event_id) that TFDV "
                 "statistics are computed over; row counts stay exact.")
        parser.add_argument(
            "--stats_seed", type=int, default=0,
            help="Seed of the event_id hash that picks the statistics sample.")
        parser.add_argument(
            "--tfdv_schema", default=None,
            help="TFDV schema (.pbtxt) to validate against; default: the reviewed "
                 "schemas/events_schema.pbtxt shipped with the suite.")
        parser.add_argument(
            "--dedup_shards", type=shard_count, default="auto",
            help="Shards (by a hash of event_id) that de-duplication groups valid rows into: "
                 "'auto' (ceil(valid rows / --max_rows_per_shard), counted while the pipeline "
                 "runs) or a number.")


class ScaleOptions(PipelineOptions):
    """How heavy stages are cut into elements and outputs into files (every job)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--max_rows_per_shard", type=positive_int, default=1_000_000,
            help="Target rows per shard of a stage whose shard count is 'auto' (one shard "
                 "holds whole users or whole event ids, so it may exceed this when one user "
                 "does).")
        parser.add_argument(
            "--target_shard_mb", type=positive_float, default=128.0,
            help="Output files are cut when they reach about this many megabytes "
                 "(compressed), so their number follows the bytes written.")


class ValidatedInputOptions(PipelineOptions):
    """Jobs that can start from an already validated, blessed day."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--validated_events", default=None,
            help="Read the validated Parquet of a blessed day (<output_dir>/validated) "
                 "instead of validating --events inline.")


class GraphOptions(PipelineOptions):
    """The article co-occurrence graph."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--session_gap_minutes", type=float, default=30.0,
            help="A new session starts when the gap to the user's previous interaction is "
                 "strictly greater than this.")
        parser.add_argument(
            "--graph_window", type=int, default=5,
            help="Positions i != j of a session with |i - j| <= this are counted as a pair.")
        parser.add_argument(
            "--min_pair_count", type=int, default=2,
            help="Keep pairs counted at least this many times.")
        parser.add_argument(
            "--weighting", default="ppmi", choices=["ppmi", "count", "jaccard", "cosine"],
            help="Edge weight: ppmi, count, jaccard or cosine.")
        parser.add_argument(
            "--rank_by", default="weight", choices=["weight", "count"],
            help="What each article's neighbours are ranked by.")
        parser.add_argument(
            "--top_k", type=int, default=50, help="Neighbours kept per article.")
        parser.add_argument(
            "--max_session_length", type=int, default=0,
            help="Cut longer sessions (after collapsing repeats) into consecutive pieces of "
                 "this length; 0 turns it off.")
        parser.add_argument(
            "--max_events_per_user", type=int, default=0,
            help="Keep each user's first N interactions of the day; 0 turns it off.")
        parser.add_argument(
            "--event_weights", default="",
            help="e.g. article_view:1,article_like:3,chat_start:5: pairs add w_i*w_j to a "
                 "weighted count used by the weightings; empty turns it off.")
        parser.add_argument(
            "--index_from", default=None,
            help="Directory of a published day (holding index-*.tfrecord.gz) to continue the "
                 "article index from; default: the latest day before --run_date under "
                 "--output_dir.")
        parser.add_argument(
            "--graph_shards", type=shard_count, default="auto",
            help="Shards (by a hash of user_id, then of the article) the graph is computed "
                 "in: 'auto' (ceil(interaction rows / --max_rows_per_shard), counted while "
                 "the pipeline runs) or a number.")


def job_parser(prog: str, option_classes: Sequence[Type[PipelineOptions]],
               description: str) -> argparse.ArgumentParser:
    """An argparse parser with the job's own options, for --help and early checks."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog="Any Beam pipeline option (--runner, --project, --region, --temp_location, "
               "--direct_num_workers, ...) is accepted as well.")
    for cls in option_classes:
        cls._add_argparse_args(parser)
    return parser


def parse(argv: Optional[List[str]], prog: str, option_classes, description: str):
    """Parse a job's argv: prints --help, rejects malformed values of the job's own
    options, and returns (known args namespace, PipelineOptions of the whole argv)."""
    parser = job_parser(prog, option_classes, description)
    known, _ = parser.parse_known_args(argv)
    return known, PipelineOptions(argv)


def require(value, flag: str, form: str):
    if value in (None, ""):
        raise ValueError(f"{flag} is required: {form}")
    return value


def resolve_day(run_date: str, timezone: str,
                now: Optional[dt.datetime] = None) -> span_lib.DaySpan:
    return span_lib.resolve_span(run_date, timezone, now)


LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(argv: Optional[List[str]]) -> PipelineOptions:
    """The whole argv as Beam options. With no --runner, the in-process FnApiRunner
    (Beam's DirectRunner would first try to download the Prism binary)."""
    from apache_beam.options.pipeline_options import StandardOptions, WorkerOptions
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    if "dataflow" in standard.runner.lower() and \
            not options.view_as(WorkerOptions).sdk_container_image:
        raise ValueError("--sdk_container_image is required with the DataflowRunner: the "
                         "workers need the suite's image (see flex_templates/Dockerfile)")
    return options


def run_pipeline(pipeline, options: PipelineOptions):
    """Run; wait only for local runners (a Flex Template launcher must not wait)."""
    from apache_beam.options.pipeline_options import StandardOptions
    result = pipeline.run()
    runner = (options.view_as(StandardOptions).runner or "").lower()
    if "dataflow" not in runner:
        result.wait_until_finish()
    return result


def run_job(argv: Optional[List[str]], module: str, option_classes, description: str,
            check_args, build):
    """The shape every job's run(argv) has: parse and check the job's options, resolve
    the day, build the pipeline with build(pipeline, args, span) and run it."""
    import apache_beam as beam
    args, _ = parse(argv, f"python -m {module}", option_classes, description)
    check_args(args)
    span = resolve_day(args.run_date, args.timezone)
    options = pipeline_options(argv)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, args, span)
    return run_pipeline(pipeline, options)


def main(run, argv: Optional[List[str]] = None) -> None:
    """Entry point: a failed run exits non-zero and ends with its reason."""
    import logging
    import sys
    import traceback
    logging.getLogger().setLevel(logging.INFO if "--verbose" in (argv or sys.argv) else
                                 logging.WARNING)
    try:
        run([a for a in (argv if argv is not None else sys.argv[1:]) if a != "--verbose"])
    except Exception as err:  # the top level: report and exit non-zero
        traceback.print_exc()
        message = str(err).strip() or type(err).__name__
        print(f"\nFAILED: {message}", file=sys.stderr)
        sys.exit(1)
