"""Launching a job: parsing its argv, resolving the day, building and running the
pipeline, and the one exit path every job (and the Flex Template launcher, which runs
the same module) leaves through. The option declarations live in beam_jobs/options.py;
how a job is run is in docs/deploy.md."""

import argparse
import datetime as dt
import logging
import os
import sys
import traceback
from typing import List, Optional, Sequence, Type

import apache_beam as beam
from apache_beam.options.pipeline_options import (PipelineOptions, StandardOptions,
                                                  WorkerOptions)

from transforms.common import span as span_lib

# Beam's DirectRunner would first try to download the Prism binary.
LOCAL_RUNNER = "FnApiRunner"


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


def parse(argv: Optional[List[str]], prog: str, option_classes,
          description: str) -> argparse.Namespace:
    """The job's own options from argv: prints --help and rejects malformed values;
    Beam's options (the rest of argv) are left to pipeline_options."""
    known, _ = job_parser(prog, option_classes, description).parse_known_args(argv)
    return known


def resolve_day(run_date: str, timezone: str,
                now: Optional[dt.datetime] = None) -> span_lib.DaySpan:
    return span_lib.resolve_span(run_date, timezone, now)


def pipeline_options(argv: Optional[List[str]]) -> PipelineOptions:
    """The whole argv as Beam options. With no --runner, the in-process FnApiRunner."""
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
    result = pipeline.run()
    runner = (options.view_as(StandardOptions).runner or "").lower()
    if "dataflow" not in runner:
        result.wait_until_finish()
    return result


def run_job(argv: Optional[List[str]], module: str, option_classes, description: str,
            check_args, build):
    """The shape every job's run(argv) has: parse and check the job's options, resolve
    the day, build the pipeline with build(pipeline, args, span) and run it."""
    args = parse(argv, f"python -m {module}", option_classes, description)
    check_args(args)
    span = resolve_day(args.run_date, args.timezone)
    options = pipeline_options(argv)
    pipeline = beam.Pipeline(options=options)
    build(pipeline, args, span)
    return run_pipeline(pipeline, options)


def exit_now(code: int) -> None:
    """Flush and leave with os._exit: a process that has built a tf.Transform pipeline
    crashes with SIGSEGV in TensorFlow's teardown at a normal interpreter exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream has nothing left to flush
            pass
    logging.shutdown()
    os._exit(code)


class _WithoutNotices:
    """sys.stderr without TFDV's IPython notice (each notice is one write call)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        if text.startswith("Unable to import IPython"):
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(run, argv: Optional[List[str]] = None) -> None:
    """Entry point: a failed run exits non-zero and ends with its reason (a refusal and
    a crash alike: the backfill reads the day's summary.json, not the exception)."""
    verbose = "--verbose" in (argv or sys.argv)
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        # The console shows what the user needs: TensorFlow's C++ start-up lines (CUDA
        # plugin registration) and TFDV's IPython notice only with --verbose.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        sys.stderr = _WithoutNotices(sys.stderr)
    code = 0
    try:
        run([a for a in (argv if argv is not None else sys.argv[1:]) if a != "--verbose"])
    except SystemExit as done:   # --help, or argparse refusing a value
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if done.code is not None and not isinstance(done.code, int):
            print(done.code, file=sys.stderr)
    except Exception as err:  # the top level: report and exit non-zero
        traceback.print_exc()
        message = str(err).strip() or type(err).__name__
        print(f"\nFAILED: {message}", file=sys.stderr)
        code = 1
    exit_now(code)
