"""Tier 3: whole jobs through run(argv) on generated days, compared with an
independent reference. One expensive pipeline run is shared per scenario
(session-scoped fixtures)."""

import datetime as dt
import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs import cooccurrence_graph, daily, validate_events
from schemas import contract
from tests.helpers.graph_reference import reference_graph
from transforms.graph import index_store
from transforms.publishing import retention
from transforms.publishing.readers import published_files, published_manifest, read_file_set
from transforms.publishing.runs import parse_stamp
from tests.helpers.jobs import LOCAL, RUN_DATE, summary_of, write_day
from tests.helpers.paths import ROOT
from tests.helpers.publishing_days import listing


pytestmark = pytest.mark.jobs


def read_set(day_dir, file_set):
    """All rows of one published file set, as a list of dicts (bytes decoded)."""
    return [{key: [v.decode() if isinstance(v, bytes) else v for v in values]
             for key, values in row.items()} for row in read_file_set(day_dir, file_set)]


def validated_rows(out, run_date=RUN_DATE):
    table = pq.read_table(
        published_files(os.path.join(out, "validated", f"dt={run_date}"), "part"),
        partitioning=None)
    d = table.to_pydict()
    stamps = table.column("event_timestamp").cast(pa.int64()).to_pylist()
    return [{"user_id": d["user_id"][i], "event_id": d["event_id"][i], "ts": stamps[i],
             "article_id": d["article_id"][i], "event_name": d["event_name"][i],
             "region_id": d["region_id"][i]} for i in range(table.num_rows)], table


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory):
    """A dirty-but-acceptable day through the daily job, with default options."""
    root = tmp_path_factory.mktemp("daily")
    day = write_day(root / "events", 12000, seed=3)
    out = str(root / "out")
    daily.run(LOCAL + [f"--events={root / 'events'}", f"--run_date={RUN_DATE}",
                       "--timezone=Asia/Seoul", f"--output_dir={out}"])
    return day, out, root


def test_counts_reconcile_with_what_was_planted(clean_run):
    day, out, _ = clean_run
    s = summary_of(out)
    planted = day.planted
    assert s["rows_read"] == day.table.num_rows
    assert s["out_of_span"] == planted["out_of_span"]
    assert s["quarantined_by_reason"] == {r: planted[r] for r in contract.REASONS if planted[r]}
    assert s["rows_quarantined"] == sum(planted[r] for r in contract.REASONS)
    assert s["duplicates_dropped"] == planted["duplicate_event_id"]
    assert s["rows_read"] == (s["out_of_span"] + s["rows_quarantined"]
                              + s["duplicates_dropped"] + s["rows_valid"])
    assert s["blessed"] is True and s["overridden"] is False
    # Volume: rows read per source and per UTC date of the timestamps, as the input holds
    # them; valid rows add up to rows_valid; the span's partitions cover its 24 hours.
    import collections
    volume = s["volume"]
    sources = collections.Counter(
        v if v in (contract.CLIENT, contract.SERVER) else "other"
        for v in day.table.column("source").to_pylist())
    assert {k: v["rows_read"] for k, v in volume["by_source"].items()} == dict(sources)
    dates = collections.Counter(
        "none" if t is None else t.astimezone(dt.timezone.utc).date().isoformat()
        for t in day.table.column("event_timestamp").to_pylist())
    assert {k: v["rows_read"] for k, v in volume["by_partition"].items()
            if v["rows_read"]} == dict(dates)
    assert sum(v["rows_valid"] for v in volume["by_source"].values()) == s["rows_valid"]
    assert sum(v["rows_valid"] for v in volume["by_partition"].values()) == s["rows_valid"]
    assert {k: v["span_hours"] for k, v in volume["by_partition"].items()
            if v["span_hours"]} == {"2026-11-25": 9.0, "2026-11-26": 15.0}


def test_quarantine_lines_carry_each_reason(clean_run):
    day, out, _ = clean_run
    qdir = os.path.join(out, "quarantine", f"dt={RUN_DATE}")
    reasons = {}
    for path in published_files(qdir, "quarantine"):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                assert set(row) == set(contract.COLUMN_NAMES) | {"_error_reason", "_error_detail"}
                reasons[row["_error_reason"]] = reasons.get(row["_error_reason"], 0) + 1
    assert reasons == {r: day.planted[r] for r in contract.REASONS if day.planted[r]}
    manifest = published_manifest(qdir)
    assert manifest["file_sets"]["quarantine"]["rows"] == summary_of(out)["rows_quarantined"]
    assert "validation" not in manifest   # published whatever the verdict


def test_validated_manifest_records_the_dedup_shards(clean_run):
    _, out, _ = clean_run
    vdir = os.path.join(out, "validated", f"dt={RUN_DATE}")
    manifest = published_manifest(vdir)
    s = summary_of(out)
    # The default: auto, ceil(checked valid rows / 1,000,000) = 1 on this small day.
    assert (manifest["dedup_shards_requested"], manifest["dedup_shards_resolved"]) == ("auto", 1)
    assert manifest["file_sets"]["part"]["rows"] == s["rows_valid"]
    assert manifest["validation"]["rows_valid"] == s["rows_valid"]
    assert listing(vdir) == sorted(
        [f["name"] for f in manifest["file_sets"]["part"]["files"]]
        + [f"manifest-{manifest['run_id']}.json", "manifest.json", "_SUCCESS"])


def every_validated_row(out):
    return sorted(validated_rows(out)[1].to_pylist(), key=repr)


def test_validation_with_auto_shards_gives_the_same_rows(clean_run, tmp_path):
    """auto with 2,000 rows a shard (several shards) publishes exactly the valid rows of
    the default run (a fixed --dedup_shards: the rerun in
    test_rerun_gives_the_same_content_and_keeps_the_index)."""
    _, out, root = clean_run
    target = str(tmp_path / "auto")
    validate_events.run(LOCAL + [f"--events={root / 'events'}", f"--run_date={RUN_DATE}",
                                 f"--output_dir={target}", "--target_shard_mb=0.05",
                                 "--dedup_shards=auto", "--max_rows_per_shard=2000"])
    assert every_validated_row(target) == every_validated_row(out)
    manifest = published_manifest(os.path.join(target, "validated", f"dt={RUN_DATE}"))
    checked = summary_of(target)["rows_valid"] + summary_of(target)["duplicates_dropped"]
    assert manifest["dedup_shards_resolved"] == -(-checked // 2000) > 1
    files = manifest["file_sets"]["part"]["files"]
    # One file per non-empty shard here: a file is cut at a chunk boundary (8,192 rows)
    # past --target_shard_mb, and no shard of this day holds more than one chunk.
    assert len(files) == manifest["dedup_shards_resolved"]
    assert sum(f["rows"] for f in files) == manifest["file_sets"]["part"]["rows"]
    assert summary_of(target)["quarantined_by_reason"] == summary_of(out)["quarantined_by_reason"]


def test_validated_rows_are_unique_normalised_and_in_span(clean_run):
    day, out, _ = clean_run
    rows, table = validated_rows(out)
    assert table.num_rows == summary_of(out)["rows_valid"]
    assert table.schema == contract.arrow_schema()
    ids = table.column("event_id").to_pylist()
    assert len(ids) == len(set(ids))
    names = set(table.column("event_name").to_pylist())
    assert names <= set(contract.EVENT_NAMES) and "article_view" in names
    ts = table.column("event_timestamp").cast(pa.int64()).to_numpy()
    assert ts.min() >= day.span.start_us and ts.max() < day.span.end_us


def test_graph_matches_the_reference_at_defaults(clean_run):
    _, out, _ = clean_run
    rows, _ = validated_rows(out)
    edges, neighbours, frequency, region = reference_graph(rows)
    gdir = os.path.join(out, "cooccurrence", f"dt={RUN_DATE}")
    got_edges = {(e["src_article_id"][0], e["dst_article_id"][0]):
                 (e["count"][0], e["weight"][0]) for e in read_set(gdir, "edges")}
    assert len(edges) > 100
    assert got_edges == edges
    got_neighbours = {n["article_id"][0]: n["neighbor_ids"] for n in read_set(gdir, "neighbors")}
    assert got_neighbours == neighbours
    nodes = {n["article_id"][0]: n for n in read_set(gdir, "nodes")}
    assert {a: n["frequency"][0] for a, n in nodes.items()} == frequency
    assert {a: n["region_id"][0] for a, n in nodes.items() if n["region_id"]} == region
    # First day: indexes 1..n by frequency desc, then id.
    expected_order = sorted(frequency, key=lambda a: (-frequency[a], a.encode()))
    assert {a: nodes[a]["index"][0] for a in nodes} == \
        {a: i + 1 for i, a in enumerate(expected_order)}
    manifest = json.load(open(os.path.join(gdir, "manifest.json")))
    assert manifest["file_sets"]["edges"]["rows"] == len(edges)
    assert manifest["file_sets"]["nodes"]["rows"] == len(frequency)
    assert manifest["options"]["weighting"] == "ppmi"
    assert os.path.exists(os.path.join(gdir, "_SUCCESS"))


GRAPH_RUNS = {
    # name: (worker processes, extra options)
    "auto": (1, []),
    "auto-2-workers": (2, ["--max_rows_per_shard=700"]),
    "1": (1, ["--graph_shards=1"]),
    "7": (1, ["--graph_shards=7", "--max_rows_per_shard=700"]),
}


@pytest.fixture(scope="session")
def count_graph_runs(clean_run, tmp_path_factory):
    """The graph job on the blessed day's validated Parquet, count-ranked, at shard counts
    auto, 1 and 7, with one worker and (auto, many article partitions) two worker processes.
    A small --max_rows_per_shard makes auto derive several user shards and article
    partitions from this small day."""
    _, out, _ = clean_run
    outs = {}
    for name, (workers, options) in GRAPH_RUNS.items():
        target = str(tmp_path_factory.mktemp(f"graph{name}"))
        # The graph job reads <root>/validated and its sibling validation/ summary.
        extra = [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"] \
            if workers > 1 else []
        cooccurrence_graph.run(LOCAL + extra + options + [
            f"--validated_events={out}/validated", f"--run_date={RUN_DATE}",
            f"--output_dir={target}", "--weighting=count", "--rank_by=count",
            "--min_pair_count=1"])
        outs[name] = target
    return out, outs


def decoded_records(day_dir, file_set):
    """The sorted multiset of one file set's decoded records (floats as decoded, so equal
    means bit-identical float32)."""
    return sorted(tuple(sorted((k, tuple(v)) for k, v in row.items()))
                  for row in read_file_set(day_dir, file_set))


def test_count_graph_matches_the_reference(count_graph_runs):
    source, outs = count_graph_runs
    one = outs["auto"]
    rows, _ = validated_rows(source)
    edges, neighbours, _, _ = reference_graph(rows, weighting="count", rank_by="count",
                                              min_pair_count=1)
    gdir = os.path.join(one, "cooccurrence", f"dt={RUN_DATE}")
    got = {(e["src_article_id"][0], e["dst_article_id"][0]): (e["count"][0], e["weight"][0])
           for e in read_set(gdir, "edges")}
    assert got == edges
    assert {n["article_id"][0]: n["neighbor_ids"] for n in read_set(gdir, "neighbors")} == \
        neighbours


def test_shard_counts_and_workers_publish_the_same_records(count_graph_runs):
    """Per file set, the same multiset of decoded records at --graph_shards auto, 1 and 7
    and with two worker processes (file names and counts may differ)."""
    _, outs = count_graph_runs
    dirs = {name: os.path.join(out, "cooccurrence", f"dt={RUN_DATE}")
            for name, out in outs.items()}
    manifests = {name: published_manifest(d) for name, d in dirs.items()}
    resolved = {name: (m["graph_shards_resolved"], m["article_partitions"])
                for name, m in manifests.items()}
    assert resolved["1"][0] == 1 and resolved["7"][0] == 7
    assert resolved["auto"] == (1, 1)
    # The small target makes several user shards and article partitions.
    assert resolved["auto-2-workers"][0] > 1 and resolved["auto-2-workers"][1] > 10
    assert resolved["7"][1] == resolved["auto-2-workers"][1]
    assert manifests["7"]["options"]["graph_shards"] == "7"
    assert manifests["auto"]["options"]["graph_shards"] == "auto"
    for file_set in ("edges", "neighbors", "nodes", "index"):
        expected = decoded_records(dirs["auto"], file_set)
        assert len(expected) > 100, file_set
        for name in ("auto-2-workers", "1", "7"):
            assert decoded_records(dirs[name], file_set) == expected, (file_set, name)
    # Many partitions, many files: the count of files follows the pieces, not a constant.
    assert len(manifests["7"]["file_sets"]["edges"]["files"]) > \
        len(manifests["auto"]["file_sets"]["edges"]["files"])


def test_rerun_gives_the_same_content_and_keeps_the_index(clean_run, tmp_path_factory):
    """The next day continues the index: known articles keep theirs, new ones append (the
    interacted ones by frequency, then those seen only in impressions or server events, by
    id); a rerun of the first day afterwards extends the newest version, never reuses it."""
    _, out, root = clean_run
    gdir = os.path.join(out, "cooccurrence", f"dt={RUN_DATE}")
    first = {n["article_id"][0]: n["index"][0] for n in read_set(gdir, "index")}
    first_version = published_manifest(gdir)["article_index"]["version"]
    assert index_store.read_current(out) == first_version
    nxt = "2026-11-27"
    write_day(root / "events_next", 12000, seed=4, run_date=dt.date(2026, 11, 27))
    # A new seed is a new catalogue: its drift from day one is real, so override.
    daily.run(LOCAL + [f"--events={root / 'events_next'}", f"--run_date={nxt}",
                       f"--output_dir={out}", "--allow_anomalies"])
    ndir = os.path.join(out, "cooccurrence", f"dt={nxt}")
    second = {n["article_id"][0]: n["index"][0] for n in read_set(ndir, "index")}
    assert {a: second[a] for a in first} == first
    new = [a for a in second if a not in first]
    nodes = {n["article_id"][0]: n for n in read_set(ndir, "nodes")}
    frequency = {a: nodes[a]["frequency"][0] if a in nodes else 0 for a in new}
    expected = sorted(new, key=lambda a: (-frequency[a], a.encode()))
    assert [second[a] for a in expected] == list(range(max(first.values()) + 1,
                                                       max(first.values()) + 1 + len(new)))
    assert any(f == 0 for f in frequency.values()) and any(f > 0 for f in frequency.values())
    assert sorted(second.values()) == list(range(1, len(second) + 1))
    second_manifest = published_manifest(ndir)["article_index"]
    assert second_manifest == {"version": first_version + 1, "parent": first_version,
                               "vocab_size": len(second) + 1}
    # Running the first day again publishes the same graph records (under new run-unique
    # names, the previous run's files kept for the retention), with the newest
    # index version extended: day two's articles keep theirs.
    # The rerun de-duplicates over a fixed --dedup_shards=7: the same valid rows.
    file_sets = ("edges", "neighbors", "nodes")
    before = {f: decoded_records(gdir, f) for f in file_sets}
    valid_before = every_validated_row(out)
    old_names = set(listing(gdir))
    daily.run(LOCAL + [f"--events={root / 'events'}", f"--run_date={RUN_DATE}",
                       f"--output_dir={out}", "--dedup_shards=7"])
    assert {f: decoded_records(gdir, f) for f in file_sets} == before
    assert every_validated_row(out) == valid_before
    assert published_manifest(os.path.join(out, "validated", f"dt={RUN_DATE}"))[
        "dedup_shards_resolved"] == 7
    again = {n["article_id"][0]: n["index"][0] for n in read_set(gdir, "index")}
    assert again == second
    assert published_manifest(gdir)["article_index"]["version"] == first_version + 2
    assert index_store.read_current(out) == first_version + 2
    assert index_store.published_versions(out) == [first_version, first_version + 1,
                                                   first_version + 2]
    manifest = published_manifest(gdir)
    listed = {f["name"] for s in manifest["file_sets"].values() for f in s["files"]}
    published = listed | {"manifest.json", "_SUCCESS", f"manifest-{manifest['run_id']}.json"}
    assert not (old_names & listed)
    # The replaced run's files stay for the retention (readers that opened the day),
    # then the sweep of a later publish takes them.
    assert set(listing(gdir)) == published | (old_names - {"manifest.json", "_SUCCESS"})
    due = parse_stamp(manifest["committed_at"]) + dt.timedelta(
        hours=retention.DEFAULT_KEEP_HOURS)
    retention.sweep(gdir, retention.DEFAULT_KEEP_HOURS, due)
    assert set(listing(gdir)) == published


def test_a_broken_day_is_refused_and_nothing_is_published(tmp_path):
    """A contract column missing from the export: the day is refused, nothing but its
    quarantine and its page is published. (Too many quarantined rows: the refused rerun of
    tests/publishing/test_withdraw.py.)"""
    write_day(tmp_path / "events", 6000, seed=5, breakage="drop_column:platform")
    out = str(tmp_path / "out")
    with pytest.raises(Exception, match="not blessed") as refused:
        daily.run(LOCAL + [f"--events={tmp_path / 'events'}", f"--run_date={RUN_DATE}",
                           f"--output_dir={out}"])
    assert f"the day's page: {out}/report/dt={RUN_DATE}/index.html" in str(refused.value)
    s = summary_of(out)
    assert s["blessed"] is False
    assert any(a["feature"] == "platform" and a["severity"] == "ERROR" for a in s["anomalies"])
    assert not os.path.exists(os.path.join(out, "cooccurrence", f"dt={RUN_DATE}"))
    assert not os.path.exists(os.path.join(out, "validated", f"dt={RUN_DATE}"))
    # The refusal wrote the day's page before the job failed: its verdict and reasons.
    with open(os.path.join(out, "report", f"dt={RUN_DATE}", "report.json")) as handle:
        report = json.load(handle)
    assert (report["verdict"]["label"], report["verdict"]["reasons"]) == ("refused",
                                                                           s["reasons"])
    assert [r["stage"] for r in report["refusals"]] == ["validation"]
    assert report["refusals"][0]["message"].startswith(f"day {RUN_DATE} is not blessed")
    assert os.path.exists(os.path.join(out, "report", f"dt={RUN_DATE}", "index.html"))


def test_price_drift_against_the_last_blessed_day_is_refused(tmp_path):
    prev = dt.date(2026, 11, 25)
    write_day(tmp_path / "events", 6000, seed=6, run_date=prev)
    out = str(tmp_path / "out")
    validate_events.run(LOCAL + [f"--events={tmp_path / 'events'}", "--run_date=2026-11-25",
                                 f"--output_dir={out}"])
    assert summary_of(out, "2026-11-25")["blessed"] is True
    write_day(tmp_path / "events", 6000, seed=7, breakage="price_x1000")
    with pytest.raises(Exception, match="not blessed"):
        daily.run(LOCAL + [f"--events={tmp_path / 'events'}", f"--run_date={RUN_DATE}",
                           f"--output_dir={out}"])
    s = summary_of(out)
    assert s["blessed"] is False and s["previous_blessed_date"] == "2026-11-25"
    assert any(a["feature"] == "price" for a in s["anomalies"])
    assert not os.path.exists(os.path.join(out, "cooccurrence", f"dt={RUN_DATE}"))


def test_tensorflow_reads_the_published_examples(clean_run):
    """The GPU trainers' reader: tf.data over the GZIP TFRecords."""
    import tensorflow as tf
    _, out, _ = clean_run
    gdir = os.path.join(out, "cooccurrence", f"dt={RUN_DATE}")
    files = sorted(os.path.join(gdir, n) for n in os.listdir(gdir) if n.startswith("edges-"))
    spec = {"src_article_id": tf.io.FixedLenFeature([], tf.string),
            "dst_article_id": tf.io.FixedLenFeature([], tf.string),
            "count": tf.io.FixedLenFeature([], tf.int64),
            "weight": tf.io.FixedLenFeature([], tf.float32)}
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda r: tf.io.parse_single_example(r, spec))
    got = {(e["src_article_id"].numpy().decode(), e["dst_article_id"].numpy().decode()):
           (int(e["count"].numpy()), float(e["weight"].numpy())) for e in ds}
    expected = {(e["src_article_id"][0], e["dst_article_id"][0]): (e["count"][0], e["weight"][0])
                for e in read_set(gdir, "edges")}
    assert got == expected


def test_the_command_line_exits_non_zero_on_a_refused_day(tmp_path):
    """Run locally, a refused day ends the process with exit code 1 and the reason."""
    import subprocess
    import sys
    write_day(tmp_path / "events", 3000, seed=8, breakage="drop_column:source")
    proc = subprocess.run(
        [sys.executable, "-m", "beam_jobs.validate_events", f"--events={tmp_path / 'events'}",
         f"--run_date={RUN_DATE}", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300,
        cwd=ROOT)
    assert proc.returncode == 1
    assert f"FAILED: day {RUN_DATE} is not blessed" in proc.stderr
    s = summary_of(str(tmp_path / "out"))
    assert s["blessed"] is False
    # Without a source every row that passes the first three checks is a mismatch.
    by_reason = s["quarantined_by_reason"]
    earlier = sum(by_reason.get(r, 0) for r in contract.REASONS[:3])
    assert set(by_reason) <= set(contract.REASONS[:4])
    assert by_reason["source_mismatch"] == s["rows_read"] - s["out_of_span"] - earlier
    assert s["rows_valid"] == 0
    assert {a["feature"] for a in s["anomalies"] if a["severity"] == "ERROR"} >= {"source"}


def test_no_raw_user_id_leaves_the_intermediates(clean_run):
    """Raw user ids are only in quarantine/ and validated/ (intermediates); the statistics,
    the summary, the statistics page, every graph file and the day's report (its page and
    report.json) hold none of them."""
    _, out, _ = clean_run
    rows, _ = validated_rows(out)
    users = {r["user_id"] for r in rows if r["user_id"] is not None}
    assert len(users) > 100
    checked = 0
    for kind in ("validation", "cooccurrence", "report"):
        folder = os.path.join(out, kind, f"dt={RUN_DATE}")
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as handle:
                data = handle.read()
            if name.endswith(".gz"):
                data = gzip.decompress(data)
            text = data.decode("latin-1")
            leaked = [u for u in users if u in text]
            assert leaked == [], (kind, name, leaked[:3])
            checked += 1
    assert checked >= 12
    # The same check finds them where raw ids are meant to be: the quarantine lines.
    lines = "".join(gzip.decompress(open(path, "rb").read()).decode("utf-8") for path in
                    published_files(os.path.join(out, "quarantine", f"dt={RUN_DATE}"),
                                    "quarantine"))
    assert any(u in lines for u in users)
