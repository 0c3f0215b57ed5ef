"""The tf.Transform preprocessing_fns of the article and user features, one per entity.

Each is analysed over the train rows of a day (tft_beam.AnalyzeDataset) and exported
as a graph (transform_fn/) that training and TF Serving run on raw rows, so both see
one encoding. Names, raw types and fixed constants come from schemas/features.py.

  categorical ids   tft.compute_and_apply_vocabulary with `oov_buckets` OOV buckets and
                    `vocab_min_frequency` (a value enters when seen in at least that many
                    train rows); a missing value is MISSING_TOKEN, a value like any other
  counts            log1p, then the z-score of the train rows (std 0: just minus the mean)
  price             log1p, then the z-score of the train rows that have a price; a missing
                    price is 0.0 (the train mean) and price_missing = 1
  age_hours         age_bucket: the number of AGE_BOUNDARIES_HOURS <= age; missing ->
                    AGE_MISSING_BUCKET
  ctr               (views + a * p) / (impressions + a), p = sum(views) / sum(impressions)
                    of the train rows (0 when they have no impressions), a = `ctr_prior`
  top_categories    vocabulary ids in the raw order (count desc, id asc), padded with
                    TOP_CATEGORY_PAD to TOP_CATEGORY_COUNT
  ids               article_id, article_index, user_id and sold pass through unchanged

custom_config: {"oov_buckets": int, "vocab_min_frequency": int, "ctr_prior": float};
missing keys take DEFAULT_CONFIG (the options' defaults).
"""

import functools
from typing import Callable, Dict, Optional

from schemas import features as F

DEFAULT_CONFIG = {"oov_buckets": 1, "vocab_min_frequency": 2, "ctr_prior": 10.0}


def config_of(custom_config: Optional[Dict]) -> Dict:
    config = dict(DEFAULT_CONFIG)
    config.update(custom_config or {})
    unknown = sorted(set(config) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown preprocessing config keys {unknown}; known: "
                         f"{sorted(DEFAULT_CONFIG)}")
    if config["oov_buckets"] < 0 or config["vocab_min_frequency"] < 1 or \
            not config["ctr_prior"] > 0:
        raise ValueError(f"bad preprocessing config {config}: oov_buckets >= 0, "
                         "vocab_min_frequency >= 1, ctr_prior > 0")
    return config


def _batch_size(tensor):
    import tensorflow as tf
    if isinstance(tensor, tf.SparseTensor):
        return tensor.dense_shape[0]
    return tf.shape(tensor, out_type=tf.int64)[0]


def _sparse_to_dense(sparse, width: int, default):
    """A SparseTensor of at most `width` values a row -> dense [batch, width]."""
    import tensorflow as tf
    shaped = tf.SparseTensor(sparse.indices, sparse.values,
                             tf.stack([sparse.dense_shape[0], tf.constant(width, tf.int64)]))
    return tf.sparse.to_dense(shaped, default_value=default)


def _dense_string(sparse):
    """An optional string -> [batch], MISSING_TOKEN where absent."""
    return _sparse_to_dense(sparse, 1, F.MISSING_TOKEN)[:, 0]


def _vocabulary(values, name: str, config: Dict):
    import tensorflow_transform as tft
    return tft.compute_and_apply_vocabulary(
        values, frequency_threshold=config["vocab_min_frequency"],
        num_oov_buckets=config["oov_buckets"], vocab_filename=name)


def _log_count_z(counts):
    import tensorflow as tf
    import tensorflow_transform as tft
    return tft.scale_to_z_score(tf.math.log1p(tf.cast(counts, tf.float32)))


def _scatter_rows(sparse, row_values, fill):
    """[batch] holding row_values[i] at the row of the sparse tensor's i-th value, `fill`
    elsewhere (at most one value a row)."""
    import tensorflow as tf
    batch = sparse.dense_shape[0]
    base = tf.fill(tf.reshape(batch, [1]), tf.cast(fill, row_values.dtype))
    return tf.tensor_scatter_nd_update(base, sparse.indices[:, :1], row_values)


def _price_features(price):
    import tensorflow as tf
    import tensorflow_transform as tft
    logs = tf.math.log1p(tf.cast(price.values, tf.float32))
    mean = tft.mean(logs)
    std = tf.sqrt(tft.var(logs))
    mean = tf.where(tf.math.is_finite(mean), mean, 0.0)
    std = tf.where(tf.math.is_finite(std), std, 0.0)
    centred = logs - mean
    z = tf.where(std > 0, centred / tf.where(std > 0, std, 1.0), centred)
    present = _scatter_rows(price, tf.ones_like(price.values), 0)
    return _scatter_rows(price, z, 0.0), tf.cast(1 - present, tf.int64)


def age_bucket_values(ages):
    """Bucket of each age in hours: the number of AGE_BOUNDARIES_HOURS <= age."""
    import tensorflow as tf
    boundaries = tf.constant(F.AGE_BOUNDARIES_HOURS, tf.float32)
    return tf.reduce_sum(tf.cast(tf.expand_dims(ages, -1) >= boundaries, tf.int64), axis=-1)


def articles_preprocessing_fn(inputs: Dict, custom_config: Optional[Dict] = None) -> Dict:
    """Raw article rows (schemas.features.ARTICLE_RAW) -> ARTICLE_TRANSFORMED."""
    import tensorflow as tf
    import tensorflow_transform as tft
    config = config_of(custom_config)
    out = {F.ARTICLE_ID: inputs[F.ARTICLE_ID], F.ARTICLE_INDEX: inputs[F.ARTICLE_INDEX],
           F.SOLD: inputs[F.SOLD]}
    out[F.CATEGORY] = _vocabulary(_dense_string(inputs[F.CATEGORY_ID]),
                                  F.VOCAB_ARTICLE_CATEGORY, config)
    out[F.REGION] = _vocabulary(_dense_string(inputs[F.REGION_ID]), F.VOCAB_ARTICLE_REGION,
                                config)
    out[F.PRICE_Z], out[F.PRICE_MISSING] = _price_features(inputs[F.PRICE])
    age = inputs[F.AGE_HOURS]
    out[F.AGE_BUCKET] = _scatter_rows(age, age_bucket_values(age.values),
                                      F.AGE_MISSING_BUCKET)
    for name, z_name in zip(F.ARTICLE_COUNTS, F.ARTICLE_COUNT_Z):
        out[z_name] = _log_count_z(inputs[name])
    views = tf.cast(inputs[F.VIEWS], tf.float32)
    impressions = tf.cast(inputs[F.IMPRESSIONS], tf.float32)
    rate = tf.math.divide_no_nan(tft.sum(views), tft.sum(impressions))
    prior = tf.constant(float(config["ctr_prior"]), tf.float32)
    out[F.CTR] = (views + prior * rate) / (impressions + prior)
    return out


def users_preprocessing_fn(inputs: Dict, custom_config: Optional[Dict] = None) -> Dict:
    """Raw user rows (schemas.features.USER_RAW) -> USER_TRANSFORMED."""
    import tensorflow as tf
    config = config_of(custom_config)
    out = {F.USER_ID: inputs[F.USER_ID]}
    out[F.REGION] = _vocabulary(_dense_string(inputs[F.REGION_ID]), F.VOCAB_USER_REGION,
                                config)
    out[F.PLATFORM] = _vocabulary(_dense_string(inputs[F.PLATFORM]), F.VOCAB_USER_PLATFORM,
                                  config)
    for name, z_name in zip(F.USER_COUNTS, F.USER_COUNT_Z):
        out[z_name] = _log_count_z(inputs[name])
    ids = _vocabulary(inputs[F.TOP_CATEGORIES], F.VOCAB_USER_CATEGORY, config)
    dense = _sparse_to_dense(ids, F.TOP_CATEGORY_COUNT, tf.constant(F.TOP_CATEGORY_PAD, tf.int64))
    out[F.TOP_CATEGORIES] = tf.reshape(dense, [-1, F.TOP_CATEGORY_COUNT])
    return out


PREPROCESSING_FNS = {F.ARTICLES: articles_preprocessing_fn, F.USERS: users_preprocessing_fn}


def preprocessing_fn_for(entity: str, custom_config: Optional[Dict] = None) -> Callable:
    """The entity's preprocessing_fn with its config bound (checked now)."""
    config = config_of(custom_config)
    return functools.partial(PREPROCESSING_FNS[entity], custom_config=config)
