"""The features stage wired into a pipeline: valid rows -> published daily partials and,
per entity, a tf.Transform analysis on the train rows, transformed train and eval
TFRecords, the features gate and the entity's day published with its transform folder
(docs/features.md).

The steps are applied at the caller's scope (plain wiring functions, not PTransform
classes) so their Beam names stay those dashboards know ("AnalyzeArticles",
"GateUsers", "PublishDailyPartials", ...); their logic lives in partials.py, rows.py,
gate.py and lookback.py. FeatureParams is checked when it is made, before anything is built.
"""

import tempfile
import uuid
from typing import Dict, NamedTuple, Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import GoogleCloudOptions

from schemas import features as F
from transforms.common.sharding import ResolveShardCount
from transforms.common.span import DaySpan, split_boundary_us
from transforms.features import partials as T, rows as R, tfxio_rows
from transforms.features.gate import GateFeatures
from transforms.features.lookback import feature_window, lookback_plan
from transforms.features.preprocessing import config_of
from transforms.features.preprocessing import preprocessing_fn_for
from transforms.publishing.protocol import VALIDATION_FIELDS, PublishFileSets, new_run_id, \
    publish_day, read_base
from transforms.publishing.readers import published_manifest
from transforms.publishing.retention import check_keep_hours
from transforms.publishing.writers import WritePieces, bytes_of_mb, publish_tree

ENTITY_FILE_SETS = ("eval", "stats", "train", "transform")
ID_FEATURES = {F.ARTICLES: F.ARTICLE_ID, F.USERS: F.USER_ID}
EVAL_SPLITS = ("time", "user_hash")


class FeatureParams(NamedTuple):
    """What the features stage needs of the options; check() refuses a bad one early."""
    output_dir: str
    eval_split: str
    eval_hours: float
    eval_fraction: float
    lookback_days: int
    oov_buckets: int
    vocab_min_frequency: int
    ctr_prior: float
    allow_anomalies: bool
    max_rows_per_shard: int
    target_shard_mb: float
    keep_replaced_hours: float
    salt_file: Optional[str]
    salt_secret: Optional[str]
    options: Dict          # the options as the manifests list them

    def preprocessing_config(self) -> Dict:
        return config_of({"oov_buckets": self.oov_buckets,
                          "vocab_min_frequency": self.vocab_min_frequency,
                          "ctr_prior": self.ctr_prior})

    def check(self) -> "FeatureParams":
        if not self.output_dir:
            raise ValueError("--output_dir is required: a local or gs:// directory")
        if self.eval_split not in EVAL_SPLITS:
            raise ValueError(f"--eval_split={self.eval_split!r}; expected one of "
                             f"{', '.join(EVAL_SPLITS)}")
        if self.lookback_days < 0:
            raise ValueError(f"--features_lookback_days={self.lookback_days} must be >= 0")
        if self.target_shard_mb <= 0:
            raise ValueError(f"--target_shard_mb={self.target_shard_mb} must be > 0")
        check_keep_hours(self.keep_replaced_hours)
        self.preprocessing_config()
        return self


def transform_output_dir(day_dir: str) -> str:
    """The folder tft.TFTransformOutput reads, of a published features/<entity>/dt=D."""
    manifest = published_manifest(day_dir)
    return f"{day_dir.rstrip('/')}/{manifest['transform_output']}"


def write_raw_metadata(_, entity: str, path: str, _fn_written) -> str:
    """metadata/ of the transform folder: the raw schema, so raw_feature_spec() works."""
    # Imported here: tf.Transform loads TensorFlow, kept out of pipeline construction.
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(tfxio_rows.raw_schema(entity)), path)
    return path


def _temp_dir(pipeline) -> str:
    location = pipeline.options.view_as(GoogleCloudOptions).temp_location
    base = location.rstrip("/") if location else tempfile.gettempdir()
    return f"{base}/features-tft-{uuid.uuid4().hex[:12]}"


def transform_entity(pipeline, entity: str, rows: Dict, ctx: Dict):
    """One entity: analyse the train rows, transform train and eval, write the transform
    folder, gate the transformed statistics, write the TFRecords, publish the day."""
    # Imported here: TFDV and tf.Transform load TensorFlow.
    import tensorflow_data_validation as tfdv
    import tensorflow_transform.beam as tft_beam
    name = entity.capitalize()
    final_dir = f"{ctx['out']}/features/{entity}/dt={ctx['day']}"
    run_id = new_run_id()
    tree_name = f"{F.TRANSFORM_TREE}-{run_id}"
    # tf.Transform writes the folder in the run's temp place; publishing copies it in.
    tree_dir = f"{ctx['temp_dir']}/{entity}-{tree_name}"
    tfxio = tfxio_rows.raw_tfxio(entity)
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
                           write_raw_metadata, entity, f"{tree_dir}/metadata",
                           beam.pvalue.AsList(fn_written)))
    stats = {split: transformed[split] | f"{name}{split.capitalize()}Stats" >>
             tfdv.GenerateStatistics(tfdv.StatsOptions()) for split in F.SPLITS}
    # What the run replaces, read before anything of the entity lands in its day folder
    # (the transform tree is written to the temp place and copied in by the commit).
    base = (pipeline | f"Start{name}ReadBase" >> beam.Create([None])
            | f"Read{name}PublishedBase" >> beam.Map(
                lambda _, folder=final_dir: tuple(read_base(folder))))
    base_input = beam.pvalue.AsSingleton(base)
    gate = (pipeline | f"Start{name}Gate" >> beam.Create([None])
            | f"Gate{name}" >> beam.ParDo(
                GateFeatures(entity, final_dir, ctx["schema_text"],
                             ctx["allow_anomalies"], ctx["day"], ctx["window"], run_id,
                             ctx["on_refusal"]),
                beam.pvalue.AsSingleton(stats["train"]), beam.pvalue.AsSingleton(stats["eval"]),
                beam.pvalue.AsSingleton(ctx["gate"]), beam.pvalue.AsSingleton(ctx["daily"]),
                beam.pvalue.AsSingleton(ctx["plan"]), base=base_input))
    id_feature = ID_FEATURES[entity]
    pieces = [transformed[split] | f"Name{name}{split.capitalize()}Pieces" >> beam.Map(
        lambda batch, split=split: (split, tfxio_rows.batch_key(batch, id_feature), batch))
        for split in F.SPLITS]
    written = (pieces | f"Gather{name}Pieces" >> beam.Flatten()
               | f"Write{name}Files" >> beam.ParDo(
                   WritePieces(final_dir, run_id, "tfrecord", ctx["target_bytes"]),
                   beam.pvalue.AsSingleton(gate | f"{name}GateSummary" >> beam.Map(
                       lambda g: g["summary"])), base=base_input))
    fields = dict(ctx["manifest"], entity=entity, transform_output=tree_name)

    def publish(_, records, gate_out, tree_done, ingestion, plan, described, index,
                base=None):
        values = dict(fields, lookback={"used": plan["used"], "skipped": plan["skipped"]},
                      input_provenance=described, article_index=index,
                      validation={k: ingestion.get(k) for k in VALIDATION_FIELDS},
                      feature_gate={k: gate_out["summary"][k] for k in
                                    ("blessed", "overridden", "reasons")})
        listed = list(records) + list(gate_out["records"]) + \
            publish_tree(tree_dir, final_dir, F.TRANSFORM_TREE, run_id, "transform")
        return publish_day(final_dir, run_id, listed, values, ENTITY_FILE_SETS, base=base,
                           keep_hours=ctx["keep_hours"])

    return (pipeline | f"Start{name}Publish" >> beam.Create([None])
            | f"Publish{name}" >> beam.Map(
                publish, beam.pvalue.AsList(written), beam.pvalue.AsSingleton(gate),
                beam.pvalue.AsList(raw_written), beam.pvalue.AsSingleton(ctx["gate"]),
                beam.pvalue.AsSingleton(ctx["plan"]), beam.pvalue.AsSingleton(ctx["described"]),
                beam.pvalue.AsSingleton(ctx["index"]), base=base_input))


def build_features(pipeline, params: FeatureParams, span: DaySpan, valid, gate, index_chunks,
                   index, source: str, described, on_refusal=None) -> Dict:
    """Valid rows -> published features/_daily/dt=<run_date> and
    features/{articles,users}/dt=<run_date>.

    valid: (key, pa.Table) of the day's valid rows (contract columns; a bare pa.Table is
    accepted too); gate: the ingestion gate's PCollection (the blessed day's summary dict,
    empty when refused); index_chunks: (pa.Array of article ids, np.ndarray int64
    indexes) chunks of the article index the run extended (articles outside it get index
    0); index: the version dict it published (PublishArticleIndex's output), which every
    features manifest records as article_index, so each commit waits on it. Returns
    {"daily": the partials' manifest, "articles": manifest, "users": manifest} (one-element
    PCollections). `source` names the input in the manifests; `described` (one dict,
    transforms.ingest.provenance) says what was read; `on_refusal` runs before a features
    gate's refusal fails the job (the job's report of the day)."""
    out = params.output_dir.rstrip("/")
    day = span.run_date.isoformat()
    boundary = split_boundary_us(span.end_us, params.eval_split, params.eval_hours)
    lookback = params.lookback_days
    window = feature_window(span, boundary, lookback)
    plan = (pipeline | "StartLookback" >> beam.Create([None])
            | "PlanLookback" >> beam.Map(lambda _: lookback_plan(out, day, lookback)))
    row_counts = ((valid | "CountFeatureInput" >> beam.Map(
                      lambda e: (e[1] if isinstance(e, tuple) else e).num_rows),
                   plan | "CountLookbackRows" >> beam.Map(lambda p: p["rows"]))
                  | "GatherFeatureCounts" >> beam.Flatten())
    shards = row_counts | "ResolveFeatureShards" >> ResolveShardCount(
        0, params.max_rows_per_shard)
    num_shards = beam.pvalue.AsSingleton(shards)
    today = valid | "ComputeDailyPartials" >> beam.ParDo(T.ComputeDailyPartials(
        boundary, params.salt_file, params.salt_secret), num_shards)
    previous = (plan | "ListLookbackFiles" >> beam.FlatMap(
                    lambda p: [(f["entity"], f["path"], f["days_back"], lookback)
                               for f in p["files"]])
                | "SpreadLookbackFiles" >> beam.Reshuffle()
                | "ReadLookbackPartials" >> beam.FlatMap(R.shard_partial_file, num_shards))
    index_shards = index_chunks | "ShardArticleIndex" >> beam.FlatMap(R.shard_index_chunk,
                                                                       num_shards)
    rows = {"today": today, "lookback": previous, "index": index_shards} | "BuildFeatureRows" >> \
        R.BuildFeatureRows(lookback, boundary, span.end_us, params.eval_split,
                           params.eval_fraction)
    manifest = {"run_date": day, "timezone": span.timezone,
                "span_utc": [span.start.isoformat(), span.end.isoformat()], "input": source,
                "options": dict(params.options), "window": window}
    daily = rows[T.DAILY] | "PublishDailyPartials" >> PublishFileSets(
        f"{out}/features/{F.DAILY_DIR}/dt={day}", manifest, gate, fmt="parquet",
        target_shard_mb=params.target_shard_mb,
        extra={"feature_shards": shards, "input_provenance": described,
               "article_index": index},
        file_sets=F.DAILY_FILE_SETS, keep_hours=params.keep_replaced_hours)
    with open(F.reviewed_schema_path()) as handle:
        schema_text = handle.read()
    ctx = {"out": out, "day": day, "config": params.preprocessing_config(),
           "temp_dir": _temp_dir(pipeline), "schema_text": schema_text,
           "allow_anomalies": params.allow_anomalies, "window": window, "gate": gate,
           "daily": daily, "plan": plan, "target_bytes": bytes_of_mb(params.target_shard_mb),
           "manifest": manifest, "described": described, "index": index,
           "keep_hours": params.keep_replaced_hours, "on_refusal": on_refusal}
    published = {entity: transform_entity(pipeline, entity, rows, ctx)
                 for entity in F.ENTITIES}
    return dict(published, daily=daily)
