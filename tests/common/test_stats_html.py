"""transforms/stats_html.py."""

import pytest

import base64
import html.parser
import re
import warnings

from tensorflow_metadata.proto.v0 import statistics_pb2

from transforms.common.stats_html import render_stats_html

pytestmark = pytest.mark.functions

Histogram = statistics_pb2.Histogram
FeatureType = statistics_pb2.FeatureNameStatistics


def _numeric(dataset, name, values_and_counts, missing):
    feature = dataset.features.add(type=FeatureType.INT)
    feature.path.step.append(name)
    stats = feature.num_stats
    stats.common_stats.num_non_missing = sum(c for _, c in values_and_counts)
    stats.common_stats.num_missing = missing
    stats.mean, stats.min, stats.median, stats.max = 25.0, 0.0, 20.0, 100.0
    standard = stats.histograms.add(type=Histogram.STANDARD)
    for low, count in values_and_counts:
        standard.buckets.add(low_value=low, high_value=low + 25, sample_count=count)
    quantiles = stats.histograms.add(type=Histogram.QUANTILES)
    for low, high in [(0, 10), (10, 20), (20, 40), (40, 100)]:
        quantiles.buckets.add(low_value=low, high_value=high, sample_count=5)


def _strings(dataset, name, top, missing):
    feature = dataset.features.add(type=FeatureType.STRING)
    feature.path.step.append(name)
    stats = feature.string_stats
    stats.common_stats.num_non_missing = sum(c for _, c in top)
    stats.common_stats.num_missing = missing
    stats.unique = len(top)
    for value, count in top:
        stats.top_values.add(value=value, frequency=count)


def _stats():
    client = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = client.datasets.add(num_examples=20)
    _numeric(dataset, "price", [(0, 10), (25, 5), (50, 3), (75, 2)], missing=0)
    _strings(dataset, "event_name", [("impression", 12), ("<script>alert(1)</script>", 3)], missing=5)
    server = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = server.datasets.add(num_examples=4)
    _strings(dataset, "platform", [("server", 3), ("\uc11c\uc6b8", 1)], missing=0)
    _numeric(dataset, "hour_of_day", [(0, 4)], missing=0)
    return {"client": client, "server": server}


def _summary(**changes):
    summary = {
        "run_date": "2024-05-02", "blessed": False, "overridden": False,
        "reasons": ["anomalies", "quarantine_fraction"],
        "rows_read": 130, "out_of_span": 2, "rows_quarantined": 100,
        "quarantined_by_reason": {"negative_price": 60, "bad_properties": 40},
        "duplicates_dropped": 4, "rows_valid": 24, "quarantine_fraction": 100 / 128,
        "max_quarantine_fraction": 0.05,
        "anomalies": [{"environment": "CLIENT", "severity": "ERROR", "feature": "event_name",
                       "description": "Unexpected string values: <b>new & odd</b>"}],
        "previous_blessed_date": "2024-05-01",
        "drift": [{"environment": "CLIENT", "feature": "price", "type": "JENSEN_SHANNON_DIVERGENCE",
                   "value": 0.93, "threshold": 0.1}],
        "stats_sample_fraction": 1.0, "stats_seed": 0,
        "stats_examples": {"client": 20, "server": 4},
    }
    summary.update(changes)
    return summary


class _TagChecker(html.parser.HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.sources = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.sources.append(attrs[key])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_page_is_self_contained_and_well_formed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a glyph missing from the chart font
        page = render_stats_html(_stats(), _summary())
    assert page.startswith("<!DOCTYPE html>")
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower().replace("&lt;script", "")
    # Every src/href is an inline image; 4 features -> 4 charts.
    assert len(checker.sources) == 4
    for source in checker.sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")


def test_page_content():
    page = render_stats_html(_stats(), _summary())
    for name in ("price", "event_name", "platform", "hour_of_day"):
        assert f"<h3>{name}</h3>" in page
    assert "Statistics: client" in page and "Statistics: server" in page
    assert "NOT BLESSED" in page
    assert "anomalies, quarantine_fraction" in page
    # Text is escaped.
    assert "<td>#2</td><td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page
    assert '<td>#2</td><td>\uc11c\uc6b8</td><td class="num">1</td>' in page
    assert "Unexpected string values: &lt;b&gt;new &amp; odd&lt;/b&gt;" in page
    # Counts, reasons, missing share, quantiles, drift.
    assert '<td>rows quarantined</td><td class="num">100</td>' in page
    assert '<td>negative_price</td><td class="num">60</td>' in page
    assert "<td>STRING</td><td class=\"num\">15</td><td class=\"num\">5</td><td>25.00%</td>" in page
    assert re.search(r"<th>q0</th><th>q25</th><th>q50</th><th>q75</th><th>q100</th></tr>\s*<tr>"
                     r'<td class="num">0</td><td class="num">10</td><td class="num">20</td>'
                     r'<td class="num">40</td><td class="num">100</td>', page)
    assert "<td>price</td><td>JENSEN_SHANNON_DIVERGENCE</td><td>0.93</td><td>0.1</td><td>above</td>" in page


def test_verdicts_and_empty_statistics():
    empty = statistics_pb2.DatasetFeatureStatisticsList()
    empty.datasets.add()
    page = render_stats_html({"client": empty, "server": empty},
                             _summary(blessed=True, overridden=True, anomalies=[], drift=[]))
    assert "BLESSED (overridden by --allow_anomalies)" in page
    assert page.count("<p>No rows.</p>") == 2
    page = render_stats_html(_stats(), _summary(blessed=True, reasons=[], anomalies=[], drift=[]))
    assert '<div class="verdict blessed">BLESSED</div>' in page
    assert "Gate reasons" not in page


def test_the_volume_check_is_on_the_page():
    check = {"level_days": ["2024-04-28", "2024-05-01"], "level_since_override": None,
             "checked": True, "min_ratio": 0.6, "max_ratio": 3.0, "missing_partitions": [],
             "failed": ["2024-05-02"], "note": "",
             "figures": [
                 {"scope": "source", "name": "client", "value": 900, "level_days": 4,
                  "median": 1000, "ratio": 0.9, "passed": True},
                 {"scope": "partition", "name": "2024-05-02", "span_hours": 15.0,
                  "value": 12.5, "level_days": 4, "median": 50.0, "ratio": 0.25,
                  "passed": False},
                 {"scope": "partition", "name": "2024-05-03", "span_hours": 9.0,
                  "value": 3.0, "level_days": 2, "median": None, "ratio": None,
                  "passed": True}]}
    page = render_stats_html(_stats(), _summary(volume_check=check))
    assert ("<p>Level: the median of 2 day(s) (2024-04-28 to 2024-05-01); allowed 0.6 to 3 "
            "times it.</p>") in page
    assert ('<tr><td>client valid rows</td><td class="num">900</td><td class="num">1,000</td>'
            "<td>0.90</td><td>within</td></tr>") in page
    assert ('<tr><td>UTC partition 2024-05-02 (15 h), valid rows per hour</td>'
            '<td class="num">12.5</td><td class="num">50</td><td>0.25</td>'
            "<td>OUT OF RANGE</td></tr>") in page
    assert ('<tr><td>UTC partition 2024-05-03 (9 h), valid rows per hour</td>'
            '<td class="num">3</td><td>n/a</td><td>n/a</td><td>not compared</td></tr>') in page
    page = render_stats_html(_stats(), _summary(volume_check=dict(
        check, level_days=[], note="only 0 day(s) in the 7 days before set the volume level")))
    assert "<p>Level: the median of 0 day(s); allowed 0.6 to 3 times it.</p>" in page
    assert "<p>only 0 day(s) in the 7 days before set the volume level.</p>" in page
    assert "Volume against the days before" not in render_stats_html(_stats(), _summary())
