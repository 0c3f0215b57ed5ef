"""Article co-occurrence graph of one day: edges, ranked neighbour lists, nodes
with a stable article index, as GZIP TFRecords of tf.train.Example.

python -m beam_jobs.cooccurrence_graph (--events=... | --validated_events=DIR/validated) \
    --run_date=YYYY-MM-DD --output_dir=DIR [graph options] [Beam options]
"""

from typing import Dict, List, Optional

import apache_beam as beam

from beam_jobs import launch, options as opts, validate_events
from schemas import contract
from transforms.common.sharding import parse_shard_count
from transforms.common.span import DaySpan
from transforms.graph import index_store
from transforms.graph.cooccurrence import BuildCooccurrenceGraph, GraphParams
from transforms.graph.weights import parse_event_weights
from transforms.publishing.protocol import PublishFileSets
from transforms.graph.cooccurrence import INTERACTION_COLUMNS

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.PublishingOptions,
                  opts.ValidatedInputOptions, opts.ValidationOptions, opts.GraphOptions)
REQUIRED_OPTIONS = ("output_dir",)
DESCRIPTION = ("Build the day's article co-occurrence graph (top-K neighbours, nodes, stable "
               "article index) from validated events; with --events the day is validated "
               "inline and an unblessed day publishes nothing.")
GRAPH_OPTION_NAMES = ("session_gap_minutes", "graph_window", "min_pair_count", "weighting",
                      "rank_by", "top_k", "max_session_length", "max_events_per_user",
                      "event_weights", "index_from", "graph_shards", "max_rows_per_shard",
                      "target_shard_mb")
GRAPH_FILE_SETS = ("edges", "neighbors", "nodes", "index")


def graph_params(args) -> GraphParams:
    return GraphParams(
        session_gap_minutes=args.session_gap_minutes, window=args.graph_window,
        min_pair_count=args.min_pair_count, weighting=args.weighting, rank_by=args.rank_by,
        top_k=args.top_k, max_session_length=args.max_session_length,
        max_events_per_user=args.max_events_per_user,
        event_weights=parse_event_weights(args.event_weights),
        num_shards=parse_shard_count(args.graph_shards, "--graph_shards"),
        max_rows_per_shard=args.max_rows_per_shard).check()


def build_and_index(pipeline, args, span: DaySpan, valid, gate, described, edges: bool = True,
                    label: str = "BuildGraph"):
    """(the graph composite's outputs, the article index version it publishes): reads the
    index CURRENT names (or --index_from), extends it with the day's articles and
    publishes the next version. `edges=False` (the examples job) builds only the nodes
    and the index."""
    out = args.output_dir.rstrip("/")
    params = graph_params(args)._replace(edges=edges)
    base = pipeline | "ReadArticleIndex" >> index_store.ReadArticleIndex(
        out, args.index_from or "")
    built = valid | label >> BuildCooccurrenceGraph(params, base["known"])
    index_pieces = built["pieces"] | "SelectIndexPieces" >> beam.Filter(
        lambda piece: piece[0] == "index")
    index = (index_pieces, base["base"]) | "PublishArticleIndex" >> \
        index_store.PublishArticleIndex(out, span.run_date.isoformat(), gate,
                                        args.target_shard_mb, described,
                                        keep_hours=args.keep_replaced_hours)
    return built, index


def build_graph(pipeline, args, span: DaySpan, valid, gate, source: str, described) -> Dict:
    """Valid rows -> published <output_dir>/cooccurrence/dt=<run_date>/ and the next
    article index version (`source` names the input in the manifest). Returns
    {"published", "index": the version dict PCollection, "pieces"}."""
    out = args.output_dir.rstrip("/")
    day = span.run_date.isoformat()
    built, index = build_and_index(pipeline, args, span, valid, gate, described)
    final_dir = f"{out}/cooccurrence/dt={day}"
    manifest = {
        "run_date": day, "timezone": span.timezone,
        "span_utc": [span.start.isoformat(), span.end.isoformat()],
        "input": source,
        "options": {name: getattr(args, name) for name in GRAPH_OPTION_NAMES},
    }
    published = built["pieces"] | "PublishGraph" >> PublishFileSets(
        final_dir, manifest, gate, fmt="tfrecord", target_shard_mb=args.target_shard_mb,
        extra={"graph_shards_resolved": built["shards"],
               "article_partitions": built["partitions"], "article_index": index,
               "input_provenance": described},
        file_sets=GRAPH_FILE_SETS, keep_hours=args.keep_replaced_hours)
    return {"published": published, "index": index, "pieces": built["pieces"]}


def check_args(args) -> None:
    validate_events.check_input_args(args)
    graph_params(args)


def build(pipeline, args, span: DaySpan) -> None:
    valid, gate, described = validate_events.read_input(
        pipeline, args, span, INTERACTION_COLUMNS, contract.INTERACTION_EVENTS)
    build_graph(pipeline, args, span, valid, gate, args.events or args.validated_events,
                described)


def run(argv: Optional[List[str]] = None):
    return launch.run_job(argv, "beam_jobs.cooccurrence_graph", OPTION_CLASSES, DESCRIPTION,
                        check_args, build)


if __name__ == "__main__":
    launch.main(run)
