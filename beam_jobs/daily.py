"""The whole day in one pipeline: read -> validate (gate) -> co-occurrence graph and the
next article index version -> training examples.

python -m beam_jobs.daily --events=DIR|bq://p.d.t --run_date=YYYY-MM-DD|auto \
    --output_dir=DIR (--user_id_salt_file=F | --user_id_salt_secret=V) \
    [every stage's options] [Beam options]
"""

from typing import List, Optional

from beam_jobs import cooccurrence_graph, training_examples, validate_events
from beam_jobs import options as opts

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.ValidationOptions,
                  opts.GraphOptions, opts.SplitOptions, opts.PrivacyOptions,
                  opts.ExamplesOptions)
REQUIRED_OPTIONS = ("events", "output_dir")
DESCRIPTION = ("The daily job: validate the day's events (quarantine, TFDV gate), build "
               "the co-occurrence graph and the next article index version, then the "
               "training examples; nothing is published for an unblessed day.")


def check_args(args) -> None:
    from transforms import privacy
    validate_events.check_args(args)
    cooccurrence_graph.graph_params(args)
    privacy.require_salt_source(args.user_id_salt_file, args.user_id_salt_secret)
    training_examples.example_params(args, opts.resolve_day("2026-01-01", "UTC"))


def build(pipeline, args, span) -> None:
    validated = validate_events.build_validation(pipeline, args, span)
    graph = cooccurrence_graph.build_graph(pipeline, args, span, validated["valid"],
                                           validated["gate"], args.events, validated["input"])
    training_examples.build_examples(pipeline, args, span, validated["valid"],
                                     validated["gate"], graph["index"], graph["pieces"],
                                     args.events, validated["input"])


def run(argv: Optional[List[str]] = None):
    return opts.run_job(argv, "beam_jobs.daily", OPTION_CLASSES, DESCRIPTION, check_args,
                        build)


if __name__ == "__main__":
    opts.main(run)
