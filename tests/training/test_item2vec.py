"""Tier 3: a tiny item2vec model trained on a generated day's published skip-gram pairs
(beam_jobs.training_examples, read with training.reader) finds the structure datagen
planted: articles of one region and one category share sessions, so an article's
nearest neighbours should mostly share its region and category.

Chance is the share of the day's indexed articles (other than the query) in the query's
region and category, averaged over the queries; the model must beat it 3x."""

import collections
import datetime as dt
import time

import numpy as np
import pytest

from beam_jobs import training_examples
from datagen.events import generate_events, write_export_layout
from training import item2vec, reader
from tests.helpers.paths import SALT_FILE

pytestmark = pytest.mark.jobs

RUN_DATE = "2026-11-26"
ROWS = 60_000
SEED = 5
QUERIES = 50
K = 10
DIM = 32
BATCH = 512
EPOCHS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("item2vec")
    day = generate_events(ROWS, dt.date.fromisoformat(RUN_DATE), seed=SEED)
    write_export_layout(day.table, str(root / "events"),
                        null_partition=dt.date.fromisoformat(RUN_DATE))
    out = str(root / "out")
    training_examples.run(["--runner=FnApiRunner", f"--user_id_salt_file={SALT_FILE}",
                           f"--events={root / 'events'}", f"--run_date={RUN_DATE}",
                           "--timezone=Asia/Seoul", f"--output_dir={out}",
                           "--example_kinds=skipgram"])
    days = reader.open_days(out, "skipgram", "train")
    first, seconds, untrained = train(days)
    again, _, _ = train(days)
    return day, out, days, first, seconds, untrained, again


def train(days):
    """(trained vectors, training seconds, the vectors before training)."""
    import tensorflow as tf
    tf.keras.utils.set_random_seed(SEED)
    model = item2vec.build_item2vec(days.vocab_size, dim=DIM, seed=SEED)
    untrained = item2vec.target_vectors(model).copy()
    started = time.perf_counter()
    model.fit(item2vec.with_labels(days.dataset(batch_size=BATCH, seed=SEED)), epochs=EPOCHS,
              verbose=0)
    return item2vec.target_vectors(model), time.perf_counter() - started, untrained


def planted_blocks(table, ids, index, vocab_size):
    """block[article index] = its (region, category) as one label, from the events rows
    that mention the article (the most frequent pair); -1 where no row says."""
    d = table.select(["article_id", "region_id", "category_id"]).to_pydict()
    seen = collections.defaultdict(collections.Counter)
    for article, region, category in zip(d["article_id"], d["region_id"], d["category_id"]):
        if article is not None and region is not None and category is not None:
            seen[article][(region, category)] += 1
    labels, block = {}, np.full(vocab_size, -1, dtype=np.int64)
    for article, i in zip(ids, index):
        if article in seen:
            pair = min(seen[article].items(), key=lambda kv: (-kv[1], kv[0]))[0]
            block[i] = labels.setdefault(pair, len(labels))
    return block


def test_neighbours_share_region_and_category_3x_more_than_chance(trained):
    day, out, days, vectors, seconds, untrained, again = trained
    ids, index = days.vocabulary()
    ids = ids.to_pylist()
    block = planted_blocks(day.table, ids, index, days.vocab_size)
    position = dict(zip(ids, index.tolist()))
    counts = collections.Counter(a for a in day.table.column("article_id").to_pylist()
                                 if a in position)
    queries = np.array([position[a] for a, _ in
                        sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:QUERIES]])
    candidates = np.sort(index)
    neighbours = item2vec.nearest_neighbours(vectors, queries, candidates, K)
    observed, _ = item2vec.block_share(neighbours, queries, block)
    # The same measure on the vectors before training: chance level, so the measure
    # itself does not pass by construction.
    before, _ = item2vec.block_share(
        item2vec.nearest_neighbours(untrained, queries, candidates, K), queries, block)
    in_block = np.array([(block[candidates] == block[q]).sum() - 1 for q in queries])
    chance = float((in_block / (len(candidates) - 1)).mean())
    print(f"observed {observed:.3f} chance {chance:.4f} ratio {observed / chance:.1f} "
          f"untrained {before:.3f} train {seconds:.1f}s pairs {days.examples}")
    assert (queries.shape, neighbours.shape) == ((QUERIES,), (QUERIES, K))
    assert observed >= 3 * chance
    assert before < 2 * chance
    assert seconds < 30


def test_training_is_deterministic(trained):
    _, _, _, vectors, _, _, again = trained
    assert np.array_equal(vectors, again)
