"""Pipeline options, each declared once. The daily job takes every stage's options,
so every flag name is unique across all jobs (Beam silently merges flags of the
same name). Flex Template metadata is generated from these declarations; launching
(parsing, running, the exit path) is in beam_jobs/launch.py."""

import argparse

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.common.sharding import parse_shard_count


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
    try:
        parse_shard_count(value, "shard count")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
    return str(value).strip().lower()


def _number(value, convert, accept, expected: str):
    """`value` converted by `convert` when that succeeds and `accept` holds, else the
    argparse error naming the accepted form."""
    try:
        number = convert(value)
    except ValueError:
        number = None
    if number is None or not accept(number):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return number


def positive_int(value) -> int:
    return _number(value, int, lambda n: n >= 1, "a whole number >= 1")


def non_negative_int(value) -> int:
    return _number(value, int, lambda n: n >= 0, "a whole number >= 0")


def positive_float(value) -> float:
    return _number(value, float, lambda x: 0 < x < float("inf"), "a number > 0")


def unit_fraction(value) -> float:
    """A number in (0, 1)."""
    return _number(value, float, lambda x: 0 < x < 1, "a number in (0, 1)")


def share(value) -> float:
    """A number in [0, 1]."""
    return _number(value, float, lambda x: 0 <= x <= 1, "a number in [0, 1]")


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
            "--min_volume_ratio", type=float, default=0.6,
            help="A day is refused (reason volume) when its valid rows of a source, or of a "
                 "UTC partition per hour of the span it covers, are under this share of the "
                 "median of the days that set the level in the 7 days before.")
        parser.add_argument(
            "--max_volume_ratio", type=float, default=3.0,
            help="A day is refused (reason volume) when a volume figure is above this "
                 "multiple of that median (see --min_volume_ratio).")
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


class PublishingOptions(PipelineOptions):
    """How long a published day's replaced files stay (every job that publishes)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--keep_replaced_hours", type=non_negative_int, default=48,
            help="Hours the files of a replaced (or withdrawn) run of a day stay after the "
                 "run that replaced it committed, for readers that opened the day before "
                 "(a training job lists a day's files once); each publish then deletes them, "
                 "and a crashed or losing run's pieces older than this. Longer than a "
                 "training job and than any run takes (docs/publishing.md#retention).")


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
            help="Seed a new output folder's article index from a published folder holding "
                 "an index-*.tfrecord.gz file set (a graph day or article_index/v=NNNNNN of "
                 "another output folder): only when <output_dir>/article_index/CURRENT does "
                 "not exist yet (the run is refused otherwise); the version made records it "
                 "as seeded_from and has no parent.")
        parser.add_argument(
            "--graph_shards", type=shard_count, default="auto",
            help="Shards (by a hash of user_id, then of the article) the graph is computed "
                 "in: 'auto' (ceil(interaction rows / --max_rows_per_shard), counted while "
                 "the pipeline runs) or a number.")


class SplitOptions(PipelineOptions):
    """How examples and feature rows are split into train and eval (examples, features)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--eval_split", default="time", choices=["time", "user_hash"],
            help="time: events at or after the day's end minus --eval_hours (elapsed time) "
                 "are eval, and a session or list crossing that boundary is cut there; "
                 "user_hash: a user is eval when the first 8 bytes of the HMAC of their "
                 "pseudonym, as a big-endian unsigned integer, are at least "
                 "(1 - --eval_fraction) * 2^64 (the same users every day for one salt).")
        parser.add_argument(
            "--eval_hours", type=positive_float, default=3.0,
            help="With --eval_split=time: the last this many hours of the day are eval.")
        parser.add_argument(
            "--eval_fraction", type=unit_fraction, default=0.1,
            help="With --eval_split=user_hash: the share of users in eval.")


class PrivacyOptions(PipelineOptions):
    """Pseudonymous user ids: the lowercase hex HMAC-SHA256 of the user id, keyed by a
    salt read on the workers (never an option value)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--user_id_salt_file", default=None,
            help="File (local or gs://) whose bytes, as they are, key the HMAC that "
                 "pseudonymises user ids; read by the workers, never at construction.")
        parser.add_argument(
            "--user_id_salt_secret", default=None,
            help="Secret Manager version holding the salt, "
                 "projects/P/secrets/S/versions/V (on Dataflow, instead of "
                 "--user_id_salt_file); read by the workers.")


class ExamplesOptions(PipelineOptions):
    """Training examples: skip-gram pairs, next-article sequences, ranking lists."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--example_kinds", default="skipgram,sequences,ranking",
            help="Comma-separated kinds to write: skipgram, sequences, ranking.")
        parser.add_argument(
            "--skipgram_subsample", type=positive_float, default=1e-3,
            help="t of the frequent-article subsampling: a position is kept with "
                 "probability min(1, (sqrt(f/t) + 1) * t/f), f its article's share of the "
                 "day's positions.")
        parser.add_argument(
            "--skipgram_window", type=positive_int, default=5,
            help="Pairs are kept positions at most this far apart in the kept sequence.")
        parser.add_argument(
            "--skipgram_negatives", type=non_negative_int, default=4,
            help="Negatives per pair, from the day's unigram distribution raised to 0.75.")
        parser.add_argument(
            "--skipgram_same_region_negatives", type=share, default=0.5,
            help="Share of each pair's negatives drawn from articles of the target's region "
                 "(exactly round(negatives * share)); global when the region has fewer "
                 "than 3 candidates.")
        parser.add_argument(
            "--skipgram_pairs_per_record", type=positive_int, default=1024,
            help="Pairs per skip-gram record (parallel lists target, context, negatives).")
        parser.add_argument(
            "--skipgram_max_pairs", type=non_negative_int, default=200_000_000,
            help="Cap on the day's skip-gram pairs: above it, pairs are kept by a seeded "
                 "sample at rate max / total (about 6 GB of records a day at the default); "
                 "0 turns the cap off.")
        parser.add_argument(
            "--ranking_list_size", type=positive_int, default=100,
            help="Ranking lists hold at most this many impressions.")
        parser.add_argument(
            "--ranking_label_minutes", type=positive_float, default=30.0,
            help="An impression is labelled by the user's strongest engagement with the "
                 "article within this many minutes after it (inclusive).")
        parser.add_argument(
            "--examples_seed", type=int, default=0,
            help="Seed of every draw (subsampling, negatives, the pair cap, file order), "
                 "together with the run date and a stable key of what is drawn.")


class FeaturesOptions(PipelineOptions):
    """Article and user features with tf.Transform."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--features_lookback_days", type=non_negative_int, default=7,
            help="Earlier published, blessed days whose daily partial aggregates are "
                 "merged with today's.")
        parser.add_argument(
            "--features_oov_buckets", type=non_negative_int, default=1,
            help="Out-of-vocabulary buckets of each categorical vocabulary.")
        parser.add_argument(
            "--features_vocab_min_frequency", type=positive_int, default=2,
            help="A categorical value enters a vocabulary when seen in at least this many "
                 "train rows.")
        parser.add_argument(
            "--features_ctr_prior", type=positive_float, default=10.0,
            help="a of the smoothed click-through rate (views + a * p) / (impressions + a).")
        parser.add_argument(
            "--allow_feature_anomalies", type=str_to_bool, nargs="?", const=True,
            default=False,
            help="Publish the features even when the transformed data breaks the reviewed "
                 "schema; summary.json says overridden.")


class DailyOptions(PipelineOptions):
    """Which stages the daily job runs after validation."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--daily_stages", default="graph,examples,features",
            help="Comma-separated stages after validation: graph (the co-occurrence graph "
                 "and the article index version), examples, features; examples and "
                 "features take the index the graph stage publishes, so they need graph.")


def require(value, flag: str, form: str):
    if value in (None, ""):
        raise ValueError(f"{flag} is required: {form}")
    return value
