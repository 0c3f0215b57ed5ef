"""The report's pictures, drawn with matplotlib (Agg) from the facts (facts.py) as PNG. Each
chart comes back with every label it draws (title, axis labels, tick labels, legend), so
that report.json holds in text what the pictures show. A chart with nothing to show is
left out.
"""

import base64
import io
from typing import Dict, List, Optional, Sequence

CLIENT_COLOR, SERVER_COLOR, OTHER_COLOR = "#4c78a8", "#f58518", "#54a24b"
WIDTH = 6.0


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _chart(name: str, title: str, figure, labels: List[str]) -> Dict:
    return {"name": name, "title": title, "labels": [title] + [str(x) for x in labels],
            "png": _png(figure)}


def _figure(height: float, left: float = 0.1):
    from matplotlib.figure import Figure     # matplotlib only where a page is drawn

    figure = Figure(figsize=(WIDTH, height))
    figure.subplots_adjust(left=left, right=0.97, top=1 - 0.35 / height,
                           bottom=0.55 / height)
    return figure, figure.add_subplot()


def bars(name: str, title: str, categories: Sequence[str], series: Dict[str, Sequence[float]],
         axis_label: str, horizontal: bool = False, colors: Sequence[str] = (),
         line: Optional[float] = None, line_label: str = "", log: bool = False
         ) -> Optional[Dict]:
    """Grouped bars: one group per category, one bar per series (a legend when several);
    `log` for a value axis on a log scale (counts of very different sizes)."""
    if not categories or not series:
        return None
    count = len(series)
    height = max(2.2, 0.7 + 0.28 * len(categories) * max(1, count * 0.6)) if horizontal else 2.6
    longest = max(len(str(c)) for c in categories)
    figure, axes = _figure(height, left=min(0.45, 0.06 + 0.012 * longest) if horizontal else 0.15)
    width = 0.8 / count
    positions = list(range(len(categories)))
    for number, (label, values) in enumerate(series.items()):
        shifted = [p - 0.4 + width * (number + 0.5) for p in positions]
        color = colors[number] if number < len(colors) else None
        if horizontal:
            axes.barh(shifted, values, height=width, label=label, color=color)
        else:
            axes.bar(shifted, values, width=width, label=label, color=color)
    labels = list(categories) + ([axis_label] if axis_label else [])
    if horizontal:
        axes.set_yticks(positions)
        axes.set_yticklabels(categories, fontsize=7)
        axes.invert_yaxis()
        axes.set_xlabel(axis_label, fontsize=8)
    else:
        axes.set_xticks(positions)
        axes.set_xticklabels(categories, fontsize=7)
        axes.set_ylabel(axis_label, fontsize=8)
    if line is not None:
        (axes.axvline if horizontal else axes.axhline)(line, color="#d62728", linestyle="--",
                                                       linewidth=1, label=line_label)
        labels.append(line_label)
    if count > 1 or line is not None:
        axes.legend(fontsize=7)
        labels += list(series) if count > 1 else []
    if log:
        (axes.set_xscale if horizontal else axes.set_yscale)("log")
    axes.tick_params(labelsize=7)
    axes.set_title(title, fontsize=9)
    return _chart(name, title, figure, labels)


def volume_history_chart(history: List[Dict]) -> Optional[Dict]:
    """Rows read and valid per day: every summary has them (the split by source only since
    the volume was recorded, so it is in the table beside the chart)."""
    days = [h["day"][5:] for h in history]
    series = {"read": [h["rows_read"] for h in history],
              "valid": [h["rows_valid"] for h in history]}
    return bars("volume_history", f"Rows read and valid per day, last {len(days)} validated "
                "day(s)", days, series, "rows", colors=(SERVER_COLOR, CLIENT_COLOR))


def rows_chart(volume: Dict) -> Optional[Dict]:
    if "rows_valid" not in volume:
        return None
    categories = ["valid"] + [f"quarantined: {r}" for r in volume["quarantined_by_reason"]] + \
        ["duplicates dropped", "out of span"]
    values = [volume["rows_valid"]] + list(volume["quarantined_by_reason"].values()) + \
        [volume["duplicates_dropped"], volume["out_of_span"]]
    return bars("rows_of_the_day", f"Where the {volume['rows_read']:,} rows read went",
                categories, {"rows": values}, "rows (log scale)", horizontal=True,
                colors=(CLIENT_COLOR,), log=True)


def events_chart(volume: Dict) -> Optional[Dict]:
    by_name = volume.get("events_by_name") or {}
    categories = [f"{source}: {name}" for source, names in by_name.items() for name in names]
    values = [n for names in by_name.values() for n in names.values()]
    fraction = volume.get("stats_sample_fraction")
    sample = "" if fraction in (None, 1, 1.0) else f" (statistics sample {fraction:g})"
    return bars("events_by_name", f"Valid events by source and name{sample}", categories,
                {"events": values}, "events (log scale)", horizontal=True,
                colors=(SERVER_COLOR,), log=True)


def drift_chart(drift: List[Dict]) -> Optional[Dict]:
    measured = [d for d in drift if d.get("threshold")]
    categories = [f"{d['environment'].lower()}: {d['feature']}" for d in measured]
    values = [d["value"] / d["threshold"] for d in measured]
    return bars("drift", "Drift against the previous blessed day, as a share of its threshold",
                categories, {"drift / threshold": values}, "drift / threshold",
                horizontal=True, colors=(OTHER_COLOR,), line=1.0, line_label="threshold")


def volume_check_chart(check: Optional[Dict]) -> Optional[Dict]:
    figures = [f for f in (check or {}).get("figures", []) if f.get("ratio") is not None]
    categories = [f"{f['scope']}: {f['name']}" for f in figures]
    values = [f["ratio"] for f in figures]
    return bars("volume_check", "Volume against the median of the days before (ratio)",
                categories, {"ratio": values}, "day / median", horizontal=True,
                colors=(CLIENT_COLOR,), line=check["min_ratio"] if check else None,
                line_label=f"refused under {check['min_ratio']:g}" if check else "")


def index_chart(index: Dict) -> Optional[Dict]:
    versions = index.get("versions") or []
    categories = [f"v{v['version']}" for v in versions]
    series = {"vocabulary size": [v["vocab_size"] or 0 for v in versions],
              "new articles": [v["new_articles"] or 0 for v in versions]}
    return bars("article_index", "Article index: vocabulary per version", categories, series,
                "articles", colors=(CLIENT_COLOR, OTHER_COLOR))


def split_chart(name: str, title: str, published: Dict, axis_label: str) -> Optional[Dict]:
    kinds = [k for k, v in published.items() if v]
    series = {split: [published[k]["splits"].get(split, {}).get("rows", 0) for k in kinds]
              for split in ("train", "eval")}
    return bars(name, title, kinds, series if kinds else {}, axis_label,
                colors=(CLIENT_COLOR, SERVER_COLOR))


def day_charts(facts: Dict) -> List[Dict]:
    """Every picture of the day's page, in page order (absent ones left out)."""
    volume = facts["volume"]
    validation = facts["validation"]
    charts = [
        volume_history_chart(volume.get("history") or []),
        rows_chart(volume),
        events_chart(volume),
        volume_check_chart(validation.get("volume_check")),
        drift_chart(validation.get("drift") or []),
        index_chart(facts["article_index"]),
        split_chart("examples", "Training examples: records per kind and split",
                    facts["examples"], "records"),
        split_chart("features", "Features: rows per entity and split", facts["features"],
                    "rows"),
    ]
    return [c for c in charts if c is not None]
