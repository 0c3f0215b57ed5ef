"""Training examples of one day for the GPU trainers: skip-gram pairs (item2vec),
next-article sequences and ranking lists, as GZIP TFRecords split into train and eval,
published to <output_dir>/examples/<kind>/dt=<run_date>/.

python -m beam_jobs.training_examples (--events=... | --validated_events=DIR/validated) \
    --run_date=YYYY-MM-DD --output_dir=DIR (--user_id_salt_file=F | --user_id_salt_secret=V) \
    [examples, split and graph session options] [Beam options]

Standalone, the job extends the article index itself (every article of the day's valid
events) and publishes the next version; in the daily job the stage takes the index the
graph stage publishes.
"""

import datetime as dt
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
import pyarrow as pa

from beam_jobs import cooccurrence_graph, launch, options as opts, validate_events
from transforms.common import privacy
from transforms.common.span import DaySpan
from transforms.examples import ranking, sequences, skipgram
from transforms.examples.composite import BuildTrainingExamples
from transforms.examples.params import EXAMPLE_COLUMNS, ExampleParams
from transforms.graph import index_store
from transforms.publishing.protocol import PublishFileSets
from transforms.publishing.writers import bytes_of_mb

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.PublishingOptions,
                  opts.ValidatedInputOptions, opts.ValidationOptions, opts.GraphOptions,
                  opts.SplitOptions, opts.PrivacyOptions, opts.ExamplesOptions)
REQUIRED_OPTIONS = ("output_dir",)
DESCRIPTION = ("Write the day's training examples (skip-gram pairs, next-article sequences, "
               "ranking lists) split into train and eval, with pseudonymous user ids and "
               "the article index's ids; with --events the day is validated inline and an "
               "unblessed day publishes nothing.")
EXAMPLE_OPTION_NAMES = ("example_kinds", "skipgram_subsample", "skipgram_window",
                        "skipgram_negatives", "skipgram_same_region_negatives",
                        "skipgram_pairs_per_record", "skipgram_max_pairs", "ranking_list_size",
                        "ranking_label_minutes", "examples_seed", "eval_split", "eval_hours",
                        "eval_fraction", "session_gap_minutes", "max_session_length",
                        "max_events_per_user", "max_rows_per_shard", "target_shard_mb")
SPLIT_FILE_SETS = ("train", "eval")


def example_params(args, span: DaySpan) -> ExampleParams:
    kinds = tuple(k.strip() for k in (args.example_kinds or "").split(",") if k.strip())
    return ExampleParams(
        run_date=span.run_date.isoformat(), day_start_us=span.start_us,
        day_end_us=span.end_us, kinds=kinds,
        gap_us=int(round(args.session_gap_minutes * 60_000_000)),
        max_events_per_user=args.max_events_per_user,
        max_session_length=args.max_session_length, eval_split=args.eval_split,
        eval_hours=args.eval_hours, eval_fraction=args.eval_fraction, seed=args.examples_seed,
        subsample=args.skipgram_subsample, window=args.skipgram_window,
        negatives=args.skipgram_negatives,
        same_region_share=args.skipgram_same_region_negatives,
        pairs_per_record=args.skipgram_pairs_per_record, max_pairs=args.skipgram_max_pairs,
        list_size=args.ranking_list_size,
        label_window_us=int(round(args.ranking_label_minutes * 60_000_000)),
        max_rows_per_shard=args.max_rows_per_shard,
        target_bytes=bytes_of_mb(args.target_shard_mb)).check()


def feature_spec(kind: str) -> Dict:
    return {"skipgram": skipgram.SKIPGRAM_FEATURE_SPEC,
            "sequences": sequences.SEQUENCE_FEATURE_SPEC,
            "ranking": ranking.RANKING_FEATURE_SPEC}[kind]


def region_chunks_of(pieces):
    """Graph pieces -> (indexes, regions) chunks of the nodes file set."""
    def chunk(piece):
        file_set, _, batch = piece
        if file_set != "nodes":
            return []
        index = batch.column(batch.schema.get_field_index("index")).to_numpy()
        region = batch.column(batch.schema.get_field_index("region_id")).cast(pa.string())
        return [(np.asarray(index, np.int64), region)]
    return pieces | "RegionChunks" >> beam.FlatMap(chunk)


def build_examples(pipeline, args, span: DaySpan, valid, gate, index, graph_pieces,
                   source: str, described) -> Dict:
    """Valid rows -> every kind published under <output_dir>/examples/<kind>/dt=<day>/.
    `index` is the PCollection of the article index version dict the run publishes
    (index_store.PublishArticleIndex), `graph_pieces` the pieces holding that run's index
    and nodes file sets."""
    params = example_params(args, span)
    out = args.output_dir.rstrip("/")
    day = span.run_date.isoformat()
    built = valid | "BuildExamples" >> BuildTrainingExamples(
        params, index_store.index_chunks_of(graph_pieces), region_chunks_of(graph_pieces),
        args.user_id_salt_file, args.user_id_salt_secret)
    published = {}
    for kind in params.kinds:
        counts = built["counts"] | f"{kind.capitalize()}Counts" >> beam.Map(
            kind_counts, kind)
        manifest = {
            "kind": kind, "run_date": day, "timezone": span.timezone,
            "span_utc": [span.start.isoformat(), span.end.isoformat()],
            "input": source, "input_days": [day],
            "split": split_description(params, span),
            "feature_spec": feature_spec(kind),
            "options": {name: getattr(args, name) for name in EXAMPLE_OPTION_NAMES},
        }
        # The first kind's commit is the run's claim on the day's examples: the other
        # kinds commit after it (docs/publishing.md#one-claim-per-run).
        first = params.kinds[0]
        after = {} if kind == first else {f"examples/{first}/dt={day}": published[first]}
        published[kind] = built[kind] | f"Publish{kind.capitalize()}" >> PublishFileSets(
            f"{out}/examples/{kind}/dt={day}", manifest, gate, fmt="records",
            target_shard_mb=args.target_shard_mb,
            extra={"article_index": index, "counts": counts, "input_provenance": described},
            file_sets=SPLIT_FILE_SETS, after=after, keep_hours=args.keep_replaced_hours)
    return published


def kind_counts(counters: Dict[str, int], kind: str) -> Dict[str, int]:
    """The counters of one kind: records per split and what they hold."""
    prefixes = {"skipgram": ("skipgram_",), "sequences": ("sequences_", "sessions"),
                "ranking": ("ranking_", "impressions_")}[kind]
    return {k: v for k, v in counters.items() if k.startswith(prefixes)}


def split_description(params: ExampleParams, span: DaySpan) -> Dict:
    if params.eval_split == "time":
        boundary = dt.datetime.fromtimestamp(params.boundary_us / 1e6, dt.timezone.utc)
        return {"eval_split": "time", "eval_hours": params.eval_hours,
                "boundary_utc": boundary.isoformat()}
    return {"eval_split": "user_hash", "eval_fraction": params.eval_fraction}


def check_args(args) -> None:
    validate_events.check_input_args(args)
    privacy.require_salt_source(args.user_id_salt_file, args.user_id_salt_secret)
    cooccurrence_graph.graph_params(args)
    example_params(args, launch.resolve_day("2026-01-01", "UTC"))


def build(pipeline, args, span: DaySpan) -> None:
    # Every valid row of a blessed day (impressions and server events too: the index
    # covers their articles).
    valid, gate, described = validate_events.read_input(pipeline, args, span, EXAMPLE_COLUMNS)
    # The graph composite without its edges: the day's nodes and the extended index.
    built, index = cooccurrence_graph.build_and_index(pipeline, args, span, valid, gate,
                                                      described, edges=False,
                                                      label="IndexArticles")
    build_examples(pipeline, args, span, valid, gate, index, built["pieces"],
                   args.events or args.validated_events, described)


def run(argv: Optional[List[str]] = None):
    return launch.run_job(argv, "beam_jobs.training_examples", OPTION_CLASSES, DESCRIPTION,
                        check_args, build)


if __name__ == "__main__":
    launch.main(run)
