"""The morning report (transforms/report/, beam_jobs/report.py): the page rebuilt from a
day's outputs alone, on a local folder (a copy of the session's daily run of the marked
day) and on gs:// (the same files on a real Cloud Storage server on loopback); a subset of
stages; the pointer's compare-and-swap; escaping; no user id, marker or quarantine line
on the page or in report.json."""

import base64
import html.parser
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from beam_jobs import report as report_job
from tests.helpers.jobs import MARKER, RUN_DATE
from transforms.publishing.files import SUCCESS, write_bytes
from transforms.publishing.readers import published_files, read_jsonl_file
from transforms.report import page as page_lib
from transforms.report.publish import INDEX, REPORT_JSON, point_index, pointer_page, \
    report_dir

SECTIONS = [section for section, _ in page_lib.SECTIONS]


class _Page(html.parser.HTMLParser):
    """Section ids, images (their id and data) and the text of a page."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        if tag == "img":
            self.images.append((attrs["id"], attrs["src"]))

    def handle_data(self, data):
        self.text.append(data)


def parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    return parsed


def read_text(path: str) -> str:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read().decode("utf-8")


def committed_page(final_dir: str) -> str:
    run_id = read_text(f"{final_dir}/{SUCCESS}").strip()
    assert read_text(f"{final_dir}/{INDEX}").encode() == pointer_page(run_id)
    return read_text(f"{final_dir}/page-{run_id}.html")


@pytest.fixture(scope="module")
def rebuilt(marked_daily_run, tmp_path_factory):
    """The report rebuilt by the command on a copy of the marked day's outputs."""
    out = str(tmp_path_factory.mktemp("report") / "out")
    shutil.copytree(marked_daily_run[2], out)
    return out, report_job.main([f"--output_dir={out}", f"--run_date={RUN_DATE}"])


@pytest.mark.jobs
def test_the_rebuild_commits_a_page_with_every_section_and_its_pictures(rebuilt, capsys):
    out, index = rebuilt
    final_dir = report_dir(out, RUN_DATE)
    assert index == f"{final_dir}/{INDEX}"
    page = committed_page(final_dir)
    parsed = parse(page)
    assert parsed.sections == SECTIONS
    names = [name for name, _ in parsed.images]
    assert names == ["chart-volume_history", "chart-rows_of_the_day", "chart-events_by_name",
                     "chart-article_index", "chart-examples", "chart-features"]
    for _, source in parsed.images:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG")
    assert "http://" not in page and "https://" not in page.replace(
        "https://example.com", "")
    assert "<script" not in page
    with open(os.path.join(out, "report", "LATEST")) as handle:
        assert handle.read().strip() == RUN_DATE
    report = json.loads(read_text(f"{final_dir}/{REPORT_JSON}"))
    run_id = read_text(f"{final_dir}/{SUCCESS}").strip()
    assert report == json.loads(read_text(f"{final_dir}/report-{run_id}.json"))
    assert report["run_id"] == run_id and report["verdict"]["label"] == "blessed"
    assert [f["name"] for f in report["figures"]] == [n[len("chart-"):] for n in names]
    # Every label a picture draws is in report.json; every figure the tables show is there.
    text = " ".join(parsed.text)
    for figure in report["figures"]:
        assert figure["title"] in page and len(figure["labels"]) > 2
    summary_path = os.path.join(out, "validation", f"dt={RUN_DATE}", "summary.json")
    with open(summary_path) as handle:
        summary = json.load(handle)
    assert report["volume"]["rows_read"] == summary["rows_read"]
    assert report["volume"]["quarantined_by_reason"] == summary["quarantined_by_reason"]
    assert f"{summary['rows_read']:,}" in text
    assert report["article_index"]["day"]["version"] == 1
    assert report["absent"] == {}
    assert {s["kind"] for s in report["run"]["stages"]} == {
        "quarantine", "validated", "cooccurrence", "examples/skipgram", "examples/sequences",
        "examples/ranking", "features/articles", "features/users"}


@pytest.mark.jobs
def test_the_daily_job_commits_the_page_as_its_last_step(marked_daily_run):
    """The marked day's daily run (every stage) ended with its page: every output's commit
    is on it, and the page was committed after all of them."""
    out = marked_daily_run[2]
    final_dir = report_dir(out, RUN_DATE)
    page = committed_page(final_dir)
    assert parse(page).sections == SECTIONS and len(parse(page).images) >= 6
    report = json.loads(read_text(f"{final_dir}/{REPORT_JSON}"))
    stages = report["run"]["stages"]
    assert {s["kind"] for s in stages} == {
        "quarantine", "validated", "cooccurrence", "examples/skipgram", "examples/sequences",
        "examples/ranking", "features/articles", "features/users"}
    with open(os.path.join(final_dir, "manifest.json")) as handle:
        committed = json.load(handle)["committed_at"]
    assert all(s["committed"] <= committed for s in stages)
    assert report["verdict"]["label"] == "blessed" and report["refusals"] == []
    with open(os.path.join(out, "report", "LATEST")) as handle:
        assert handle.read().strip() == RUN_DATE


@pytest.mark.jobs
def test_no_user_id_marker_or_quarantine_line_is_on_the_page(rebuilt, marked_daily_run):
    out, _ = rebuilt
    final_dir = report_dir(out, RUN_DATE)
    validated = pq.read_table(published_files(os.path.join(out, "validated", f"dt={RUN_DATE}"),
                                              "part")[0], partitioning=None)
    users = {u for u in validated.column("user_id").to_pylist() if u}
    quarantined = [json.loads(line) for path in published_files(
        os.path.join(out, "quarantine", f"dt={RUN_DATE}"), "quarantine")
        for line in read_jsonl_file(path)]
    event_ids = {row["event_id"] for row in quarantined if row["event_id"]}
    assert len(users) > 100 and len(event_ids) > 20
    for name in sorted(os.listdir(final_dir)):
        if name.startswith(("page-", "report")):
            text = read_text(f"{final_dir}/{name}")
            assert MARKER not in text, name
            assert [u for u in users if u in text] == [], name
            assert [e for e in event_ids if f'"{e}"' in text or f">{e}<" in text] == [], name


@pytest.mark.jobs
def test_a_rebuild_of_some_stages_names_the_absent_ones(marked_daily_run, tmp_path):
    out = str(tmp_path / "out")
    shutil.copytree(marked_daily_run[2], out, ignore=shutil.ignore_patterns("features",
                                                                            "ranking"))
    report_job.main([f"--output_dir={out}", f"--run_date={RUN_DATE}", "--no_page"])
    index = report_job.main([f"--output_dir={out}", f"--run_date={RUN_DATE}"])
    report = json.loads(read_text(index.replace(INDEX, REPORT_JSON)))
    assert report["absent"] == {"examples/ranking": "not published",
                                "features/articles": "not published",
                                "features/users": "not published"}
    assert report["features"] == {"articles": None, "users": None}
    page = committed_page(report_dir(out, RUN_DATE))
    assert "<td>features/users</td><td>not published</td>" in page
    assert [f["name"] for f in report["figures"]] == [
        "volume_history", "rows_of_the_day", "events_by_name", "article_index", "examples"]
    # Nothing validated at all: the page says why.
    shutil.rmtree(os.path.join(out, "validation"))
    index = report_job.main([f"--output_dir={out}", f"--run_date={RUN_DATE}"])
    report = json.loads(read_text(index.replace(INDEX, REPORT_JSON)))
    assert report["verdict"]["label"] == "not validated"
    assert report["absent"]["validation"] == "no summary.json: the day was not validated"
    assert "NOT VALIDATED" in committed_page(report_dir(out, RUN_DATE))
    # A run that failed before validation for a missing partition: the rebuild, given the
    # export, names it.
    events = str(tmp_path / "events")
    shutil.copytree(marked_daily_run[1], events)
    shutil.rmtree(os.path.join(events, "dt=2026-11-25"))
    index = report_job.main([f"--output_dir={out}", f"--run_date={RUN_DATE}",
                             f"--events={events}", "--timezone=Asia/Seoul"])
    report = json.loads(read_text(index.replace(INDEX, REPORT_JSON)))
    assert report["absent"]["validation"] == (
        "the run failed before validation: 1 UTC partition(s) of the span have no Parquet "
        f"file in {events}: dt=2026-11-25")
    assert "dt=2026-11-25" in committed_page(report_dir(out, RUN_DATE))


@pytest.mark.jobs
def test_the_rebuild_on_cloud_storage(rebuilt, gcs_server, capsys):
    """The same day's files on a real Cloud Storage server: the rebuild reads them through
    FileSystems and commits the page, served as text/html."""
    local, _ = rebuilt
    out = f"{gcs_server.bucket('report')}/out"
    for folder, _, names in os.walk(local):
        for name in names:
            if name.startswith("_cas-") or "/report" in folder[len(local):]:
                continue
            path = os.path.join(folder, name)
            write_bytes(f"{out}/{os.path.relpath(path, local)}", open(path, "rb").read())
    capsys.readouterr()
    index = report_job.main([f"--output_dir={out}", f"--run_date={RUN_DATE}"])
    printed = capsys.readouterr().out
    assert f"Outputs of {RUN_DATE} under {out}" in printed
    assert "validation/  BLESSED" in printed and "features/articles  BLESSED" in printed
    assert printed.rstrip().endswith(f"report page: {index}")
    final_dir = report_dir(out, RUN_DATE)
    page = committed_page(final_dir)
    assert parse(page).sections == SECTIONS
    bucket = gcs_server.client().bucket("report")
    run_id = read_text(f"{final_dir}/{SUCCESS}").strip()
    for name in (INDEX, f"page-{run_id}.html"):
        blob = bucket.get_blob(f"out/report/dt={RUN_DATE}/{name}")
        assert blob.content_type.startswith("text/html"), (name, blob.content_type)
    local_report = json.loads(read_text(f"{report_dir(local, RUN_DATE)}/{REPORT_JSON}"))
    remote_report = json.loads(read_text(f"{final_dir}/{REPORT_JSON}"))
    for key in ("verdict", "volume", "validation", "examples", "features"):
        assert remote_report[key] == local_report[key], key


@pytest.mark.functions
def test_the_pointer_follows_success_by_compare_and_swap(tmp_path):
    final_dir = str(tmp_path / "report" / "dt=2026-11-26")
    os.makedirs(final_dir)
    assert point_index(final_dir) is None
    for run_id in ("20261126T000000Z-aaaaaaaa", "20261126T010000Z-bbbbbbbb"):
        with open(os.path.join(final_dir, f"report-{run_id}.json"), "w") as handle:
            handle.write(json.dumps({"run_id": run_id}))
        with open(os.path.join(final_dir, SUCCESS), "w") as handle:
            handle.write(run_id + "\n")
        assert point_index(final_dir) == run_id
        assert open(os.path.join(final_dir, INDEX), "rb").read() == pointer_page(run_id)
        assert json.load(open(os.path.join(final_dir, REPORT_JSON))) == {"run_id": run_id}


@pytest.mark.functions
def test_the_page_escapes_every_text():
    facts = {"run_date": "2026-11-26", "absent": {"x": "<b>"},
             "verdict": {"label": "refused", "reasons": ["<script>alert(1)</script>"],
                         "warnings": ["a & b"], "withdrawn": ["validated"]},
             "volume": {"history": []}, "validation": {},
             "article_index": {"day": None, "versions": []}, "examples": {"skipgram": None},
             "features": {"articles": None},
             "run": {"suite_version": "1", "suite_revision": "r", "timezone": "UTC",
                     "span_utc": None, "stages": [], "input": {"q": "</pre>"},
                     "options": {}}, "suite": {}}
    page = page_lib.render_page(facts, [])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "NOT BLESSED" in page and "a &amp; b" in page and "&lt;/pre&gt;" in page
    assert parse(page).sections == SECTIONS


@pytest.mark.functions
def test_a_page_that_cannot_be_written_never_hides_the_refusal(tmp_path, monkeypatch):
    from transforms.report import publish
    refusal = {"stage": "validation", "reasons": ["anomalies"], "message": "day refused"}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(publish, "publish_report", broken)
    assert publish.report_refusal(str(tmp_path), RUN_DATE, 48, refusal) == (
        "the day's page could not be written: OSError: disk full")


@pytest.mark.functions
def test_the_index_series_stops_at_the_days_version(tmp_path):
    """A rebuild of an older day shows the versions up to its own; a seeded version has no
    count of new articles (its articles came from elsewhere)."""
    from transforms.graph import index_store
    from transforms.report.facts import index_facts
    out = str(tmp_path)
    sizes = {1: (None, 10, None), 2: (1, 15, None), 3: (2, 18, None)}
    for version, (parent, vocab, seeded) in sizes.items():
        folder = index_store.version_dir(out, version)
        os.makedirs(folder)
        run_id = f"2026112{version}T000000Z-0000000{version}"
        with open(os.path.join(folder, f"manifest-{run_id}.json"), "w") as handle:
            json.dump({"run_id": run_id, "version": version, "parent": parent,
                       "vocab_size": vocab, "run_date": f"2026-11-2{version}",
                       "seeded_from": seeded}, handle)
        with open(os.path.join(folder, SUCCESS), "w") as handle:
            handle.write(run_id + "\n")
    day = {"article_index": {"version": 2, "parent": 1, "vocab_size": 15}}
    facts = index_facts(out, day)
    assert [(v["version"], v["new_articles"]) for v in facts["versions"]] == [(1, 9), (2, 5)]
    assert facts["day"] == {"version": 2, "parent": 1, "vocab_size": 15, "new_articles": 5}
    assert [v["version"] for v in index_facts(out, None)["versions"]] == [1, 2, 3]
    # Version 1 seeded from another root: its articles are not new.
    manifest_path = [os.path.join(index_store.version_dir(out, 1), n) for n in
                     os.listdir(index_store.version_dir(out, 1)) if n.startswith("manifest-")][0]
    with open(manifest_path) as handle:
        manifest = json.load(handle)
    with open(manifest_path, "w") as handle:
        json.dump(dict(manifest, seeded_from="gs://other/out"), handle)
    assert [(v["version"], v["new_articles"]) for v in index_facts(out, day)["versions"]] == [
        (1, None), (2, 5)]
