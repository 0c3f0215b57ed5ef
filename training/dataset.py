"""The tf.data side of training.reader: feature specs for tf.io parsing, and the dataset
of checked days (`training.reader.ExampleDays.dataset` builds it with `build_dataset`).

TensorFlow is imported inside the functions only, so that training.reader can find and
check days (and size the vocabulary) before anything imports TensorFlow.
"""

import math
from typing import Dict, Optional, Tuple

AUTOTUNE = -1             # tf.data.AUTOTUNE, without importing TensorFlow here
#: Skip-gram pairs are permuted within chunks of at least this many pairs (whole records).
SKIPGRAM_CHUNK_PAIRS = 8_192
#: With num_parallel_reads=AUTOTUNE, at most this many files are open at once.
MAX_FILES_AT_ONCE = 16
#: Sequence records are read in chunks of this many (or of a batch, when larger).
SEQUENCE_CHUNK_RECORDS = 1_024
_DTYPES = {"int64": "int64", "float32": "float32", "string": "string"}


# ---------------------------------------------------------------------------------------------
# Feature specs


def feature_spec_to_tf(spec: Dict) -> Tuple[Dict, Dict]:
    """A manifest's feature_spec -> (features, sequence features) for tf.io parsing.

    tf.train.Example specs give (features, {}); tf.train.SequenceExample specs give
    (context features, sequence features). A feature of shape [] or [k] is a
    FixedLenFeature of that shape; shape null (variable length) a VarLenFeature. A
    sequence feature of fixed shape is a FixedLenSequenceFeature (padded by
    parse_sequence_example, with lengths), of shape null a VarLenFeature."""
    import tensorflow as tf  # heavy: imported only once a dataset is built
    encoding = spec.get("encoding")

    def dtype_of(name, feature):
        dtype = feature.get("dtype")
        if dtype not in _DTYPES:
            raise ValueError(f"feature {name!r}: dtype {dtype!r} is not one of "
                             f"{sorted(_DTYPES)}")
        return tf.as_dtype(_DTYPES[dtype])

    def shape_of(name, feature):
        shape = feature.get("shape", "missing")
        if shape is None:
            return None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0
                                                  for d in shape):
            raise ValueError(f"feature {name!r}: shape {shape!r} is neither null nor a "
                             "list of non-negative ints")
        return shape

    def plain(features):
        out = {}
        for name, feature in sorted(features.items()):
            shape = shape_of(name, feature)
            out[name] = tf.io.VarLenFeature(dtype_of(name, feature)) if shape is None else \
                tf.io.FixedLenFeature(shape, dtype_of(name, feature))
        return out

    if encoding == "tf.train.Example":
        return plain(spec["features"]), {}
    if encoding == "tf.train.SequenceExample":
        sequence = {}
        for name, feature in sorted(spec["sequence"].items()):
            shape = shape_of(name, feature)
            sequence[name] = tf.io.VarLenFeature(dtype_of(name, feature)) if shape is None \
                else tf.io.FixedLenSequenceFeature(shape, dtype_of(name, feature))
        return plain(spec["context"]), sequence
    raise ValueError(f"feature spec encoding {encoding!r} is neither tf.train.Example nor "
                     "tf.train.SequenceExample")


# ---------------------------------------------------------------------------------------------
# The dataset


def build_dataset(source, batch_size: int, shuffle_buffer: int, seed: Optional[int],
                  num_parallel_reads: int, drop_remainder: bool, deterministic: bool):
    """The dataset of `source`, a training.reader.ExampleDays (see its `dataset`).

    files -> chunks of serialized records (each from one file, files interleaved) ->
    [shuffled] -> parsed batches. Everything after the TFRecord reader moves chunks or
    batches, never single records: a tf.data element costs microseconds, and records
    of a few hundred bytes parse in less."""
    import tensorflow as tf  # heavy: imported only once a dataset is built
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer={shuffle_buffer} must be >= 0 (0: no shuffling)")
    if num_parallel_reads != AUTOTUNE and num_parallel_reads < 1:
        raise ValueError(f"num_parallel_reads={num_parallel_reads} must be >= 1 or AUTOTUNE")
    shuffle = shuffle_buffer > 0
    files = tf.constant(list(source.files), dtype=tf.string, shape=[len(source.files)])
    names = tf.data.Dataset.from_tensor_slices(files)
    if shuffle and len(source.files) > 1:
        names = names.shuffle(len(source.files), seed=seed, reshuffle_each_iteration=True)
    features, sequence = source.tf_feature_spec()
    skipgram = source.kind == "skipgram"
    if skipgram:
        # Records of up to pairs_per_record pairs: chunks of whole records, >= a batch.
        per_record = max(1, source.pairs_per_record or 1)
        chunk = max(1, math.ceil(max(batch_size, SKIPGRAM_CHUNK_PAIRS) / per_record))
    else:
        per_record, chunk = 1, min(max(batch_size, SEQUENCE_CHUNK_RECORDS),
                                   max(1, shuffle_buffer) if shuffle else batch_size)
    chunks = _read_chunks(names, chunk, len(source.files), num_parallel_reads,
                          deterministic)
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    if skipgram:
        if shuffle:
            # Chunks of whole records, shuffled; then pairs permuted within each chunk.
            chunks = chunks.shuffle(max(1, math.ceil(shuffle_buffer / (chunk * per_record))),
                                    seed=seed, reshuffle_each_iteration=True)
            pairs = tf.data.Dataset.zip(draws, chunks).map(
                lambda draw, serialized: _permuted(
                    _flatten_pairs(serialized, features, source.skipgram_negatives), draw),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        else:
            pairs = chunks.map(
                lambda serialized: _flatten_pairs(serialized, features,
                                                  source.skipgram_negatives),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
        dataset = pairs.rebatch(batch_size, drop_remainder=drop_remainder)
    else:
        if shuffle:
            # Blocks of shuffle_buffer records (chunks of the interleaved files)
            # permuted as a whole: a batch draws from the whole block.
            blocks = chunks.rebatch(shuffle_buffer) if chunk != shuffle_buffer else chunks
            chunks = tf.data.Dataset.zip(draws, blocks).map(
                lambda draw, serialized: _permuted(serialized, draw),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

        def parse(serialized):
            context, lists, lengths = tf.io.parse_sequence_example(
                serialized, context_features=features, sequence_features=sequence)
            return {"context": context, "sequence": lists, "lengths": lengths}

        dataset = chunks.rebatch(batch_size, drop_remainder=drop_remainder).map(
            parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _read_chunks(names, chunk: int, n_files: int, num_parallel_reads: int,
                 deterministic: bool):
    """Vectors of up to `chunk` serialized records, each from one file; with several
    files, `num_parallel_reads` of them are read at a time, their chunks interleaved."""
    import tensorflow as tf  # heavy: imported only once a dataset is built

    def one_file(name):
        return tf.data.TFRecordDataset(name, compression_type="GZIP").batch(chunk)

    if n_files <= 1 or num_parallel_reads == 1:
        return names.flat_map(one_file)
    cycle = min(n_files, MAX_FILES_AT_ONCE if num_parallel_reads == AUTOTUNE
                else num_parallel_reads)
    return names.interleave(one_file, cycle_length=cycle, block_length=1,
                            num_parallel_calls=num_parallel_reads, deterministic=deterministic)


def _flatten_pairs(serialized, features, negatives: int):
    """Serialized skip-gram records -> {"target" [P], "context" [P], "negatives" [P, n]}."""
    import tensorflow as tf  # heavy: imported only once a dataset is built
    parsed = tf.io.parse_example(serialized, features)
    # A batch's VarLenFeature values are the records' lists one after another.
    target = parsed["target"].values
    context = parsed["context"].values
    negative = tf.reshape(parsed["negatives"].values, [-1, negatives])
    tf.debugging.assert_equal(tf.shape(target), tf.shape(context),
                              message="skipgram record: target and context differ in length")
    tf.debugging.assert_equal(tf.shape(negative)[:1], tf.shape(target),
                              message="skipgram record: negatives are not pairs x n")
    return {"target": target, "context": context, "negatives": negative}


def _permuted(values, draw):
    """`values` (a tensor, or a dict of tensors of one length) in one random order, drawn
    from `draw` (an int64 from tf.data.Dataset.random)."""
    import tensorflow as tf  # heavy: imported only once a dataset is built
    first = values if isinstance(values, tf.Tensor) else next(iter(values.values()))
    order = tf.random.experimental.stateless_shuffle(
        tf.range(tf.shape(first)[0]), seed=tf.stack([draw, draw // 7 + 1]))
    if isinstance(values, tf.Tensor):
        return tf.gather(values, order)
    return {name: tf.gather(tensor, order) for name, tensor in values.items()}
