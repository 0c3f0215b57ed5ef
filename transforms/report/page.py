"""The day's page: one self-contained HTML file (inline CSS, pictures as PNG data URIs,
nothing from the network), every text escaped, sections in the order a person reads the
morning: the verdict, volumes, validation, the article index, training examples,
features, run facts. `render_page(facts, charts)`; docs/report.md.
"""

import html
import json
from typing import Dict, List, Sequence

SECTIONS = (("verdict", "Verdict"), ("volumes", "Volumes"), ("validation", "Validation"),
            ("article-index", "Article index"), ("examples", "Training examples"),
            ("features", "Features"), ("run", "Run facts"))
CHARTS_OF = {"volumes": ("volume_history", "rows_of_the_day", "events_by_name"),
             "validation": ("volume_check", "drift"), "article-index": ("article_index",),
             "examples": ("examples",), "features": ("features",)}

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 70em; }
table { border-collapse: collapse; margin: 0.5em 0 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { font-size: 1.4em; font-weight: bold; padding: 0.4em 0.8em; display: inline-block; }
.blessed { background: #d7f5d7; } .overridden { background: #fff1c2; }
.refused, .not-validated { background: #f9d0d0; }
section { border-top: 1px solid #ddd; margin-top: 1em; }
img.chart { display: block; margin: 0.5em 0; }
nav a { margin-right: 1em; }
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _number(value) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.1f}"
    return f"{int(value):,}" if isinstance(value, (int, float)) else _e(value)


def table(rows: Sequence[Sequence], header: Sequence[str] = ()) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{_number(c)}</td>' if isinstance(c, (int, float))
            and not isinstance(c, bool) else f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _image(chart: Dict) -> str:
    return (f'<img class="chart" id="chart-{_e(chart["name"])}" alt="{_e(chart["title"])}" '
            f'src="data:image/png;base64,{chart["png"]}">')


def _verdict(facts: Dict) -> List[str]:
    verdict = facts["verdict"]
    label = verdict["label"]
    words = {"blessed": "BLESSED", "overridden": "BLESSED (overridden)",
             "refused": "NOT BLESSED", "not validated": "NOT VALIDATED"}[label]
    out = [f'<div class="verdict {label.replace(" ", "-")}">{_e(words)}</div>']
    for title, items in (("Reasons", verdict["reasons"]), ("Warnings", verdict["warnings"]),
                         ("Withdrawn", verdict["withdrawn"])):
        if items:
            out.append(f"<h3>{title}</h3><ul>" + "".join(f"<li>{_e(i)}</li>" for i in items)
                       + "</ul>")
    for refusal in facts.get("refusals") or []:
        out.append(f"<h3>Refused by {_e(refusal['stage'])}</h3><pre>{_e(refusal['message'])}"
                   "</pre>")
    if facts["absent"]:
        out.append("<h3>Absent</h3>" + table(sorted(facts["absent"].items()),
                                              ("output", "why")))
    return out


def _volumes(facts: Dict) -> List[str]:
    volume = facts["volume"]
    if "rows_read" not in volume:
        return ["<p>No validation summary: no volumes.</p>"]
    rows = [["rows read", volume["rows_read"]], ["valid", volume["rows_valid"]],
            ["quarantined", volume["rows_quarantined"]],
            ["duplicates dropped", volume["duplicates_dropped"]],
            ["out of span", volume["out_of_span"]]]
    rows += [[f"quarantined: {r}", n] for r, n in volume["quarantined_by_reason"].items()]
    out = [table(rows, ("rows", "count"))]
    out.append(table([[s, c.get("rows_read", 0), c.get("rows_valid", 0)]
                      for s, c in volume["by_source"].items()], ("source", "read", "valid")))
    out.append(table([[d, c["rows_read"], c["rows_valid"], c["span_hours"]]
                      for d, c in volume["by_partition"].items()],
                     ("UTC partition", "read", "valid", "hours of the span")))
    out.append(table([[h["day"], h["rows_read"], h["rows_valid"],
                       h["valid_by_source"].get("client") or "",
                       h["valid_by_source"].get("server") or "", h["verdict"]]
                      for h in volume["history"]],
                     ("day", "read", "valid", "valid client", "valid server", "verdict")))
    return out


def _validation(facts: Dict) -> List[str]:
    validation = facts["validation"]
    if not validation:
        return ["<p>The day was not validated.</p>"]
    out = [f'<p>Statistics page: <a href="{_e(validation["stats_page"])}">'
           f'{_e(validation["stats_page"])}</a>; drift compared with '
           f'{_e(validation["previous_blessed_date"] or "no earlier blessed day")}.</p>']
    anomalies = validation["anomalies"]
    out.append(table([[a["environment"], a["severity"], a["feature"] or "(dataset)",
                       a["description"]] for a in anomalies],
                     ("environment", "severity", "feature", "description"))
               if anomalies else "<p>No anomalies.</p>")
    if validation["drift"]:
        out.append(table([[d["environment"], d["feature"], d["type"], d["value"],
                           d["threshold"]] for d in validation["drift"]],
                         ("environment", "feature", "measure", "value", "threshold")))
    check = validation.get("volume_check") or {}
    if check.get("note"):
        out.append(f"<p>Volume check: {_e(check['note'])}.</p>")
    return out


def _index(facts: Dict) -> List[str]:
    index = facts["article_index"]
    day = index["day"]
    out = ["<p>Not published for this day.</p>" if day is None else
           f"<p>Version {_e(day['version'])} (parent {_e(day['parent'])}): vocabulary "
           f"{_number(day['vocab_size'])}, new articles {_number(day['new_articles'])}.</p>"]
    out.append(table([[v["version"], v["parent"] or "", v["vocab_size"], v["new_articles"],
                       v["run_date"]] for v in index["versions"]],
                     ("version", "parent", "vocabulary", "new articles", "day")))
    return out


def _splits(published: Dict, what: str) -> List[str]:
    rows = []
    for name, sets in published.items():
        if not sets:
            rows.append([name, "not published", "", "", ""])
            continue
        for split, size in sets["splits"].items():
            rows.append([name, split, size["rows"], size["files"], size["bytes"]])
    return [table(rows, (what, "split", "rows", "files", "bytes"))]


def _features(facts: Dict) -> List[str]:
    out = _splits(facts["features"], "entity")
    for entity, sets in facts["features"].items():
        if not sets:
            continue
        gate = sets["gate"]
        word = "blessed" if gate.get("blessed") else "refused"
        word += " (overridden)" if gate.get("overridden") else ""
        out.append(f"<p>{_e(entity)}: gate {_e(word)}"
                   + (f", reasons {_e(', '.join(gate.get('reasons') or []))}"
                      if gate.get("reasons") else "")
                   + f"; lookback days used {sets['lookback_used']}, skipped "
                   f"{len(sets['lookback_skipped'])}.</p>")
        if sets["anomalies"]:
            out.append(table([[a.get("environment", ""), a["severity"], a["feature"],
                               a["description"]] for a in sets["anomalies"]],
                             ("split", "severity", "feature", "description")))
    return out


def _run(facts: Dict) -> List[str]:
    run = facts["run"]
    suite = facts["suite"]
    out = [table([["suite version", run["suite_version"] or suite.get("suite_version")],
                  ["suite revision", run["suite_revision"] or suite.get("suite_revision")],
                  ["time zone", run["timezone"]],
                  ["span (UTC)", " to ".join(run["span_utc"] or [])],
                  ["page built by", suite.get("suite_revision")]], ("fact", "value"))]
    out.append(table([[t["kind"], t["run_id"], t["started"], t["committed"], t["wall_s"]]
                      for t in run["stages"]],
                     ("output", "run", "started (UTC)", "committed", "seconds")))
    out.append("<h3>Input</h3><pre>" + _e(json.dumps(run["input"], indent=1)) + "</pre>")
    out.append("<h3>Options</h3><pre>" + _e(json.dumps(run["options"], indent=1,
                                                        sort_keys=True)) + "</pre>")
    return out


_BODIES = {"verdict": _verdict, "volumes": _volumes, "validation": _validation,
           "article-index": _index, "examples": lambda f: _splits(f["examples"], "kind"),
           "features": _features, "run": _run}


def render_page(facts: Dict, charts: List[Dict]) -> str:
    by_name = {c["name"]: c for c in charts}
    body = [f"<h1>Preprocessing of {_e(facts['run_date'])}</h1>",
            "<nav>" + "".join(f'<a href="#{i}">{_e(t)}</a>' for i, t in SECTIONS) + "</nav>"]
    for section, title in SECTIONS:
        body.append(f'<section id="{section}"><h2>{_e(title)}</h2>')
        body += [_image(by_name[n]) for n in CHARTS_OF.get(section, ()) if n in by_name]
        body += _BODIES[section](facts)
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>Preprocessing {_e(facts['run_date'])}</title>"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
