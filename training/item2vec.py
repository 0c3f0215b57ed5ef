"""A tiny item2vec model (skip-gram with the published negatives, sigmoid loss), Keras 3.

Two embedding tables as in word2vec: `target_embedding` (the article vectors kept) and
`context_embedding`. For a pair (t, c) with negatives n_1..n_k the logits are
<e_t, f_c>, <e_t, f_n1>, ..., <e_t, f_nk>, labelled 1, 0, ..., 0, and the loss is
sigmoid cross-entropy over all of them.

    days = reader.open_days(out, "skipgram")
    model = build_item2vec(days.vocab_size, dim=32, seed=7)
    model.fit(with_labels(days.dataset(batch_size=1024, seed=7)), epochs=3)
    vectors = target_vectors(model)
"""

from typing import Tuple

import numpy as np


def build_item2vec(vocab_size: int, dim: int = 32, seed: int = 0, learning_rate: float = 0.01):
    """A compiled Keras model: {"target" [B], "context" [B], "negatives" [B, n]} -> logits
    [B, 1 + n] (column 0 the context)."""
    import keras
    if vocab_size < 2 or dim < 1:
        raise ValueError(f"vocab_size={vocab_size} must be >= 2 and dim={dim} >= 1")
    target = keras.Input(shape=(), dtype="int64", name="target")
    context = keras.Input(shape=(), dtype="int64", name="context")
    negatives = keras.Input(shape=(None,), dtype="int64", name="negatives")
    scale = 0.5 / dim
    target_table = keras.layers.Embedding(
        vocab_size, dim, name="target_embedding",
        embeddings_initializer=keras.initializers.RandomUniform(-scale, scale, seed=seed))
    context_table = keras.layers.Embedding(
        vocab_size, dim, name="context_embedding",
        embeddings_initializer=keras.initializers.RandomUniform(-scale, scale, seed=seed + 1))
    candidates = keras.ops.concatenate(
        [keras.ops.expand_dims(context, 1), negatives], axis=1)          # [B, 1 + n]
    logits = keras.ops.einsum("bd,bkd->bk", target_table(target), context_table(candidates))
    model = keras.Model({"target": target, "context": context, "negatives": negatives},
                        logits, name="item2vec")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


def with_labels(dataset):
    """Skip-gram batches -> (features, labels [B, 1 + n]: 1 for the context, 0 after)."""
    import tensorflow as tf

    def label(batch):
        shape = tf.shape(batch["negatives"])
        labels = tf.concat([tf.ones([shape[0], 1]), tf.zeros([shape[0], shape[1]])], axis=1)
        return batch, labels

    return dataset.map(label, num_parallel_calls=tf.data.AUTOTUNE)


def target_vectors(model) -> np.ndarray:
    """The article vectors [vocab_size, dim] (row = article index)."""
    return np.asarray(model.get_layer("target_embedding").embeddings)


def nearest_neighbours(vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray,
                       k: int = 10) -> np.ndarray:
    """[len(queries), k] candidate indexes by cosine similarity to each query, most similar
    first, never the query itself; ties by smaller index."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1.0, norms)
    candidates = np.asarray(candidates, dtype=np.int64)
    scores = unit[np.asarray(queries, dtype=np.int64)] @ unit[candidates].T
    scores[candidates[None, :] == np.asarray(queries)[:, None]] = -np.inf
    order = np.lexsort((np.broadcast_to(candidates, scores.shape), -scores), axis=1)
    return candidates[order[:, :k]]


def block_share(neighbours: np.ndarray, queries: np.ndarray, block: np.ndarray
                ) -> Tuple[float, np.ndarray]:
    """(mean share of neighbours in their query's block, per-query shares); `block` maps an
    article index to a block label (-1: unknown, never equal)."""
    same = (block[neighbours] == block[np.asarray(queries)][:, None]) & \
        (block[neighbours] >= 0)
    shares = same.mean(axis=1)
    return float(shares.mean()), shares
