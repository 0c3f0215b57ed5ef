"""An offline HTML page of a day's statistics and validation verdict.

TFDV's own get_statistics_html loads Facets from the internet and renders an
empty page offline; this page needs nothing but itself: inline CSS, charts as
base64 PNG data URIs drawn with matplotlib (Agg), every text html-escaped.
"""

import base64
import html
import io
from typing import Dict, List, Optional

from tensorflow_metadata.proto.v0 import statistics_pb2

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.3em; font-weight: bold; padding: 0.4em 0.8em; display: inline-block; }
.blessed { background: #d7f5d7; }
.overridden { background: #fff1c2; }
.refused { background: #f9d0d0; }
.feature { border-top: 1px solid #ddd; padding: 0.5em 0; }
.feature h3 { margin: 0.3em 0; font-family: monospace; }
.chart { display: inline-block; margin-right: 1em; }
"""

_TOP_VALUES_SHOWN = 20


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _common_stats(feature: statistics_pb2.FeatureNameStatistics
                  ) -> Optional[statistics_pb2.CommonStatistics]:
    for field in ("num_stats", "string_stats", "bytes_stats", "struct_stats"):
        if feature.HasField(field):
            return getattr(feature, field).common_stats
    return None


def _feature_name(feature: statistics_pb2.FeatureNameStatistics) -> str:
    return ".".join(feature.path.step) if feature.path.step else feature.name


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, metadata={"Software": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="chart" alt="chart" src="data:image/png;base64,{data}">'


def _histogram_chart(histogram: statistics_pb2.Histogram, title: str) -> str:
    from matplotlib.figure import Figure

    lows = [b.low_value for b in histogram.buckets]
    widths = [b.high_value - b.low_value for b in histogram.buckets]
    counts = [b.sample_count for b in histogram.buckets]
    figure = Figure(figsize=(5, 2.2))
    figure.subplots_adjust(left=0.12, right=0.97, top=0.88, bottom=0.14)
    axes = figure.add_subplot()
    axes.bar(lows, counts, width=[w if w > 0 else 1.0 for w in widths], align="edge",
             color="#4c78a8", edgecolor="white")
    axes.set_title(title, fontsize=9)
    axes.tick_params(labelsize=7)
    return _png(figure)


def _chart_label(rank: int, value: str) -> str:
    """The value as a bar label; its rank ("#3") where the chart font (DejaVu, no
    Hangul/CJK glyphs) cannot draw it: the table next to the chart has the text."""
    if not value.isascii() or not value.isprintable():
        return f"#{rank}"
    return value if len(value) <= 30 else value[:29] + "\u2026"


def _top_values_chart(values: List[str], counts: List[float], title: str) -> str:
    from matplotlib.figure import Figure

    # Fixed margins, not bbox_inches="tight" (which draws every chart twice): room on the
    # left for a label of 30 characters.
    figure = Figure(figsize=(5, 0.6 + 0.22 * len(values)))
    figure.subplots_adjust(left=0.38, right=0.97, top=1 - 0.3 / figure.get_figheight(),
                           bottom=0.25 / figure.get_figheight())
    axes = figure.add_subplot()
    positions = list(range(len(values)))
    axes.barh(positions, counts, color="#f58518")
    axes.set_yticks(positions)
    axes.set_yticklabels([_chart_label(rank, v) for rank, v in enumerate(values, 1)], fontsize=7)
    axes.invert_yaxis()
    axes.set_title(title, fontsize=9)
    axes.tick_params(axis="x", labelsize=7)
    return _png(figure)


def _table(rows, header=None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, (int, float)) and not isinstance(cell, bool):
                cells.append(f'<td class="num">{_e(_format_number(cell))}</td>')
            else:
                cells.append(f"<td>{_e(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _format_number(value: float) -> str:
    if float(value).is_integer() or abs(value) >= 1e4:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _numeric_section(feature: statistics_pb2.FeatureNameStatistics, name: str) -> List[str]:
    stats = feature.num_stats
    out = [_table([[stats.mean, stats.std_dev, stats.min, stats.median, stats.max,
                    stats.num_zeros]],
                  header=["mean", "std dev", "min", "median", "max", "zeros"])]
    for histogram in stats.histograms:
        if histogram.type == statistics_pb2.Histogram.QUANTILES and histogram.buckets:
            edges = [histogram.buckets[0].low_value] + [b.high_value for b in histogram.buckets]
            step = 100.0 / (len(edges) - 1)
            out.append(_table([edges],
                              header=[f"q{step * i:g}" for i in range(len(edges))]))
    for histogram in stats.histograms:
        if histogram.type == statistics_pb2.Histogram.STANDARD and histogram.buckets:
            out.append(_histogram_chart(histogram, f"{name}: histogram"))
    return out


def _string_section(feature: statistics_pb2.FeatureNameStatistics, name: str) -> List[str]:
    stats = feature.string_stats
    out = [_table([[stats.unique, stats.avg_length]],
                  header=["unique values", "avg length"])]
    top = list(stats.top_values)[:_TOP_VALUES_SHOWN]
    if top:
        out.append(_table([[f"#{rank}", v.value, v.frequency] for rank, v in enumerate(top, 1)],
                          header=["rank", "top value", "count"]))
        out.append(_top_values_chart([v.value for v in top], [v.frequency for v in top],
                                     f"{name}: top values"))
    return out


def _feature_section(feature: statistics_pb2.FeatureNameStatistics, num_examples: int) -> str:
    name = _feature_name(feature)
    kind = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
    common = _common_stats(feature)
    present = common.num_non_missing if common is not None else 0
    missing = common.num_missing if common is not None else 0
    total = present + missing or num_examples
    missing_share = f"{missing / total:.2%}" if total else "n/a"
    out = [f'<div class="feature"><h3>{_e(name)}</h3>',
           _table([[kind, present, missing, missing_share]],
                  header=["type", "present", "missing", "missing share"])]
    if feature.HasField("num_stats"):
        out.extend(_numeric_section(feature, name))
    elif feature.HasField("string_stats"):
        out.extend(_string_section(feature, name))
    out.append("</div>")
    return "\n".join(out)


def _verdict(summary: dict) -> str:
    if summary["blessed"] and summary["overridden"]:
        return '<div class="verdict overridden">BLESSED (overridden by --allow_anomalies)</div>'
    if summary["blessed"]:
        return '<div class="verdict blessed">BLESSED</div>'
    return '<div class="verdict refused">NOT BLESSED</div>'


def _header(summary: dict) -> List[str]:
    out = [f"<h1>Validation of {_e(summary['run_date'])}</h1>", _verdict(summary)]
    if summary["reasons"]:
        out.append("<p>Gate reasons: " + _e(", ".join(summary["reasons"])) + "</p>")
    fraction = summary["quarantine_fraction"]
    out.append("<h2>Counts</h2>")
    out.append(_table([
        ["rows read", summary["rows_read"]],
        ["out of span", summary["out_of_span"]],
        ["rows quarantined", summary["rows_quarantined"]],
        ["quarantine fraction", "n/a" if fraction is None else f"{fraction:.4%}"],
        ["max quarantine fraction", f"{summary['max_quarantine_fraction']:.4%}"],
        ["duplicates dropped", summary["duplicates_dropped"]],
        ["rows valid", summary["rows_valid"]],
        ["previous blessed day", summary["previous_blessed_date"] or "none"],
        ["statistics sample fraction", summary["stats_sample_fraction"]],
    ]))
    if summary["quarantined_by_reason"]:
        out.append("<h2>Quarantined by reason</h2>")
        out.append(_table(sorted(summary["quarantined_by_reason"].items()),
                          header=["reason", "rows"]))
    out.append("<h2>Anomalies</h2>")
    if summary["anomalies"]:
        out.append(_table([[a["environment"], a["severity"], a["feature"] or "(dataset)",
                            a["description"]] for a in summary["anomalies"]],
                          header=["environment", "severity", "feature", "description"]))
    else:
        out.append("<p>None.</p>")
    out.extend(_volume_section(summary.get("volume_check")))
    if summary["drift"]:
        out.append("<h2>Drift against the previous blessed day</h2>")
        out.append(_table([[d["environment"], d["feature"], d["type"], f"{d['value']:.4g}",
                            f"{d['threshold']:.4g}",
                            "above" if d["value"] > d["threshold"] else "under"]
                           for d in summary["drift"]],
                          header=["environment", "feature", "measure", "value", "threshold", ""]))
    return out


def _volume_section(check: Optional[dict]) -> List[str]:
    """The volume check (docs/validation.md#the-volume-check): each figure beside its level."""
    if not check:
        return []
    days = check["level_days"]
    out = ["<h2>Volume against the days before</h2>",
           f"<p>Level: the median of {len(days)} day(s)"
           + (f" ({_e(days[0])} to {_e(days[-1])})" if days else "")
           + f"; allowed {check['min_ratio']:g} to {check['max_ratio']:g} times it.</p>"]
    if check["note"]:
        out.append(f"<p>{_e(check['note'])}.</p>")
    rows = []
    for figure in check["figures"]:
        what = (f"{figure['name']} valid rows" if figure["scope"] == "source" else
                f"UTC partition {figure['name']} ({figure['span_hours']:g} h), valid rows per hour")
        ratio = "n/a" if figure["ratio"] is None else f"{figure['ratio']:.2f}"
        median = "n/a" if figure["median"] is None else figure["median"]
        verdict = "not compared" if figure["median"] is None else (
            "within" if figure["passed"] else "OUT OF RANGE")
        rows.append([what, figure["value"], median, ratio, verdict])
    out.append(_table(rows, header=["figure", "day", "level (median)", "ratio", ""]))
    return out


def render_stats_html(stats: Dict[str, statistics_pb2.DatasetFeatureStatisticsList],
                      summary: dict) -> str:
    """A self-contained page: the summary's counts, gate verdict and anomalies,
    then per dataset (e.g. client, server) and feature: type, missing share,
    quantiles and a histogram for numbers, top values and a bar chart for strings."""
    import matplotlib

    matplotlib.use("Agg")

    body = _header(summary)
    for dataset_name, stats_list in stats.items():
        body.append(f"<h2>Statistics: {_e(dataset_name)}</h2>")
        datasets = [d for d in stats_list.datasets if d.features or d.num_examples]
        if not datasets:
            body.append("<p>No rows.</p>")
        for dataset in datasets:
            body.append(f"<p>{_e(_format_number(dataset.num_examples))} rows in the statistics"
                        f"{' (' + _e(dataset.name) + ')' if dataset.name else ''}.</p>")
            for feature in dataset.features:
                body.append(_feature_section(feature, dataset.num_examples))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>Validation {_e(summary['run_date'])}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])
