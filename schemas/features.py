"""Names, raw types and fixed constants of the article and user features (one place).

Raw feature rows (what tf.Transform analyses, and what serving parses with
TFTransformOutput.raw_feature_spec()) and the transformed features the
preprocessing_fns (transforms/features/preprocessing.py) output. The reviewed schema of the
transformed features is schemas/features_schema.pbtxt (environments ARTICLES and
USERS); tests keep the two in step.
"""

import os
from typing import Dict, Tuple

from schemas import contract

ARTICLES = "articles"
USERS = "users"
ENTITIES = (ARTICLES, USERS)
ENVIRONMENTS = {ARTICLES: "ARTICLES", USERS: "USERS"}
SPLITS = contract.SPLITS

# Today's partial aggregates are stored in two parts: before the split boundary, and
# from it to the day's end.
PART_BEFORE = 0
PART_FROM = 1

# --------------------------------------------------------------------------------------
# Raw feature rows. Kinds: int (int64), float (float32), string (bytes). "required"
# features are FixedLenFeature([]) (every row has one value); "optional" ones are
# VarLenFeature (zero or one value; top_categories zero to TOP_CATEGORIES values).

ARTICLE_ID = "article_id"
ARTICLE_INDEX = "article_index"
CATEGORY_ID = "category_id"
REGION_ID = "region_id"
PRICE = "price"
AGE_HOURS = "age_hours"
VIEWS = "views"
LIKES = "likes"
CHATS = "chats"
IMPRESSIONS = "impressions"
SOLD = "sold"

USER_ID = "user_id"          # the pseudonym (HMAC-SHA256 hex), never the raw id
PLATFORM = "platform"
TOP_CATEGORIES = "top_categories"
TOP_CATEGORY_COUNT = 3

# Article counts: raw feature -> the client event name it counts.
ARTICLE_COUNTS = {VIEWS: contract.ARTICLE_VIEW, LIKES: contract.ARTICLE_LIKE,
                  CHATS: contract.CHAT_START, IMPRESSIONS: contract.IMPRESSION}
# User counts: one per client event name.
USER_COUNTS = {f"count_{name}": name for name in contract.CLIENT_EVENTS}

# (name, kind, required) in row order.
ARTICLE_RAW: Tuple[Tuple[str, str, bool], ...] = (
    (ARTICLE_ID, "string", True),
    (ARTICLE_INDEX, "int", True),
    (CATEGORY_ID, "string", False),
    (REGION_ID, "string", False),
    (PRICE, "int", False),
    (AGE_HOURS, "float", False),
) + tuple((name, "int", True) for name in ARTICLE_COUNTS) + ((SOLD, "int", True),)

USER_RAW: Tuple[Tuple[str, str, bool], ...] = (
    (USER_ID, "string", True),
    (REGION_ID, "string", False),
    (PLATFORM, "string", False),
) + tuple((name, "int", True) for name in USER_COUNTS) + ((TOP_CATEGORIES, "string", False),)

RAW_FEATURES = {ARTICLES: ARTICLE_RAW, USERS: USER_RAW}

# --------------------------------------------------------------------------------------
# Transformed features.

# Vocabularies (tft.compute_and_apply_vocabulary), one file each, by name.
VOCAB_ARTICLE_CATEGORY = "article_category"
VOCAB_ARTICLE_REGION = "article_region"
VOCAB_USER_REGION = "user_region"
VOCAB_USER_PLATFORM = "user_platform"
VOCAB_USER_CATEGORY = "user_category"
# A missing categorical value is this token (so it is one more value of the vocabulary:
# its own id when at least --features_vocab_min_frequency train rows lack the value,
# else an OOV bucket).
MISSING_TOKEN = "__missing__"
# top_categories ids are padded to TOP_CATEGORY_COUNT with this.
TOP_CATEGORY_PAD = -1

# age_bucket: i where AGE_BOUNDARIES_HOURS[i-1] <= age_hours < AGE_BOUNDARIES_HOURS[i]
# (0 below the first boundary); an article whose article_created is not in the window
# gets AGE_MISSING_BUCKET.
AGE_BOUNDARIES_HOURS = (1.0, 6.0, 24.0, 72.0, 168.0, 720.0)
AGE_MISSING_BUCKET = len(AGE_BOUNDARIES_HOURS) + 1
AGE_BUCKET = "age_bucket"

# Prices: log1p(price), z-scored with the mean and standard deviation of the train rows
# that have a price; a missing price is 0.0 (the train mean) with price_missing = 1.
PRICE_Z = "price_z"
PRICE_MISSING = "price_missing"
CTR = "ctr"
CATEGORY = "category"
REGION = "region"

ARTICLE_COUNT_Z = tuple(f"{name}_z" for name in ARTICLE_COUNTS)
USER_COUNT_Z = tuple(f"{name}_z" for name in USER_COUNTS)

# Transformed features: name -> (kind, values per row).
ARTICLE_TRANSFORMED: Dict[str, Tuple[str, int]] = dict(
    [(ARTICLE_ID, ("string", 1)), (ARTICLE_INDEX, ("int", 1)), (CATEGORY, ("int", 1)),
     (REGION, ("int", 1)), (PRICE_Z, ("float", 1)), (PRICE_MISSING, ("int", 1)),
     (AGE_BUCKET, ("int", 1))]
    + [(name, ("float", 1)) for name in ARTICLE_COUNT_Z]
    + [(CTR, ("float", 1)), (SOLD, ("int", 1))])
USER_TRANSFORMED: Dict[str, Tuple[str, int]] = dict(
    [(USER_ID, ("string", 1)), (REGION, ("int", 1)), (PLATFORM, ("int", 1))]
    + [(name, ("float", 1)) for name in USER_COUNT_Z]
    + [(TOP_CATEGORIES, ("int", TOP_CATEGORY_COUNT))])
TRANSFORMED_FEATURES = {ARTICLES: ARTICLE_TRANSFORMED, USERS: USER_TRANSFORMED}

# --------------------------------------------------------------------------------------
# Daily partial aggregates (features/_daily/dt=D/, Parquet, file sets "articles" and
# "users"), one row per (entity, part).

PART = "part"
# Articles: counts summed, sold OR-ed (max), created_us the earliest article_created
# (null when none), each attribute the value of its last row by (event_timestamp,
# event_id) among the rows that have it.
CREATED_US = "created_us"
ATTRIBUTES = (CATEGORY_ID, REGION_ID, PRICE)
ARTICLE_PARTIAL_COUNTS = tuple(ARTICLE_COUNTS) + (SOLD,)


def attribute_columns(name: str) -> Tuple[str, str, str]:
    """(value, timestamp in microseconds, event id) columns of an attribute's last row."""
    return name, f"{name}_ts", f"{name}_event"


# Users, long form: (user_id, part, kind, key, n), kinds below, n summed when merged.
KIND = "kind"
KEY = "key"
COUNT = "n"
KIND_EVENT = "event"       # key: a client event name
KIND_REGION = "region"     # key: a region id
KIND_PLATFORM = "platform"
KIND_CATEGORY = "category"
USER_KINDS = (KIND_EVENT, KIND_REGION, KIND_PLATFORM, KIND_CATEGORY)

DAILY_DIR = "_daily"
DAILY_FILE_SETS = ENTITIES

# Feature folder files: the gate's, each named for its run (gate_file_name) and listed in
# the manifest's "stats" file set (transforms.features.gate.published_gate_files).
STATS_FILES = {"train": "stats_train.tfrecord", "eval": "stats_eval.tfrecord"}
# One Anomalies message per file, so tfdv.load_anomalies_text loads each.
ANOMALIES_FILES = {"train": "anomalies_train.pbtxt", "eval": "anomalies_eval.pbtxt"}
HTML_FILE = "stats.html"
SUMMARY_FILE = "summary.json"


def gate_file_name(name: str, run_id: str) -> str:
    """stats_train.tfrecord -> stats_train-<run_id>.tfrecord: the gate's file of one run."""
    stem, dot, suffix = name.partition(".")
    return f"{stem}-{run_id}{dot}{suffix}"
TRANSFORM_TREE = "transform"   # <day>/transform-<run_id>/{transform_fn,transformed_metadata,metadata}


def reviewed_schema_path() -> str:
    """schemas/features_schema.pbtxt, shipped with the suite."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "features_schema.pbtxt")


def raw_feature_spec(entity: str) -> Dict:
    """The tf.io feature spec of an entity's raw rows."""
    import tensorflow as tf
    dtypes = {"int": tf.int64, "float": tf.float32, "string": tf.string}
    return {name: tf.io.FixedLenFeature([], dtypes[kind]) if required
            else tf.io.VarLenFeature(dtypes[kind])
            for name, kind, required in RAW_FEATURES[entity]}
