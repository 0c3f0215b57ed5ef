"""transforms/ingest/stats_rewrite.py, tier 1: the features removed, the days chosen, and a
rerun of the day that writes its files while the rewrite runs (its files are kept). The
command on a real validated day: tests/ingest/test_validation.py (the drift test)."""

import json
import os

import pytest
from tensorflow_metadata.proto.v0 import statistics_pb2

from transforms.ingest import day_files, stats_rewrite
from transforms.publishing.store import store_for

pytestmark = pytest.mark.functions


def stats(*names):
    made = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = made.datasets.add(num_examples=3)
    for name in names:
        dataset.features.add().path.step.append(name)
    return made


def write_day(output_dir, day, *names):
    directory = day_files.day_dir(str(output_dir), day)
    os.makedirs(directory, exist_ok=True)
    for name in day_files.STATS_FILES.values():
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(day_files.tfrecord_bytes(stats(*names).SerializeToString()))
    for name, text in ((day_files.SUMMARY_FILE, json.dumps({"run_date": day})),
                       (day_files.HTML_FILE, "old page")):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(text)
    return directory


def test_without_features_removes_only_the_named_top_level_features():
    made = stats("price", "properties", "properties_surface")
    made.datasets.add(num_examples=1).features.add().path.step.extend(["properties", "x"])
    assert stats_rewrite.without_features(made, ("properties",)) == 1
    assert [[list(f.path.step) for f in d.features] for d in made.datasets] == [
        [["price"], ["properties_surface"]], [["properties", "x"]]]
    assert stats_rewrite.without_features(made, ("properties",)) == 0


def test_the_days_chosen(tmp_path):
    for day in ("2026-11-20", "2026-11-22", "2026-11-25"):
        write_day(tmp_path, day, "price")
    os.makedirs(tmp_path / "validation" / "dt=2026-11-23")       # no summary.json: not a day
    assert stats_rewrite.validated_days(str(tmp_path)) == ["2026-11-20", "2026-11-22",
                                                            "2026-11-25"]
    assert stats_rewrite.validated_days(str(tmp_path), "2026-11-21", "2026-11-25") == [
        "2026-11-22", "2026-11-25"]
    with pytest.raises(ValueError):
        stats_rewrite.rewrite_days(str(tmp_path), "2026-11-32")


def test_a_rerun_of_the_day_meanwhile_keeps_its_files(tmp_path, monkeypatch):
    directory = write_day(tmp_path, "2026-11-20", "price", "properties")
    client = os.path.join(directory, day_files.STATS_FILES["client"])
    rerun = day_files.tfrecord_bytes(stats("price", "properties_surface").SerializeToString())

    def render_while_a_rerun_writes(new_stats, summary):
        store = store_for(client)
        assert store.write_if(client, rerun, store.read(client).generation) is not None
        return f"page of {summary['run_date']}"

    monkeypatch.setattr(stats_rewrite, "render_stats_html", render_while_a_rerun_writes)
    result = stats_rewrite.rewrite_day(str(tmp_path), "2026-11-20")
    assert result == {"day": "2026-11-20", "status": stats_rewrite.CHANGED,
                      "removed": {"client": 1, "server": 1}}
    # The rerun's statistics are kept; the page was rewritten first (from the statistics
    # read, without properties), and the rerun writes its own after them.
    assert open(client, "rb").read() == rerun
    assert open(os.path.join(directory, day_files.HTML_FILE)).read() == "page of 2026-11-20"
    # Without a rerun in between, the day is rewritten.
    write_day(tmp_path, "2026-11-21", "price", "properties")
    monkeypatch.setattr(stats_rewrite, "render_stats_html",
                        lambda new_stats, summary: "page without properties")
    assert stats_rewrite.rewrite_day(str(tmp_path), "2026-11-21")["status"] == \
        stats_rewrite.REWRITTEN
    directory = day_files.day_dir(str(tmp_path), "2026-11-21")
    assert open(os.path.join(directory, day_files.HTML_FILE)).read() == "page without properties"


def test_a_pass_that_stopped_after_the_page_is_finished_by_the_next(tmp_path, monkeypatch):
    """The page is written before the statistics: a pass that stops between them leaves
    statistics that still hold the feature, so the next pass rewrites the day again (had
    the statistics gone first, the day would read clean and keep the page's top values)."""
    directory = write_day(tmp_path, "2026-11-20", "price", "properties")
    monkeypatch.setattr(stats_rewrite, "render_stats_html",
                        lambda new_stats, summary: "page without properties")
    real_tfrecord_bytes = stats_rewrite.tfrecord_bytes

    def stop(*args):
        raise KeyboardInterrupt("stopped after the page")

    monkeypatch.setattr(stats_rewrite, "tfrecord_bytes", stop)
    with pytest.raises(KeyboardInterrupt):
        stats_rewrite.rewrite_day(str(tmp_path), "2026-11-20")
    assert open(os.path.join(directory, day_files.HTML_FILE)).read() == "page without properties"
    monkeypatch.setattr(stats_rewrite, "tfrecord_bytes", real_tfrecord_bytes)
    assert stats_rewrite.rewrite_day(str(tmp_path), "2026-11-20") == {
        "day": "2026-11-20", "status": stats_rewrite.REWRITTEN,
        "removed": {"client": 1, "server": 1}}
    assert stats_rewrite.rewrite_day(str(tmp_path), "2026-11-20")["status"] == stats_rewrite.CLEAN


def test_a_summary_removed_by_a_rerun_meanwhile_is_a_change(tmp_path):
    directory = write_day(tmp_path, "2026-11-20", "price", "properties")
    os.remove(os.path.join(directory, day_files.SUMMARY_FILE))
    assert stats_rewrite.rewrite_day(str(tmp_path), "2026-11-20")["status"] == \
        stats_rewrite.CHANGED
