"""monitoring/day_not_published.json: the alert when a morning's day never arrives. It
parses strictly as a Cloud Monitoring AlertPolicy, has one PromQL condition per kind the
daily job publishes, each firing after 26 hours without the signal, and names exactly
the counter a real local publish of that kind emits."""

import json
import os
import re

import pytest
from google.cloud import monitoring_v3
from google.protobuf import json_format

from flex_templates.backfill import PUBLISHED_KINDS
from tests.helpers.paths import ROOT
from tests.helpers.publishing_days import signals_of_a_publish
from transforms.publishing.latest import latest_counter_name

PATH = os.path.join(ROOT, "monitoring", "day_not_published.json")
QUERY = re.compile(r'^absent_over_time\(dataflow_googleapis_com:job_user_counter\{'
                   r'monitored_resource="dataflow_job",metric_name="([a-z0-9_]+)"\}'
                   r'\[(\d+)h\]\)$')


def text():
    with open(PATH, encoding="utf-8") as handle:
        return handle.read()


def conditions():
    """kind label -> (counter name, lookback hours, duration seconds) of each condition."""
    policy = monitoring_v3.AlertPolicy.from_json(text(), ignore_unknown_fields=False)
    found = {}
    for condition in policy.conditions:
        promql = condition.condition_prometheus_query_language
        matched = QUERY.match(promql.query)
        assert matched, promql.query
        found[promql.labels["kind"]] = (matched.group(1), int(matched.group(2)),
                                        promql.duration.total_seconds())
    return policy, found


@pytest.mark.functions
def test_the_policy_parses_strictly_and_watches_every_kind_of_the_morning_job():
    policy, found = conditions()
    assert policy.combiner == monitoring_v3.AlertPolicy.ConditionCombinerType.OR
    assert policy.severity == monitoring_v3.AlertPolicy.Severity.ERROR and policy.enabled
    assert sorted(found) == sorted(PUBLISHED_KINDS["daily"])
    for kind, (name, hours, duration) in found.items():
        assert name == latest_counter_name(kind)
        # 26 hours without a sample: a 24-hour window, then 2 hours more to hold.
        assert hours * 3600 + duration == 26 * 3600 and hours <= 24, kind
    bad = json.loads(text())
    bad["conditions"][0]["conditionPrometheusQueryLanguage"]["for"] = "7200s"
    with pytest.raises(json_format.ParseError, match='no field named "for"'):
        monitoring_v3.AlertPolicy.from_json(json.dumps(bad))


@pytest.mark.composites
@pytest.mark.parametrize("kind", ["validated", "examples/skipgram", "features/_daily"])
def test_each_condition_names_the_counter_a_real_publish_emits(tmp_path, kind):
    emitted = signals_of_a_publish(str(tmp_path / "out" / kind), "2026-11-26")
    _, found = conditions()
    assert emitted == {found[kind][0]: 1}
