"""Article and user features with tf.Transform: daily partial aggregates, point-in-time
feature rows over the lookback window, one preprocessing_fn per entity analysed on the
train rows, transformed train/eval TFRecords, TFDV statistics validated against the
reviewed schema, and a gate.

python -m beam_jobs.features (--events=... | --validated_events=DIR/validated) \
    --run_date=YYYY-MM-DD --output_dir=DIR (--user_id_salt_file=F | --user_id_salt_secret=S) \
    [split, features and Beam options]

Outputs (each folder published by its own _SUCCESS):
  <output_dir>/features/_daily/dt=<run_date>/   partials, Parquet file sets articles, users
  <output_dir>/features/<entity>/dt=<run_date>/ (entity: articles, users)
      transform-<run_id>/{transform_fn, transformed_metadata, metadata}   (file set transform;
          tft.TFTransformOutput of that folder; transform_output_dir() finds it)
      train-*.tfrecord.gz, eval-*.tfrecord.gz   transformed tf.train.Example (GZIP)
      stats_train.tfrecord, stats_eval.tfrecord, anomalies_train.pbtxt and anomalies_eval.pbtxt, stats.html, summary.json
          (file set stats)
      manifest.json, _SUCCESS
"""

import json
import tempfile
import uuid
from typing import Dict, List, Optional

import apache_beam as beam

from beam_jobs import options as opts, validate_events
from schemas import features as F
from transforms.common.span import DaySpan, split_boundary_us
from transforms.features import partials as T
from transforms.publishing.files import SUCCESS, delete_tolerant, write_bytes
from transforms.publishing.latest import read_latest, reset_latest, split_day_folder
from transforms.publishing.protocol import VALIDATION_FIELDS, PublishFileSets, new_run_id, \
    publish_day
from transforms.publishing.readers import manifest_files, published_manifest
from transforms.publishing.writers import FileRecord, WritePieces, bytes_of_mb, require_blessed

OPTION_CLASSES = (opts.EventsOptions, opts.ScaleOptions, opts.ValidatedInputOptions,
                  opts.ValidationOptions, opts.SplitOptions, opts.PrivacyOptions,
                  opts.FeaturesOptions)
REQUIRED_OPTIONS = ("output_dir",)
DESCRIPTION = ("Build the day's article and user features with tf.Transform: daily partial "
               "aggregates merged over the lookback window into point-in-time train and "
               "eval rows, a preprocessing_fn per entity analysed on the train rows, "
               "transformed TFRecords, TFDV statistics validated against the reviewed "
               "schema and a gate; with --events the day is validated inline.")
FEATURE_OPTION_NAMES = ("eval_split", "eval_hours", "eval_fraction", "features_lookback_days",
                        "features_oov_buckets", "features_vocab_min_frequency",
                        "features_ctr_prior", "allow_feature_anomalies", "max_rows_per_shard",
                        "target_shard_mb")
ENTITY_FILE_SETS = ("eval", "stats", "train", "transform")
ID_FEATURES = {F.ARTICLES: F.ARTICLE_ID, F.USERS: F.USER_ID}


class FeatureAnomaliesError(RuntimeError):
    """The feature gate refused an entity's day; its summary.json says why."""


# ---------------------------------------------------------------------------------------------
# Run-time steps (plain functions)


def _read_text(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read().decode("utf-8")


def lookback_plan(output_dir: str, run_date: str, lookback_days: int) -> Dict:
    """Which earlier days' partials the windows use (pipeline step): {"files": [{entity,
    path, days_back, rows}], "used": [days], "skipped": [{day, reason}], "rows": n}. A day
    is used when its validation summary.json says blessed and its partials are published."""
    import datetime as dt
    from apache_beam.io.filesystems import FileSystems
    out = output_dir.rstrip("/")
    today = dt.date.fromisoformat(run_date)
    plan = {"files": [], "used": [], "skipped": [], "rows": 0}
    for days_back in range(1, lookback_days + 1):
        day = (today - dt.timedelta(days=days_back)).isoformat()
        summary_path = f"{out}/validation/dt={day}/summary.json"
        daily_dir = f"{out}/features/{F.DAILY_DIR}/dt={day}"
        if not FileSystems.exists(summary_path):
            plan["skipped"].append({"day": day, "reason": "not validated"})
            continue
        if json.loads(_read_text(summary_path)).get("blessed") is not True:
            plan["skipped"].append({"day": day, "reason": "not blessed"})
            continue
        if not FileSystems.exists(f"{daily_dir}/{SUCCESS}"):
            plan["skipped"].append({"day": day, "reason": "no published partials"})
            continue
        manifest = published_manifest(daily_dir)
        for entity in F.DAILY_FILE_SETS:
            rows = {f["name"]: f["rows"] for f in manifest["file_sets"][entity]["files"]}
            for path in manifest_files(daily_dir, manifest, entity):
                count = rows[path.rsplit("/", 1)[1]]
                plan["files"].append({"entity": entity, "path": path, "days_back": days_back,
                                      "rows": count})
                plan["rows"] += count
        plan["used"].append(day)
    return plan


def transform_output_dir(day_dir: str) -> str:
    """The folder tft.TFTransformOutput reads, of a published features/<entity>/dt=D."""
    manifest = published_manifest(day_dir)
    return f"{day_dir.rstrip('/')}/{manifest['transform_output']}"


def withdraw_entity_day(final_dir: str, run_id: str) -> bool:
    """Unpublish one features/<entity>/dt=D folder (LATEST first, then _SUCCESS)."""
    from apache_beam.io.filesystems import FileSystems
    marker = f"{final_dir}/{SUCCESS}"
    if not FileSystems.exists(marker):
        return False
    kind_dir, day = split_day_folder(final_dir)
    if read_latest(kind_dir) == day:
        reset_latest(kind_dir, run_id, excluding=day)
    delete_tolerant([marker])
    return True


def tree_records(root: str, final_dir: str, file_set: str) -> List[FileRecord]:
    """A FileRecord (rows 0) for every file under `root` (inside final_dir)."""
    from apache_beam.io.filesystems import FileSystems
    found = FileSystems.match([f"{root.rstrip('/')}/**"])[0].metadata_list
    prefix = f"{final_dir.rstrip('/')}/"
    return sorted(FileRecord(file_set, m.path[len(prefix):], 0, m.size_in_bytes, {})
                  for m in found if m.path.startswith(prefix))


class GateFeatures(beam.DoFn):
    """Validates an entity's transformed statistics against the reviewed schema, writes
    stats_train.tfrecord, stats_eval.tfrecord, anomalies_train.pbtxt and anomalies_eval.pbtxt, stats.html and, last,
    summary.json into the day folder, then emits {"summary", "records"} or (refused:
    the day is withdrawn first) raises FeatureAnomaliesError."""

    def __init__(self, entity: str, final_dir: str, schema_text: str, allow: bool,
                 run_date: str, window: Dict, run_id: str):
        self._entity, self._final_dir, self._schema_text = entity, final_dir, schema_text
        self._allow, self._run_date, self._window, self._run_id = allow, run_date, window, \
            run_id

    def process(self, _, train_stats, eval_stats, ingestion, daily_manifest, plan):
        import tensorflow_data_validation as tfdv
        from google.protobuf import text_format
        from tensorflow_metadata.proto.v0 import schema_pb2
        from transforms.common.stats_html import render_stats_html
        from transforms.ingest.validation import anomaly_dicts
        ingestion = require_blessed(ingestion, self._final_dir)
        schema = text_format.Parse(self._schema_text, schema_pb2.Schema())
        environment = F.ENVIRONMENTS[self._entity]
        stats = {"train": train_stats, "eval": eval_stats}
        anomalies = {split: tfdv.validate_statistics(stats[split], schema,
                                                     environment=environment)
                     for split in F.SPLITS}
        found = [dict(a, split=split) for split in F.SPLITS
                 for a in anomaly_dicts(anomalies[split], environment)]
        errors = any(a["severity"] == "ERROR" for a in found)
        blessed, overridden = (not errors) or self._allow, errors and self._allow
        summary = {
            "run_date": self._run_date, "entity": self._entity, "blessed": blessed,
            "overridden": overridden, "reasons": ["anomalies"] if errors else [],
            "anomalies": found,
            "rows": {split: sum(d.num_examples for d in stats[split].datasets)
                     for split in F.SPLITS},
            "window": self._window,
            "lookback": {"used": plan["used"], "skipped": plan["skipped"]},
            "daily_partials_run_id": daily_manifest["run_id"],
        }
        summary_path = f"{self._final_dir}/{F.SUMMARY_FILE}"
        delete_tolerant([summary_path] if _exists(summary_path) else [])
        if not blessed:
            summary["withdrawn"] = withdraw_entity_day(self._final_dir, self._run_id)
        files = {F.STATS_FILES[split]: _tfrecord(stats[split].SerializeToString())
                 for split in F.SPLITS}
        for split in F.SPLITS:
            files[F.ANOMALIES_FILES[split]] = text_format.MessageToString(
                anomalies[split]).encode()
        page = dict(ingestion, blessed=blessed, overridden=overridden,
                    reasons=summary["reasons"], anomalies=found, drift=[],
                    run_date=f"{self._run_date} features/{self._entity}")
        files[F.HTML_FILE] = render_stats_html(stats, page).encode("utf-8")
        files[F.SUMMARY_FILE] = (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
        for name, data in files.items():   # summary.json last
            write_bytes(f"{self._final_dir}/{name}", data)
        if not blessed:
            lines = [f"features/{self._entity} of {self._run_date} refused: the transformed "
                     "statistics break the reviewed schema"]
            lines += [f"[{a['split']}] {a['severity']} {a['feature'] or '(dataset)'}: "
                      f"{a['description']}" for a in found]
            lines.append(f"see {summary_path} (--allow_feature_anomalies publishes anyway)")
            raise FeatureAnomaliesError("\n".join(lines))
        yield {"summary": summary,
               "records": [FileRecord("stats", name, 0, len(data), {})
                           for name, data in files.items()]}


def _exists(path: str) -> bool:
    from apache_beam.io.filesystems import FileSystems
    return FileSystems.exists(path)


def _tfrecord(record: bytes) -> bytes:
    from transforms.publishing.tfrecord import tfrecord_frame
    return tfrecord_frame([record])


# ---------------------------------------------------------------------------------------------
# The stage


def preprocessing_config(args) -> Dict:
    from transforms.features.preprocessing import config_of
    return config_of({"oov_buckets": args.features_oov_buckets,
                      "vocab_min_frequency": args.features_vocab_min_frequency,
                      "ctr_prior": args.features_ctr_prior})


def _temp_dir(pipeline) -> str:
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    location = pipeline.options.view_as(GoogleCloudOptions).temp_location
    base = location.rstrip("/") if location else tempfile.gettempdir()
    return f"{base}/features-tft-{uuid.uuid4().hex[:12]}"


def _transform_entity(pipeline, entity: str, rows: Dict, ctx: Dict):
    import tensorflow_data_validation as tfdv
    import tensorflow_transform.beam as tft_beam
    from transforms.features.preprocessing import preprocessing_fn_for
    name = entity.capitalize()
    final_dir = f"{ctx['out']}/features/{entity}/dt={ctx['day']}"
    run_id = new_run_id()
    tree_name = f"{F.TRANSFORM_TREE}-{run_id}"
    tree_dir = f"{final_dir}/{tree_name}"
    tfxio = T.raw_tfxio(entity)
    adapter = tfxio.TensorAdapterConfig()
    train, evaluate = rows[f"{entity}_train"], rows[f"{entity}_eval"]
    with tft_beam.Context(temp_dir=ctx["temp_dir"]):
        transform_fn = (train, adapter) | f"Analyze{name}" >> tft_beam.AnalyzeDataset(
            preprocessing_fn_for(entity, ctx["config"]))
        transformed = {}
        for split, data in (("train", train), ("eval", evaluate)):
            batches, _ = (((data, adapter), transform_fn)
                          | f"Transform{name}{split.capitalize()}" >> tft_beam.TransformDataset(
                              output_record_batches=True))
            transformed[split] = batches | f"{name}{split.capitalize()}Batches" >> beam.Map(
                lambda e: e[0])
        fn_written = transform_fn | f"Write{name}TransformFn" >> tft_beam.WriteTransformFn(
            tree_dir)
        raw_written = (pipeline | f"Start{name}RawMetadata" >> beam.Create([None])
                       | f"Write{name}RawMetadata" >> beam.Map(
                           _write_raw_metadata, entity, f"{tree_dir}/metadata",
                           beam.pvalue.AsList(fn_written)))
    stats = {split: transformed[split] | f"{name}{split.capitalize()}Stats" >>
             tfdv.GenerateStatistics(tfdv.StatsOptions()) for split in F.SPLITS}
    gate = (pipeline | f"Start{name}Gate" >> beam.Create([None])
            | f"Gate{name}" >> beam.ParDo(
                GateFeatures(entity, final_dir, ctx["schema_text"],
                             ctx["allow_anomalies"], ctx["day"], ctx["window"], run_id),
                beam.pvalue.AsSingleton(stats["train"]), beam.pvalue.AsSingleton(stats["eval"]),
                beam.pvalue.AsSingleton(ctx["gate"]), beam.pvalue.AsSingleton(ctx["daily"]),
                beam.pvalue.AsSingleton(ctx["plan"])))
    id_feature = ID_FEATURES[entity]
    pieces = [transformed[split] | f"Name{name}{split.capitalize()}Pieces" >> beam.Map(
        lambda batch, split=split: (split, T.batch_key(batch, id_feature), batch))
        for split in F.SPLITS]
    written = (pieces | f"Gather{name}Pieces" >> beam.Flatten()
               | f"Write{name}Files" >> beam.ParDo(
                   WritePieces(final_dir, run_id, "tfrecord", ctx["target_bytes"]),
                   beam.pvalue.AsSingleton(gate | f"{name}GateSummary" >> beam.Map(
                       lambda g: g["summary"]))))
    fields = dict(ctx["manifest"], entity=entity, transform_output=tree_name)

    def publish(_, records, gate_out, tree_done, ingestion, plan, described):
        values = dict(fields, lookback={"used": plan["used"], "skipped": plan["skipped"]},
                      input_provenance=described,
                      validation={k: ingestion.get(k) for k in VALIDATION_FIELDS},
                      feature_gate={k: gate_out["summary"][k] for k in
                                    ("blessed", "overridden", "reasons")})
        listed = list(records) + list(gate_out["records"]) + \
            tree_records(tree_dir, final_dir, "transform")
        return publish_day(final_dir, run_id, listed, values, ENTITY_FILE_SETS)

    return (pipeline | f"Start{name}Publish" >> beam.Create([None])
            | f"Publish{name}" >> beam.Map(
                publish, beam.pvalue.AsList(written), beam.pvalue.AsSingleton(gate),
                beam.pvalue.AsList(raw_written), beam.pvalue.AsSingleton(ctx["gate"]),
                beam.pvalue.AsSingleton(ctx["plan"]), beam.pvalue.AsSingleton(ctx["described"])))


def _write_raw_metadata(_, entity: str, path: str, _fn_written) -> str:
    """metadata/ of the transform folder: the raw schema, so raw_feature_spec() works."""
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(T.raw_schema(entity)), path)
    return path


def build_features(pipeline, args, span: DaySpan, valid, gate, index_chunks,
                   source: str, described) -> Dict:
    """Valid rows -> published features/_daily/dt=<run_date> and
    features/{articles,users}/dt=<run_date>.

    valid: (key, pa.Table) of the day's valid rows (contract columns; a bare pa.Table is
    accepted too); gate: the ingestion gate's PCollection (the blessed day's summary dict,
    empty when refused); index_chunks: (pa.Array of article ids, np.ndarray int64
    indexes) chunks of the article index (articles outside it get index 0). Returns
    {"daily": the partials' manifest, "articles": manifest, "users": manifest} (one-element
    PCollections). `source` names the input in the manifests; `described` (one dict,
    transforms.ingest.provenance) says what was read."""
    from transforms.common.sharding import ResolveShardCount
    out = args.output_dir.rstrip("/")
    day = span.run_date.isoformat()
    boundary = split_boundary_us(span.end_us, args.eval_split, args.eval_hours)
    lookback = args.features_lookback_days
    config = preprocessing_config(args)
    window = {"boundary_us": boundary, "end_us": span.end_us, "lookback_days": lookback,
              "train_window_us": [boundary - lookback * 86_400_000_000, boundary],
              "eval_window_us": [span.end_us - lookback * 86_400_000_000, span.end_us]
              if lookback else [span.start_us, span.end_us]}
    plan = (pipeline | "StartLookback" >> beam.Create([None])
            | "PlanLookback" >> beam.Map(lambda _: lookback_plan(out, day, lookback)))
    row_counts = ((valid | "CountFeatureInput" >> beam.Map(
                      lambda e: (e[1] if isinstance(e, tuple) else e).num_rows),
                   plan | "CountLookbackRows" >> beam.Map(lambda p: p["rows"]))
                  | "GatherFeatureCounts" >> beam.Flatten())
    shards = row_counts | "ResolveFeatureShards" >> ResolveShardCount(0, args.max_rows_per_shard)
    num_shards = beam.pvalue.AsSingleton(shards)
    today = valid | "ComputeDailyPartials" >> beam.ParDo(T.ComputeDailyPartials(
        boundary, args.user_id_salt_file, args.user_id_salt_secret), num_shards)
    previous = (plan | "ListLookbackFiles" >> beam.FlatMap(
                    lambda p: [(f["entity"], f["path"], f["days_back"], lookback)
                               for f in p["files"]])
                | "SpreadLookbackFiles" >> beam.Reshuffle()
                | "ReadLookbackPartials" >> beam.FlatMap(T.shard_partial_file, num_shards))
    index = index_chunks | "ShardArticleIndex" >> beam.FlatMap(T.shard_index_chunk, num_shards)
    rows = {"today": today, "lookback": previous, "index": index} | "BuildFeatureRows" >> \
        T.BuildFeatureRows(lookback, boundary, span.end_us, args.eval_split, args.eval_fraction)
    manifest = {"run_date": day, "timezone": span.timezone,
                "span_utc": [span.start.isoformat(), span.end.isoformat()], "input": source,
                "options": {name: getattr(args, name) for name in FEATURE_OPTION_NAMES},
                "window": window}
    daily = rows[T.DAILY] | "PublishDailyPartials" >> PublishFileSets(
        f"{out}/features/{F.DAILY_DIR}/dt={day}", manifest, gate, fmt="parquet",
        target_shard_mb=args.target_shard_mb,
        extra={"feature_shards": shards, "input_provenance": described},
        file_sets=F.DAILY_FILE_SETS)
    with open(F.reviewed_schema_path()) as handle:
        schema_text = handle.read()
    ctx = {"out": out, "day": day, "config": config, "temp_dir": _temp_dir(pipeline),
           "schema_text": schema_text, "allow_anomalies": args.allow_feature_anomalies,
           "window": window, "gate": gate, "daily": daily, "plan": plan,
           "target_bytes": bytes_of_mb(args.target_shard_mb),
           "manifest": manifest, "described": described}
    published = {entity: _transform_entity(pipeline, entity, rows, ctx)
                 for entity in F.ENTITIES}
    return dict(published, daily=daily)


# ---------------------------------------------------------------------------------------------
# The job


def check_args(args) -> None:
    from transforms.common.privacy import require_salt_source
    validate_events.check_input_args(args)
    require_salt_source(args.user_id_salt_file, args.user_id_salt_secret)
    preprocessing_config(args)


def build(pipeline, args, span: DaySpan) -> None:
    from transforms.graph.index_store import ReadArticleIndex
    valid, gate, described = validate_events.read_input(pipeline, args, span,
                                                        T.FEATURE_COLUMNS)
    index = pipeline | "ReadArticleIndex" >> ReadArticleIndex(args.output_dir)
    build_features(pipeline, args, span, valid, gate, index["known"],
                   source=args.events or args.validated_events, described=described)


def run(argv: Optional[List[str]] = None):
    return opts.run_job(argv, "beam_jobs.features", OPTION_CLASSES, DESCRIPTION, check_args,
                        build)


if __name__ == "__main__":
    opts.main(run)
