"""Print what a day's run produced (where each output is and what it holds) and build the
day's report page again from its published outputs alone (docs/report.md).

python -m beam_jobs.report --output_dir=DIR|gs://... --run_date=YYYY-MM-DD [--no_page]
    [--events=EXPORT_DIR --timezone=TZ]
"""

import argparse
import datetime as dt
import json
import os
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems

from schemas import contract
from transforms.common.span import day_span
from transforms.graph import index_store
from transforms.ingest.day_files import SUMMARY_FILE, day_dir, read_summary
from transforms.ingest.read import list_parquet_files, missing_partitions, partition_dirs
from transforms.publishing.files import SUCCESS, is_local
from transforms.publishing.readers import published_files, published_manifest, read_file_set, \
    read_jsonl_file
from transforms.report.publish import INDEX, publish_report, report_dir

DETAIL_CHARS = 80   # an example's _error_detail is cut here on the console


def where(path: str) -> str:
    """A path as the console shows it: absolute when local."""
    return os.path.abspath(path) if is_local(path) else path


def is_published(day_folder: str) -> bool:
    return FileSystems.exists(f"{day_folder}/{SUCCESS}")


def report(output_dir: str, run_date: str) -> List[str]:
    """The console summary's lines (local or gs:// output directories)."""
    out = output_dir.rstrip("/")
    lines = [f"Outputs of {run_date} under {where(out)}"]
    vdir = f"{out}/validation/dt={run_date}"
    try:
        s = read_summary(vdir)
    except FileNotFoundError:
        return lines + [f"  no validation summary at {vdir}: the day was not validated"]
    verdict = "BLESSED" + (" (overridden)" if s.get("overridden") else "") if s["blessed"] \
        else "NOT BLESSED: " + ", ".join(s.get("reasons", []))
    lines += [
        f"validation/  {verdict}",
        f"  rows read {s['rows_read']:,} = out of span {s['out_of_span']:,} + quarantined "
        f"{s['rows_quarantined']:,} + duplicates dropped {s['duplicates_dropped']:,} + valid "
        f"{s['rows_valid']:,}",
        "  quarantined by reason: " + (", ".join(
            f"{r} {n:,}" for r, n in s["quarantined_by_reason"].items()) or "none"),
        f"  anomalies: {len(s['anomalies'])}" + "".join(
            f"\n    [{a.get('environment', '-')}] {a['severity']} {a['feature']}: "
            f"{a['description']}" for a in s["anomalies"]),
        f"  statistics page (opens offline): {where(vdir)}/stats.html",
    ]
    qdir = f"{out}/quarantine/dt={run_date}"
    if is_published(qdir):
        files = published_files(qdir, "quarantine")
        lines.append(f"quarantine/  {where(qdir)}: {len(files)} file(s) of GZIP JSON "
                     "lines listed by its manifest (each line: the row, _error_reason, "
                     "_error_detail)")
        lines += [f"  e.g. {reason}: {detail}"
                  for reason, detail in sorted(example_details(files[:1]).items())]
    else:
        lines.append("quarantine/  not published")
    validated = f"{out}/validated/dt={run_date}"
    if is_published(validated):
        part = published_manifest(validated)["file_sets"]["part"]
        lines.append(f"validated/  {part['rows']:,} rows of Parquet in {len(part['files'])} "
                     f"file(s) in {where(validated)}")
    return lines + graph_lines(out, run_date) + examples_lines(out, run_date) + \
        features_lines(out, run_date)


def example_details(paths: List[str]) -> Dict[str, str]:
    """The first _error_detail of each reason in the quarantine files `paths` (the report
    reads the first file only: its size is bounded by --target_shard_mb), cut at
    DETAIL_CHARS. Details name the check that failed, never the whole row."""
    found: Dict[str, str] = {}
    for path in paths:
        for line in read_jsonl_file(path):
            row = json.loads(line)
            reason = row.get("_error_reason")
            if reason and reason not in found:
                detail = str(row.get("_error_detail", ""))
                found[reason] = detail if len(detail) <= DETAIL_CHARS else \
                    detail[:DETAIL_CHARS - 3] + "..."
    return found


def graph_lines(out: str, run_date: str) -> List[str]:
    gdir = f"{out}/cooccurrence/dt={run_date}"
    if not is_published(gdir):
        return ["cooccurrence/  not published"]
    lines = []
    m = published_manifest(gdir)
    sets = m["file_sets"]
    lines.append(f"cooccurrence/  {where(gdir)}  (weighting "
                 f"{m['options']['weighting']}, top_k {m['options']['top_k']})")
    for name in ("edges", "neighbors", "nodes", "index"):
        if name in sets:
            lines.append(f"  {name:<10}{sets[name]['rows']:>10,} records in "
                         f"{len(sets[name]['files'])} file(s)")
    nodes = read_file_set(gdir, "nodes")
    if nodes:
        top = max(nodes, key=lambda n: (n["frequency"][0], n["article_id"][0]))
        article = top["article_id"][0]
        neighbours = {n["article_id"][0]: n for n in read_file_set(gdir, "neighbors")}
        lines.append(f"  most viewed article {article.decode()} (index {top['index'][0]}, "
                     f"{top['frequency'][0]} interactions); its top neighbours:")
        if article in neighbours:
            n = neighbours[article]
            for dst, w, c in list(zip(n["neighbor_ids"], n["neighbor_weights"],
                                      n["neighbor_counts"]))[:5]:
                lines.append(f"    {dst.decode():<14} weight {w:8.4f}  count {c}")
    index = m.get("article_index")
    if index:
        versions = index_store.published_versions(out)
        lines.append(f"article_index/  version {index['version']} (extends "
                     f"{index['parent']}), vocab_size {index['vocab_size']:,}; "
                     f"{len(versions)} version(s) published, CURRENT names "
                     f"{index_store.read_current(out)}")
    return lines


def examples_lines(out: str, run_date: str) -> List[str]:
    """One line per kind: records per split, files, what the records hold."""
    lines = []
    for kind in contract.EXAMPLE_KINDS:
        edir = f"{out}/examples/{kind}/dt={run_date}"
        if not is_published(edir):
            lines.append(f"examples/{kind:<10} not published")
            continue
        m = published_manifest(edir)
        sets = m["file_sets"]
        held = ", ".join(f"{k} {v:,}" for k, v in m.get("counts", {}).items())
        lines.append(f"examples/{kind:<10}" + "  ".join(
            f"{split} {sets[split]['rows']:,} records in {len(sets[split]['files'])} file(s)"
            for split in contract.SPLITS if split in sets) + f"  ({held})")
        lines.append(f"  {where(edir)}")
    return lines


def features_lines(out: str, run_date: str) -> List[str]:
    """One line per entity: rows per split, the feature gate, the transform folder."""
    lines = []
    for entity in ("articles", "users"):
        fdir = f"{out}/features/{entity}/dt={run_date}"
        if not is_published(fdir):
            lines.append(f"features/{entity:<9} not published")
            continue
        m = published_manifest(fdir)
        sets, gate = m["file_sets"], m.get("feature_gate", {})
        verdict = "BLESSED" + (" (overridden)" if gate.get("overridden") else "") \
            if gate.get("blessed") else "NOT BLESSED"
        skipped = len(m.get("lookback", {}).get("skipped", []))
        lines.append(f"features/{entity:<9} {verdict}  train {sets['train']['rows']:,} rows, "
                     f"eval {sets['eval']['rows']:,} rows; lookback days used "
                     f"{len(m.get('lookback', {}).get('used', []))}, skipped {skipped}")
        lines.append(f"  tft.TFTransformOutput: {where(fdir)}/{m['transform_output']}")
    return lines


def why_not_validated(output_dir: str, run_date: str, events: str, timezone: str) -> Optional[str]:
    """Why a day has no validation summary, as far as its export shows: the UTC partitions
    of its span with no Parquet file (the run then fails before validation). None when the
    day was validated, or when no --events (an export folder) is given."""
    if not events or events.startswith("bq://"):
        return None
    if FileSystems.exists(f"{day_dir(output_dir.rstrip('/'), run_date)}/{SUMMARY_FILE}"):
        return None
    span = day_span(dt.date.fromisoformat(run_date), timezone)
    files = {d.isoformat(): len(list_parquet_files(folder))
             for d, folder in zip(span.utc_dates(), partition_dirs(events, span))}
    missing = missing_partitions(list(files), files)    # the export reader's rule
    if not missing:
        return None
    return (f"the run failed before validation: {len(missing)} UTC partition(s) of the span "
            f"have no Parquet file in {events}: {', '.join('dt=' + d for d in missing)}")


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m beam_jobs.report",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True,
                        help="the jobs' --output_dir (local or gs://)")
    parser.add_argument("--run_date", required=True, help="the day, YYYY-MM-DD")
    parser.add_argument("--events", default="",
                        help="the day's export folder (optional): a day that was not "
                             "validated is checked for missing UTC partitions, named on the "
                             "page")
    parser.add_argument("--timezone", default="Asia/Seoul",
                        help="IANA time zone of --run_date (with --events)")
    parser.add_argument("--no_page", action="store_true",
                        help="print the console summary and the page the day's run committed; "
                             "build no page")
    args = parser.parse_args(argv)
    print("\n".join(report(args.output_dir, args.run_date)))
    if args.no_page:
        page = f"{report_dir(args.output_dir, args.run_date)}/{INDEX}"
        if not FileSystems.exists(page):
            print("report page: none committed (rebuild it without --no_page)")
            return ""
    else:
        page = publish_report(args.output_dir, args.run_date, why_not_validated(
            args.output_dir, args.run_date, args.events, args.timezone))
    print(f"report page: {where(page)}")
    return page


if __name__ == "__main__":
    main()
