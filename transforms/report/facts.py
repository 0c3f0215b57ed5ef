"""The figures of a day's report (report.json without its pictures' labels), read from what
the day's stages published, through FileSystems (local or gs://). Counts and reasons only:
no quarantine line, user id or pseudonym is read into them. docs/report.md#what-it-shows.
"""

import datetime as dt
from typing import Dict, List, Optional, Sequence

from apache_beam.io.filesystems import FileSystems

from schemas import contract
from transforms.common.version import suite_fields
from transforms.graph import index_store
from transforms.ingest.day_files import STATS_FILES, day_dir, read_summary, stats_from_bytes
from transforms.publishing.files import READ_ERRORS, read_bytes, read_json
from transforms.publishing.readers import published_manifest
from transforms.publishing.runs import parse_stamp, run_id_time

HISTORY_DAYS = 14        # the volume series: the day and the 13 before it
INDEX_VERSIONS = 10      # the article index series: the newest versions up to the day's
ENTITIES = ("articles", "users")


def published(day_folder: str) -> Optional[Dict]:
    """The manifest of the run `<day_folder>/_SUCCESS` names; None when it is not published."""
    try:
        return published_manifest(day_folder)
    except FileNotFoundError:        # no _SUCCESS: nothing published there
        return None


def summary_or_none(output_dir: str, day: str) -> Optional[Dict]:
    try:
        return read_summary(day_dir(output_dir, day))
    except FileNotFoundError:
        return None


def file_set_sizes(manifest: Dict, names) -> Dict[str, Dict]:
    """file set -> {rows, files, bytes} of a manifest."""
    sets = manifest.get("file_sets", {})
    return {name: {"rows": sets[name]["rows"], "files": len(sets[name]["files"]),
                   "bytes": sum(f.get("size_bytes", 0) for f in sets[name]["files"])}
            for name in names if name in sets}


def events_by_name(output_dir: str, day: str) -> Dict[str, Dict[str, int]]:
    """source -> event name -> rows in the day's statistics (of the statistics sample:
    the summary's stats_sample_fraction)."""
    found = {}
    for source, name in STATS_FILES.items():
        path = f"{day_dir(output_dir, day)}/{name}"
        try:
            stats = stats_from_bytes(read_bytes(path), path)
        except READ_ERRORS:
            continue
        counts = {}
        for dataset in stats.datasets:
            for feature in dataset.features:
                if list(feature.path.step) == ["event_name"] or feature.name == "event_name":
                    for bucket in feature.string_stats.rank_histogram.buckets:
                        counts[bucket.label] = counts.get(bucket.label, 0) + int(
                            round(bucket.sample_count))
        found[source] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return found


def volume_history(output_dir: str, run_date: dt.date, days: int = HISTORY_DAYS) -> List[Dict]:
    """The day and the days before it that were validated: rows read and valid (per source)
    and the verdict, oldest first."""
    series = []
    for back in range(days - 1, -1, -1):
        day = (run_date - dt.timedelta(days=back)).isoformat()
        summary = summary_or_none(output_dir, day)
        if summary is None:
            continue
        by_source = (summary.get("volume") or {}).get("by_source", {})
        series.append({
            "day": day, "rows_read": summary["rows_read"], "rows_valid": summary["rows_valid"],
            "valid_by_source": {s: by_source.get(s, {}).get("rows_valid") for s in
                                contract.SOURCES},
            "verdict": verdict_label(summary)})
    return series


def verdict_label(summary: Dict) -> str:
    if not summary.get("blessed"):
        return "refused"
    return "overridden" if summary.get("overridden") else "blessed"


def index_facts(output_dir: str, graph: Optional[Dict]) -> Dict:
    """The day's article index version (from its graph manifest) and the newest published
    versions up to it: version, parent, vocabulary size, articles new in it."""
    day = (graph or {}).get("article_index")
    numbers = index_store.published_versions(output_dir)
    if day is not None:                # the versions up to the day's (a rebuild of an old day)
        numbers = [n for n in numbers if n <= day["version"]]
    versions = []
    for version in numbers[-INDEX_VERSIONS - 1:]:
        manifest = published(index_store.version_dir(output_dir, version)) or {}
        versions.append({"version": version, "parent": manifest.get("parent"),
                         "vocab_size": manifest.get("vocab_size"),
                         "run_date": manifest.get("run_date"),
                         "seeded_from": manifest.get("seeded_from")})
    sizes = {v["version"]: v["vocab_size"] for v in versions}
    for entry in versions:
        # A first version counts every article as new (index 0 is the unknown article); a
        # seeded one, or one whose parent is out of the series, has no count.
        parent = sizes.get(entry["parent"]) if entry["parent"] else (
            None if entry["seeded_from"] else 1)
        entry["new_articles"] = None if parent is None or entry["vocab_size"] is None \
            else entry["vocab_size"] - parent
    versions = versions[-INDEX_VERSIONS:]
    if day is None:
        return {"day": None, "versions": versions}
    new = {v["version"]: v["new_articles"] for v in versions}.get(day["version"])
    return {"day": dict(day, new_articles=new), "versions": versions}


def features_gate_summary(folder: str, manifest: Dict) -> Optional[Dict]:
    """The features gate's summary the entity's manifest lists (its "stats" file set)."""
    for entry in manifest.get("file_sets", {}).get("stats", {}).get("files", []):
        if entry["name"].startswith("summary-") and entry["name"].endswith(".json"):
            return read_json(f"{folder}/{entry['name']}")
    return None


def stage_timing(kind: str, manifest: Dict) -> Dict:
    """A published run's start (from its run id), commit and the seconds between them."""
    started = run_id_time(manifest["run_id"])
    committed = parse_stamp(manifest["committed_at"]) if manifest.get("committed_at") else None
    return {"kind": kind, "run_id": manifest["run_id"],
            "started": None if started is None else started.isoformat(),
            "committed": manifest.get("committed_at"),
            "wall_s": None if started is None or committed is None
            else round((committed - started).total_seconds(), 1)}


def day_facts(output_dir: str, run_date: str, why_absent: Optional[str] = None,
              refusals: Sequence[Dict] = ()) -> Dict:
    """Every figure and label of the day's page but the pictures' (see charts.py).
    `why_absent` says why the day has no validation (a run that failed before it);
    `refusals` are the running job's gate refusals ({"stage", "reasons", "message"})."""
    out = output_dir.rstrip("/")
    day = dt.date.fromisoformat(run_date)
    summary = summary_or_none(out, run_date)
    folders = {"quarantine": f"{out}/quarantine/dt={run_date}",
               "validated": f"{out}/validated/dt={run_date}",
               "cooccurrence": f"{out}/cooccurrence/dt={run_date}"}
    folders.update({f"examples/{k}": f"{out}/examples/{k}/dt={run_date}"
                    for k in contract.EXAMPLE_KINDS})
    folders.update({f"features/{e}": f"{out}/features/{e}/dt={run_date}" for e in ENTITIES})
    manifests = {kind: published(folder) for kind, folder in folders.items()}
    absent = {}
    if summary is None:
        absent["validation"] = why_absent or "no summary.json: the day was not validated"
    for kind, manifest in manifests.items():
        if manifest is None:
            absent[kind] = "not published"
    facts = {
        "run_date": run_date, "output_dir": out, "suite": suite_fields(),
        "absent": absent, "verdict": _verdict(summary, manifests, refusals),
        "refusals": [dict(r) for r in refusals],
        "volume": _volume(summary, out, day),
        "validation": _validation(summary, run_date),
        "article_index": index_facts(out, manifests["cooccurrence"]),
        "examples": {k: _published_sets(manifests[f"examples/{k}"], contract.SPLITS)
                     for k in contract.EXAMPLE_KINDS},
        "features": {e: _features(folders[f"features/{e}"], manifests[f"features/{e}"])
                     for e in ENTITIES},
        "run": _run(manifests),
    }
    return facts


def _verdict(summary: Optional[Dict], manifests: Dict, refusals: Sequence[Dict]) -> Dict:
    """The day's verdict: the validation gate's, then the features gates' (published, or
    refused by the running job: `refusals`), and the warnings a person should read."""
    summary = summary or {}
    reasons = list(summary.get("reasons") or [])
    reasons += [f"{r['stage']}: " + ", ".join(r["reasons"]) for r in refusals
                if r["stage"] != "validation"]
    warnings = [f"[{a['environment']}] {a['feature'] or '(dataset)'}: {a['description']}"
                for a in summary.get("anomalies", []) if a.get("severity") != "ERROR"]
    note = (summary.get("volume_check") or {}).get("note")
    if note:
        warnings.append(f"volume: {note}")
    for entity in ENTITIES:
        manifest = manifests[f"features/{entity}"]
        gate = (manifest or {}).get("feature_gate") or {}
        if manifest is not None and not gate.get("blessed", True):
            reasons.append(f"features/{entity}: " + ", ".join(gate.get("reasons") or []))
        skipped = len(((manifest or {}).get("lookback") or {}).get("skipped", []))
        if skipped:
            warnings.append(f"features/{entity}: {skipped} lookback day(s) skipped")
    label = "refused" if refusals else (
        verdict_label(summary) if summary else "not validated")
    return {"label": label, "reasons": reasons, "warnings": warnings,
            "withdrawn": list(summary.get("withdrawn") or [])}


def _volume(summary: Optional[Dict], out: str, day: dt.date) -> Dict:
    history = volume_history(out, day)
    if summary is None:
        return {"history": history}
    return {
        "rows_read": summary["rows_read"], "rows_valid": summary["rows_valid"],
        "rows_quarantined": summary["rows_quarantined"],
        "quarantined_by_reason": dict(summary["quarantined_by_reason"]),
        "duplicates_dropped": summary["duplicates_dropped"],
        "out_of_span": summary["out_of_span"],
        "by_source": (summary.get("volume") or {}).get("by_source", {}),
        "by_partition": (summary.get("volume") or {}).get("by_partition", {}),
        "events_by_name": events_by_name(out, day.isoformat()),
        "stats_sample_fraction": summary.get("stats_sample_fraction"),
        "history": history,
    }


def _validation(summary: Optional[Dict], run_date: str) -> Dict:
    if summary is None:
        return {}
    return {"anomalies": list(summary.get("anomalies", [])),
            "drift": list(summary.get("drift", [])),
            "previous_blessed_date": summary.get("previous_blessed_date"),
            "volume_check": summary.get("volume_check"),
            "stats_page": f"../../validation/dt={run_date}/stats.html"}


def _published_sets(manifest: Optional[Dict], names) -> Optional[Dict]:
    if manifest is None:
        return None
    return {"splits": file_set_sizes(manifest, names), "counts": manifest.get("counts", {}),
            "run_id": manifest["run_id"]}


def _features(folder: str, manifest: Optional[Dict]) -> Optional[Dict]:
    if manifest is None:
        return None
    gate = features_gate_summary(folder, manifest) or {}
    lookback = manifest.get("lookback") or {}
    return {"splits": file_set_sizes(manifest, contract.SPLITS),
            "gate": manifest.get("feature_gate") or {},
            "anomalies": list(gate.get("anomalies", [])),
            "lookback_used": len(lookback.get("used", [])),
            "lookback_skipped": [dict(s) for s in lookback.get("skipped", [])]}


def _run(manifests: Dict) -> Dict:
    timings = [stage_timing(kind, m) for kind, m in manifests.items() if m is not None]
    options = {}
    for kind, manifest in manifests.items():
        if manifest is not None and manifest.get("options"):
            options[kind] = manifest["options"]
    present = [m for m in manifests.values() if m is not None]

    def first(field):
        return next((m[field] for m in present if m.get(field)), None)

    validated = manifests.get("validated") or {}
    return {"suite_version": first("suite_version"), "suite_revision": first("suite_revision"),
            "input": validated.get("input_provenance") or first("input_provenance"),
            "timezone": first("timezone"), "span_utc": first("span_utc"),
            "options": options, "stages": timings}
