"""The signal of a day arriving (transforms/publishing/latest.py): a publish step that
moves a kind's LATEST forward increments the Beam counter latest_forward_<kind> of
namespace "preprocessing" (what an absence alert watches); a backfill of an older day
and a rerun of the newest day do not."""

import pytest

from tests.helpers.publishing_days import signals_of_a_publish as publish
from transforms.publishing.latest import kind_label, latest_counter_name, read_latest


@pytest.mark.functions
def test_kind_labels_and_counter_names():
    assert kind_label("gs://b/out/validated") == "validated"
    assert kind_label("/o/examples/skipgram/") == "examples/skipgram"
    assert kind_label("/o/features/_daily") == "features/_daily"
    assert latest_counter_name("examples/skipgram") == "latest_forward_examples_skipgram"


@pytest.mark.composites
def test_a_publish_that_moves_latest_forward_emits_the_signal_and_a_backfill_does_not(tmp_path):
    kind_dir = str(tmp_path / "out" / "examples" / "ranking")
    name = latest_counter_name("examples/ranking")
    assert publish(kind_dir, "2026-11-26") == {name: 1}
    assert publish(kind_dir, "2026-11-27") == {name: 1}
    assert publish(kind_dir, "2026-11-20") == {}       # a backfill: LATEST stays
    assert publish(kind_dir, "2026-11-27") == {}       # a rerun of the newest day
    assert read_latest(kind_dir) == "2026-11-27"
