"""The checked-in alert policy is a Cloud Monitoring AlertPolicy and watches exactly the
Dataflow jobs the scheduler and the backfill launch."""

import json
import os
import re

import pytest
from google.cloud import monitoring_v3
from google.protobuf import json_format

from flex_templates import generate, schedule
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.functions

PATH = os.path.join(ROOT, "monitoring", "dataflow_failed_jobs.json")


def content():
    with open(PATH, encoding="utf-8") as f:
        return json.load(f)


def test_alert_policy_parses_as_an_alert_policy():
    with open(PATH, encoding="utf-8") as f:
        policy = monitoring_v3.AlertPolicy.from_json(f.read(), ignore_unknown_fields=False)
    assert policy.combiner == monitoring_v3.AlertPolicy.ConditionCombinerType.OR
    assert policy.severity == monitoring_v3.AlertPolicy.Severity.ERROR
    assert policy.enabled is True
    [condition] = policy.conditions
    threshold = condition.condition_threshold
    assert threshold.comparison == monitoring_v3.ComparisonType.COMPARISON_GT
    assert threshold.threshold_value == 0
    assert threshold.duration.total_seconds() == 0
    [aggregation] = threshold.aggregations
    assert aggregation.per_series_aligner == monitoring_v3.Aggregation.Aligner.ALIGN_COUNT_TRUE
    assert aggregation.alignment_period.total_seconds() == 300
    assert 'metric.type = "dataflow.googleapis.com/job/is_failed"' in threshold.filter
    assert 'resource.type = "dataflow_job"' in threshold.filter


def test_alert_policy_parse_refuses_unknown_fields():
    policy = content()
    policy["conditions"][0]["conditionThreshold"]["threshold"] = 0
    with pytest.raises(json_format.ParseError, match='no field named "threshold"'):
        monitoring_v3.AlertPolicy.from_json(json.dumps(policy))


def test_alert_policy_watches_every_launched_job_name():
    threshold = content()["conditions"][0]["conditionThreshold"]
    pattern = re.search(r'monitoring\.regex\.full_match\("([^"]+)"\)',
                        threshold["filter"]).group(1)
    for job in generate.job_modules():
        assert re.fullmatch(pattern, schedule.launch_job_name(job)), job
        assert re.fullmatch(pattern, schedule.launch_job_name(job, backfill=True)), job
    for other in ("preprocessing", "training-daily", "preprocessing-Daily"):
        assert not re.fullmatch(pattern, other), other


SCHEDULER_PATH = os.path.join(ROOT, "monitoring", "scheduler_failed_attempts.json")


def test_the_scheduler_failure_policy_matches_failed_attempts_of_every_scheduled_job():
    with open(SCHEDULER_PATH, encoding="utf-8") as f:
        policy = monitoring_v3.AlertPolicy.from_json(f.read(), ignore_unknown_fields=False)
    [condition] = policy.conditions
    matched = condition.condition_matched_log
    # Finished attempts only (a started one carries no status), and only failed ones.
    for part in ('resource.type="cloud_scheduler_job"',
                 'log_id("cloudscheduler.googleapis.com/executions")',
                 'jsonPayload."@type"="type.googleapis.com/google.cloud.scheduler.logging.'
                 'AttemptFinished"', "severity>=ERROR"):
        assert part in matched.filter, part
    assert dict(matched.label_extractors) == {"job_id": "EXTRACT(resource.labels.job_id)",
                                              "status": "EXTRACT(jsonPayload.status)"}
    # A log-match condition needs a notification rate limit.
    assert policy.alert_strategy.notification_rate_limit.period.total_seconds() == 3600
    pattern = re.search(r'resource\.labels\.job_id=~"([^"]+)"', matched.filter).group(1)
    for job in generate.job_modules():
        assert re.search(pattern, schedule.scheduler_job_id(job)), job
    for other in ("preprocessing", "training-daily", "xpreprocessing-daily"):
        assert not re.search(pattern, other), other
