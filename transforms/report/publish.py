"""The day's report committed under <output_dir>/report/dt=<day>/ by the publishing protocol
(docs/report.md#where-it-is): the page (page-<run>.html, served as text/html) and its
figures (report-<run>.json) are a run's files; _SUCCESS names the run; index.html, the
stable address, is a small page pointing at the committed page, and report.json a copy of
its figures, both moved after _SUCCESS by compare-and-swap; report/LATEST names the
newest day. report/ is never withdrawn: a refused day keeps its page.
"""

import json
from typing import Dict, Optional, Sequence, Tuple

import apache_beam as beam
import google_crc32c

from transforms.publishing.files import SUCCESS, read_bytes, write_atomic, write_bytes
from transforms.publishing.protocol import follow_success, publish_day, read_base
from transforms.publishing.retention import DEFAULT_KEEP_HOURS
from transforms.publishing.runs import Clock, new_run_id
from transforms.publishing.store import store_for
from transforms.publishing.writers import FileRecord
from transforms.report.charts import day_charts
from transforms.report.facts import day_facts
from transforms.report.page import render_page

REPORT_DIR = "report"
INDEX = "index.html"
REPORT_JSON = "report.json"
PAGE, FIGURES = "page", "report"           # the run's two file sets
HTML_TYPE = "text/html; charset=utf-8"


def report_dir(output_dir: str, run_date: str) -> str:
    return f"{output_dir.rstrip('/')}/{REPORT_DIR}/dt={run_date}"


def build_report(output_dir: str, run_date: str, why_absent: Optional[str] = None,
                 refusals: Sequence[Dict] = ()) -> Tuple[Dict, str]:
    """(report.json's content: the facts and each picture's labels; the page)."""
    facts = day_facts(output_dir, run_date, why_absent, refusals)
    charts = day_charts(facts)
    page = render_page(facts, charts)
    figures = [{"name": c["name"], "title": c["title"], "labels": c["labels"]} for c in charts]
    return dict(facts, figures=figures), page


def pointer_page(run_id: str) -> bytes:
    """index.html: where the committed page of the day is."""
    page = f"page-{run_id}.html"
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="0; url={page}">'
            f"<title>report</title></head><body><a href=\"{page}\">{page}</a>"
            f"</body></html>\n").encode("utf-8")


def _file(final_dir: str, file_set: str, name: str, data: bytes, mime_type: str) -> FileRecord:
    write_bytes(f"{final_dir}/{name}", data, mime_type)
    return FileRecord(file_set, name, 1, len(data), {}, f"{google_crc32c.value(data):08x}")


def point_index(final_dir: str) -> Optional[str]:
    """index.html and report.json := those of the run _SUCCESS names, each index.html move
    a compare-and-swap on the generation read, again while _SUCCESS moves. The run id, or
    None when the day has no committed report."""
    index_path = f"{final_dir}/{INDEX}"
    store = store_for(index_path)

    def point(run_id: str) -> bool:
        index = store.read(index_path)
        wanted = pointer_page(run_id)
        if index.data != wanted and store.write_if(index_path, wanted, index.generation,
                                                   HTML_TYPE) is None:
            return False                  # another run moved it meanwhile: read again
        figures = read_bytes(f"{final_dir}/{FIGURES}-{run_id}.json")
        write_atomic(f"{final_dir}/{REPORT_JSON}", figures, run_id)
        return True

    run_id = follow_success(final_dir, point)
    if run_id is None:
        raise RuntimeError(f"{final_dir}/{SUCCESS} kept moving while {INDEX} was pointed at it")
    return run_id or None


def publish_report(output_dir: str, run_date: str, why_absent: Optional[str] = None,
                   keep_hours: float = DEFAULT_KEEP_HOURS, clock: Optional[Clock] = None,
                   refusals: Sequence[Dict] = ()) -> str:
    """Builds the day's report from its published outputs and commits it; the path of
    index.html. `why_absent` says why the day has no validation, when that is known;
    `refusals` are the gates' refusals of the running job ({"stage", "reasons",
    "message"}), whose files are not published."""
    final_dir = report_dir(output_dir, run_date)
    base = read_base(final_dir)
    run_id = new_run_id(clock)
    report, page = build_report(output_dir, run_date, why_absent, refusals)
    report["run_id"] = run_id
    figures = (json.dumps(report, indent=1, sort_keys=True, default=str) + "\n").encode()
    records = [_file(final_dir, PAGE, f"{PAGE}-{run_id}.html", page.encode("utf-8"),
                     HTML_TYPE),
               _file(final_dir, FIGURES, f"{FIGURES}-{run_id}.json", figures,
                     "application/json")]
    publish_day(final_dir, run_id, records, {"kind": REPORT_DIR, "run_date": run_date},
                (PAGE, FIGURES), base, keep_hours, clock)
    point_index(final_dir)
    return f"{final_dir}/{INDEX}"


def report_refusal(output_dir: str, run_date: str, keep_hours: float, refusal: Dict) -> str:
    """A gate's refusal hook (functools.partial(report_refusal, out, day, keep_hours) is
    what a job hands a gate): the day's page, with the refusal, before the gate raises.
    Returns a line for the refusal's message: where the page is, or why it could not be
    written (the refusal stays the job's error either way; a page that fails to build must
    not hide why the day was refused)."""
    try:
        page = publish_report(output_dir, run_date, keep_hours=keep_hours, refusals=[refusal])
        return f"the day's page: {page}"
    except Exception as err:  # reported in the refusal's message, never dropped
        return f"the day's page could not be written: {type(err).__name__}: {err}"


class PublishReport(beam.PTransform):
    """The day's report as a job's last step: {name: PCollection} of everything the job
    publishes (its commits' outputs) -> one element, the path of the report's index.html,
    written once every one of them is complete."""

    def __init__(self, output_dir: str, run_date: str, keep_hours: float = DEFAULT_KEEP_HOURS):
        super().__init__()
        self._output_dir, self._run_date, self._keep_hours = output_dir, run_date, keep_hours

    def expand(self, published):
        waits = {f"after_{name}": beam.pvalue.AsList(p) for name, p in published.items()}
        out, day, keep = self._output_dir, self._run_date, self._keep_hours
        return (next(iter(published.values())).pipeline
                | "StartReport" >> beam.Create([None])
                | "BuildReport" >> beam.Map(
                    lambda _, **after: publish_report(out, day, keep_hours=keep), **waits))
