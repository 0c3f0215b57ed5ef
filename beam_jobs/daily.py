"""The whole day in one pipeline: read -> validate (gate) -> co-occurrence graph.

python -m beam_jobs.daily --events=DIR|bq://p.d.t --run_date=YYYY-MM-DD|auto \
    --output_dir=DIR [every stage's options] [Beam options]
"""

from typing import List, Optional

from beam_jobs import cooccurrence_graph, validate_events
from beam_jobs import options as opts

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.ValidationOptions, opts.GraphOptions)
REQUIRED_OPTIONS = ("events", "output_dir")
DESCRIPTION = ("The daily job: validate the day's events (quarantine, TFDV gate), then build "
               "the co-occurrence graph; nothing is published for an unblessed day.")


def check_args(args) -> None:
    validate_events.check_args(args)
    cooccurrence_graph.graph_params(args)


def build(pipeline, args, span) -> None:
    validated = validate_events.build_validation(pipeline, args, span)
    cooccurrence_graph.build_graph(pipeline, args, span, validated["valid"], validated["gate"],
                                  args.events)


def run(argv: Optional[List[str]] = None):
    return opts.run_job(argv, "beam_jobs.daily", OPTION_CLASSES, DESCRIPTION, check_args,
                        build)


if __name__ == "__main__":
    opts.main(run)
