"""The signal of a day arriving (transforms/publishing/latest.py): a publish step that
moves a kind's LATEST forward increments the Beam counter latest_forward_<kind> of
namespace "preprocessing" (what an absence alert watches); a backfill of an older day
and a rerun of the newest day do not."""

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing import test_pipeline

from tests.helpers.publishing_days import edges
from transforms.publishing.latest import SIGNAL_NAMESPACE, kind_label, latest_counter_name, \
    read_latest
from transforms.publishing.protocol import PublishFileSets


@pytest.mark.functions
def test_kind_labels_and_counter_names():
    assert kind_label("gs://b/out/validated") == "validated"
    assert kind_label("/o/examples/skipgram/") == "examples/skipgram"
    assert kind_label("/o/features/_daily") == "features/_daily"
    assert latest_counter_name("examples/skipgram") == "latest_forward_examples_skipgram"


def publish(kind_dir, day):
    """One publish of `day` under a pipeline; the counters it reported, by name."""
    p = test_pipeline.TestPipeline(runner="FnApiRunner")
    _ = (p | beam.Create([("edges", 0, edges(day, 5))])
         | PublishFileSets(f"{kind_dir}/dt={day}", {"run_date": day}))
    result = p.run()
    result.wait_until_finish()
    found = result.metrics().query(MetricsFilter().with_namespace(SIGNAL_NAMESPACE))
    return {c.key.metric.name: c.committed for c in found["counters"]}


@pytest.mark.composites
def test_a_publish_that_moves_latest_forward_emits_the_signal_and_a_backfill_does_not(tmp_path):
    kind_dir = str(tmp_path / "out" / "examples" / "ranking")
    name = latest_counter_name("examples/ranking")
    assert publish(kind_dir, "2026-11-26") == {name: 1}
    assert publish(kind_dir, "2026-11-27") == {name: 1}
    assert publish(kind_dir, "2026-11-20") == {}       # a backfill: LATEST stays
    assert publish(kind_dir, "2026-11-27") == {}       # a rerun of the newest day
    assert read_latest(kind_dir) == "2026-11-27"
