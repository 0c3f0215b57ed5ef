"""The whole day in one pipeline: read -> validate (gate) -> co-occurrence graph and the
next article index version -> training examples and tf.Transform features
(--daily_stages picks the stages after validation) -> the day's report page, its last
step (or, on a gate's refusal, before the job fails).

python -m beam_jobs.daily --events=DIR|bq://p.d.t --run_date=YYYY-MM-DD|auto \
    --output_dir=DIR (--user_id_salt_file=F | --user_id_salt_secret=V) \
    [every stage's options] [Beam options]
"""

from typing import List, Optional

from beam_jobs import cooccurrence_graph, features, launch, options as opts, training_examples, \
    validate_events
from transforms.common import privacy
from transforms.features.stage import build_features
from transforms.graph.index_store import index_chunks_of
from transforms.report.publish import PublishReport

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.PublishingOptions,
                  opts.ValidationOptions, opts.GraphOptions, opts.SplitOptions,
                  opts.PrivacyOptions, opts.ExamplesOptions, opts.FeaturesOptions,
                  opts.DailyOptions)
STAGES = ("graph", "examples", "features")
REQUIRED_OPTIONS = ("events", "output_dir")
DESCRIPTION = ("The daily job: validate the day's events (quarantine, TFDV gate), build "
               "the co-occurrence graph and the next article index version, then the "
               "training examples and the tf.Transform features; nothing is published for "
               "an unblessed day.")


def stages(args) -> tuple:
    chosen = tuple(s.strip() for s in (args.daily_stages or "").split(",") if s.strip())
    unknown = [s for s in chosen if s not in STAGES]
    if unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f"--daily_stages={args.daily_stages!r}: give each of "
                         f"{', '.join(STAGES)} at most once")
    if chosen and "graph" not in chosen:
        raise ValueError(f"--daily_stages={args.daily_stages!r}: examples and features take "
                         "the article index the graph stage publishes; include graph")
    return chosen


def check_args(args) -> None:
    validate_events.check_args(args)
    chosen = stages(args)
    cooccurrence_graph.graph_params(args)
    if "examples" in chosen or "features" in chosen:
        privacy.require_salt_source(args.user_id_salt_file, args.user_id_salt_secret)
    if "examples" in chosen:
        training_examples.example_params(args, launch.resolve_day("2026-01-01", "UTC"))
    if "features" in chosen:
        features.feature_params(args)


def build(pipeline, args, span) -> None:
    chosen = stages(args)
    out, day = args.output_dir.rstrip("/"), span.run_date.isoformat()
    # The day's report (docs/report.md): the last step, or a gate's refusal before it fails.
    on_refusal = validate_events.refusal_report(args, span)
    validated = validate_events.build_validation(pipeline, args, span, on_refusal)
    published = list(validated["published"])
    if "graph" in chosen:
        graph = cooccurrence_graph.build_graph(pipeline, args, span, validated["valid"],
                                               validated["gate"], args.events,
                                               validated["input"])
        published += [graph["published"], graph["index"]]
    if "examples" in chosen:
        published += list(training_examples.build_examples(
            pipeline, args, span, validated["valid"], validated["gate"], graph["index"],
            graph["pieces"], args.events, validated["input"]).values())
    if "features" in chosen:
        published += list(build_features(
            pipeline, features.feature_params(args), span, validated["valid"],
            validated["gate"], index_chunks_of(graph["pieces"], "FeatureIndexChunks"),
            graph["index"], source=args.events, described=validated["input"],
            on_refusal=on_refusal).values())
    _ = ({f"output{n}": p for n, p in enumerate(published)}
         | "PublishReport" >> PublishReport(out, day, args.keep_replaced_hours))


def run(argv: Optional[List[str]] = None):
    return launch.run_job(argv, "beam_jobs.daily", OPTION_CLASSES, DESCRIPTION, check_args,
                          build)


if __name__ == "__main__":
    launch.main(run)
