"""Article and user features with tf.Transform: daily partial aggregates, point-in-time
feature rows over the lookback window, one preprocessing_fn per entity analysed on the
train rows, transformed train/eval TFRecords, TFDV statistics validated against the
reviewed schema, and a gate.

python -m beam_jobs.features (--events=... | --validated_events=DIR/validated) \
    --run_date=YYYY-MM-DD --output_dir=DIR (--user_id_salt_file=F | --user_id_salt_secret=S) \
    [split, features and Beam options]

Publishes the next article index version (the day's articles added, as the standalone
examples job does), <output_dir>/features/_daily/dt=<run_date>/ (the partials) and
<output_dir>/features/<entity>/dt=<run_date>/ (entity: articles, users), in that order;
what each holds: docs/features.md#outputs. The stage is transforms/features/; this
module holds the job.
"""

from typing import List, Optional

from beam_jobs import cooccurrence_graph, launch, options as opts, validate_events
from transforms.common.privacy import require_salt_source
from transforms.common.span import DaySpan
from transforms.features.partials import FEATURE_COLUMNS
from transforms.features.stage import FeatureParams, build_features
from transforms.graph.index_store import index_chunks_of

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.PublishingOptions,
                  opts.ValidatedInputOptions, opts.ValidationOptions, opts.GraphOptions,
                  opts.SplitOptions, opts.PrivacyOptions, opts.FeaturesOptions)
REQUIRED_OPTIONS = ("output_dir",)
DESCRIPTION = ("Build the day's article and user features with tf.Transform: daily partial "
               "aggregates merged over the lookback window into point-in-time train and "
               "eval rows, a preprocessing_fn per entity analysed on the train rows, "
               "transformed TFRecords, TFDV statistics validated against the reviewed "
               "schema and a gate; the article index is extended with the day's articles "
               "first; with --events the day is validated inline.")
FEATURE_OPTION_NAMES = ("eval_split", "eval_hours", "eval_fraction", "features_lookback_days",
                        "features_oov_buckets", "features_vocab_min_frequency",
                        "features_ctr_prior", "allow_feature_anomalies", "max_rows_per_shard",
                        "target_shard_mb")


def feature_params(args) -> FeatureParams:
    return FeatureParams(
        output_dir=args.output_dir, eval_split=args.eval_split, eval_hours=args.eval_hours,
        eval_fraction=args.eval_fraction, lookback_days=args.features_lookback_days,
        oov_buckets=args.features_oov_buckets,
        vocab_min_frequency=args.features_vocab_min_frequency,
        ctr_prior=args.features_ctr_prior, allow_anomalies=args.allow_feature_anomalies,
        max_rows_per_shard=args.max_rows_per_shard, target_shard_mb=args.target_shard_mb,
        keep_replaced_hours=args.keep_replaced_hours,
        salt_file=args.user_id_salt_file, salt_secret=args.user_id_salt_secret,
        options={name: getattr(args, name) for name in FEATURE_OPTION_NAMES}).check()


def check_args(args) -> None:
    validate_events.check_input_args(args)
    require_salt_source(args.user_id_salt_file, args.user_id_salt_secret)
    cooccurrence_graph.graph_params(args)
    feature_params(args)


def build(pipeline, args, span: DaySpan) -> None:
    valid, gate, described = validate_events.read_input(pipeline, args, span, FEATURE_COLUMNS)
    # The graph composite without its edges: the day's articles join the article index,
    # as in the standalone examples job, so none of them has index 0.
    built, index = cooccurrence_graph.build_and_index(pipeline, args, span, valid, gate,
                                                      described, edges=False,
                                                      label="IndexArticles")
    build_features(pipeline, feature_params(args), span, valid, gate,
                   index_chunks_of(built["pieces"], "FeatureIndexChunks"), index,
                   source=args.events or args.validated_events, described=described,
                   on_refusal=validate_events.refusal_report(args, span))


def run(argv: Optional[List[str]] = None):
    return launch.run_job(argv, "beam_jobs.features", OPTION_CLASSES, DESCRIPTION, check_args,
                          build)


if __name__ == "__main__":
    launch.main(run)
