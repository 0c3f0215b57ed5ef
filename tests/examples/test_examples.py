"""Tier 3: python -m beam_jobs.training_examples on generated days, against a plain-Python
reference written here (dicts, lists, loops; it shares no code with transforms/ but the
seeded uniform draw, which is the definition of the subsampling draw).

The reference rules (issue 8):
- sessions: each user's interaction rows in (timestamp, event_id bytes) order; a new
  session after a gap > --session_gap_minutes and, with the time split, at the boundary
  (the day's end minus --eval_hours); consecutive repeats of an article collapse into one
  position holding the run's rows;
- sequences: sessions of >= 2 positions; context user_id (HMAC-SHA256 hex), region_id
  (mode of the session's rows, ties by bytes), label_article (last), start_time; feature
  lists over the earlier positions: article, event_name (strongest of the run),
  seconds_since_prev (between the runs' first events);
- ranking: each user's impressions and interactions in order, sessions by the gap; the
  impressions grouped by (session, split side, surface) in order, cut into lists of at
  most --ranking_list_size; label = the strongest engagement of the user with the article
  in [t, t + window]; label_complete = 0 when t + window >= the day's end;
- skipgram: positions kept with probability min(1, (sqrt(f/t) + 1) t/f) by the seeded
  draw of their first event id; pairs both ways within the window of the kept sequence,
  equal articles dropped; negatives never the target or the context, the first
  round(n * share) from the target's region when it has >= 3 candidates.
"""

import datetime as dt
import hashlib
import hmac
import json
import math
import os
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_jobs import training_examples
from datagen.events import generate_events, write_export_layout
from tests.helpers.graph_reference import reference_graph, reference_index, reference_region
from tests.helpers.paths import ROOT, SALT_FILE
from transforms.common.span import day_span
from transforms.examples import draws
from transforms.examples.example_proto import decode_example, decode_sequence_example
from transforms.graph import index_store
from transforms.publishing.readers import published_files, published_manifest, read_file_set
from transforms.publishing.tfrecord import read_tfrecord_file

pytestmark = pytest.mark.jobs

RUN_DATE = "2026-11-26"
DAY = dt.date(2026, 11, 26)
TIMEZONE = "Asia/Seoul"
LOCAL = ["--runner=FnApiRunner", f"--user_id_salt_file={SALT_FILE}",
         f"--timezone={TIMEZONE}"]
INTERACTIONS = ("article_view", "article_like", "chat_start")
STRENGTH = {"article_view": 1, "article_like": 2, "chat_start": 3}
GAP_US = 30 * 60_000_000
SPAN = day_span(DAY, TIMEZONE)
BOUNDARY_US = SPAN.end_us - 3 * 3600 * 1_000_000
LABEL_US = 30 * 60_000_000
LIST_SIZE = 7


def salt():
    with open(SALT_FILE, "rb") as handle:
        return handle.read()


def pseudonym(user):
    return hmac.new(salt(), user.encode(), hashlib.sha256).hexdigest()


def mode(values):
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return ""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0].encode()))[0][0]


def valid_rows(out):
    table = pq.read_table(published_files(os.path.join(out, "validated", f"dt={RUN_DATE}"),
                                          "part"), partitioning=None)
    d = table.to_pydict()
    stamps = table.column("event_timestamp").cast(pa.int64()).to_pylist()
    rows = []
    for i in range(table.num_rows):
        props = json.loads(d["properties"][i]) if d["properties"][i] else {}
        rows.append({"user_id": d["user_id"][i], "event_id": d["event_id"][i],
                     "ts": stamps[i], "article_id": d["article_id"][i],
                     "event_name": d["event_name"][i], "region_id": d["region_id"][i],
                     "platform": d["platform"][i], "surface": props.get("surface"),
                     "position": props.get("position")})
    return rows


def index_of(out):
    version = index_store.read_current(out)
    rows = read_file_set(index_store.version_dir(out, version), "index")
    return {r["article_id"][0].decode(): r["index"][0] for r in rows}


def records(out, kind, split):
    folder = os.path.join(out, "examples", kind, f"dt={RUN_DATE}")
    return [r for path in published_files(folder, split) for r in read_tfrecord_file(path)]


def by_user_in_order(rows, names):
    users = defaultdict(list)
    for r in rows:
        if r["user_id"] is not None and r["event_name"] in names:
            users[r["user_id"]].append(r)
    for events in users.values():
        events.sort(key=lambda r: (r["ts"], r["event_id"].encode()))
    return users


def side_of(r, split, eval_users=frozenset()):
    if split == "time":
        return int(r["ts"] >= BOUNDARY_US)
    return int(r["user_id"] in eval_users)


def reference_positions(rows, split="time", eval_users=frozenset()):
    """[(user, side, [[rows of a position], ...]), ...] for every session."""
    sessions = []
    for user, events in by_user_in_order(rows, INTERACTIONS).items():
        current, last = None, None
        for r in events:
            side = side_of(r, split, eval_users)
            if current is None or r["ts"] - last["ts"] > GAP_US or side != current[1]:
                current = (user, side, [])
                sessions.append(current)
            positions = current[2]
            if positions and positions[-1][0]["article_id"] == r["article_id"]:
                positions[-1].append(r)
            else:
                positions.append([r])
            last = r
    return sessions


def reference_sequences(rows, index, split="time", eval_users=frozenset()):
    out = Counter()
    for user, side, positions in reference_positions(rows, split, eval_users):
        if len(positions) < 2:
            continue
        firsts = [p[0]["ts"] for p in positions]
        strongest = [max(p, key=lambda r: STRENGTH[r["event_name"]])["event_name"]
                     for p in positions]
        seconds = [0.0] + [float(np.float32((b - a) / 1e6)) for a, b in zip(firsts, firsts[1:])]
        out[(side, pseudonym(user), mode(r["region_id"] for p in positions for r in p),
             index[positions[-1][0]["article_id"]], firsts[0],
             tuple(index[p[0]["article_id"]] for p in positions[:-1]),
             tuple(strongest[:-1]), tuple(seconds[:-1]))] += 1
    return out


def decoded_sequences(out):
    got = Counter()
    for side, split in enumerate(("train", "eval")):
        for record in records(out, "sequences", split):
            context, lists = decode_sequence_example(record)
            got[(side, context["user_id"][1][0].decode(), context["region_id"][1][0].decode(),
                 context["label_article"][1][0], context["start_time"][1][0],
                 tuple(v[0] for v in lists["article"][1]),
                 tuple(v[0].decode() for v in lists["event_name"][1]),
                 tuple(float(np.float32(v[0])) for v in lists["seconds_since_prev"][1]))] += 1
    return got


def reference_ranking(rows, index, list_size=LIST_SIZE):
    out = Counter()
    for user, events in by_user_in_order(rows, ("impression",) + INTERACTIONS).items():
        session, last, groups, order = 0, None, defaultdict(list), []
        for r in events:
            if last is not None and r["ts"] - last > GAP_US:
                session += 1
            last = r["ts"]
            if r["event_name"] == "impression":
                key = (session, side_of(r, "time"), r["surface"] is None, r["surface"])
                if key not in groups:
                    order.append(key)
                groups[key].append(r)
        engagements = [r for r in events if r["event_name"] in INTERACTIONS]
        for key in order:
            impressions = groups[key]
            for start in range(0, len(impressions), list_size):
                chunk = impressions[start:start + list_size]
                labels, complete = [], []
                for r in chunk:
                    hits = [STRENGTH[e["event_name"]] for e in engagements
                            if e["article_id"] == r["article_id"]
                            and r["ts"] <= e["ts"] <= r["ts"] + LABEL_US]
                    labels.append(max(hits, default=0))
                    complete.append(0 if r["ts"] + LABEL_US >= SPAN.end_us else 1)
                out[(key[1], pseudonym(user), mode(r["region_id"] for r in chunk),
                     mode(r["platform"] for r in chunk), key[3] or "", chunk[0]["ts"],
                     tuple(index[r["article_id"]] for r in chunk), tuple(range(len(chunk))),
                     tuple(r["position"] if isinstance(r["position"], int) else -1
                           for r in chunk), tuple(labels), tuple(complete))] += 1
    return out


def decoded_ranking(out):
    got = Counter()
    for side, split in enumerate(("train", "eval")):
        for record in records(out, "ranking", split):
            c, f = decode_sequence_example(record)
            got[(side, c["user_id"][1][0].decode(), c["region_id"][1][0].decode(),
                 c["platform"][1][0].decode(), c["surface"][1][0].decode(),
                 c["start_time"][1][0]) + tuple(
                tuple(v[0] for v in f[name][1])
                for name in ("article", "position", "display_position", "label",
                             "label_complete"))] += 1
    return got


def reference_skipgram_pairs(rows, index, t=1e-3, window=5, seed=0):
    sessions = reference_positions(rows)
    count = Counter(index[p[0]["article_id"]] for _, _, ps in sessions for p in ps)
    total = sum(count.values())
    base = draws.base_key(seed, RUN_DATE, "subsample")
    pairs = Counter()
    for _, side, positions in sessions:
        kept = []
        for p in positions:
            a = index[p[0]["article_id"]]
            f = count[a] / total
            keep_p = min(1.0, (math.sqrt(f / t) + 1) * t / f)
            u = draws.uniform(base, draws.string_keys(pa.array([p[0]["event_id"]])))[0]
            if u < keep_p:
                kept.append(a)
        for i, a in enumerate(kept):
            for j in range(max(0, i - window), min(len(kept), i + window + 1)):
                if j != i and kept[j] != a:
                    pairs[(side, a, kept[j])] += 1
    return pairs, count


def decoded_skipgram(out):
    pairs, negatives = Counter(), []
    for side, split in enumerate(("train", "eval")):
        for record in records(out, "skipgram", split):
            f = decode_example(record)
            target, context = f["target"][1], f["context"][1]
            n = len(f["negatives"][1]) // max(1, len(target))
            for i, (a, b) in enumerate(zip(target, context)):
                pairs[(side, a, b)] += 1
                negatives.append((a, b, tuple(f["negatives"][1][i * n:(i + 1) * n])))
    return pairs, negatives


@pytest.fixture(scope="session")
def example_run(tmp_path_factory):
    """One day (time split, small lists, several user shards) validated inline, then the
    same validated day with the user-hash split into a fresh folder. (Two workers and
    reruns write the same records: tests/jobs/test_determinism.py, through the daily job.)"""
    root = tmp_path_factory.mktemp("examples")
    day = generate_events(4000, DAY, seed=17)
    write_export_layout(day.table, str(root / "events"), null_partition=DAY,
                        drop_columns=day.drop_columns)
    outs = {name: str(root / f"out-{name}") for name in ("time", "user_hash")}
    common = LOCAL + [f"--run_date={RUN_DATE}", f"--ranking_list_size={LIST_SIZE}",
                      "--max_rows_per_shard=700"]
    training_examples.run(common + [f"--events={root / 'events'}",
                                    f"--output_dir={outs['time']}"])
    training_examples.run(common + [f"--validated_events={outs['time']}/validated",
                                    "--eval_split=user_hash", "--eval_fraction=0.3",
                                    f"--output_dir={outs['user_hash']}"])
    return root, outs


def test_sequences_match_the_reference(example_run):
    _, outs = example_run
    out = outs["time"]
    rows = valid_rows(out)
    expected = reference_sequences(rows, index_of(out))
    assert sum(expected.values()) > 100 and any(k[0] == 1 for k in expected)
    assert decoded_sequences(out) == expected


def test_ranking_matches_the_reference(example_run):
    _, outs = example_run
    out = outs["time"]
    rows = valid_rows(out)
    expected = reference_ranking(rows, index_of(out))
    got = decoded_ranking(out)
    assert got == expected
    # The day exercises what the rules say: full lists cut, positive labels, surfaces,
    # incomplete labels at the day's end, both splits.
    assert any(len(k[6]) == LIST_SIZE for k in got)
    assert any(max(k[9]) > 0 for k in got) and any(max(k[9]) == 0 for k in got)
    assert any(k[4] for k in got) and any(not k[4] for k in got)
    assert any(0 in k[10] for k in got)
    # Every valid impression is in exactly one list.
    impressions = sum(1 for r in rows if r["event_name"] == "impression")
    assert sum(len(k[6]) * n for k, n in got.items()) == impressions
    counts = published_manifest(os.path.join(out, "examples", "ranking",
                                             f"dt={RUN_DATE}"))["counts"]
    assert counts["impressions_train"] + counts["impressions_eval"] == impressions


def test_skipgram_pairs_match_the_reference_and_negatives_follow_the_rules(example_run):
    _, outs = example_run
    out = outs["time"]
    rows = valid_rows(out)
    index = index_of(out)
    expected, count = reference_skipgram_pairs(rows, index)
    got, negatives = decoded_skipgram(out)
    assert sum(expected.values()) > 300
    assert got == expected
    # Subsampling dropped some positions of frequent articles (the day is small, so many
    # articles are above the threshold).
    assert sum(expected.values()) < sum(reference_skipgram_pairs(rows, index, t=1.0)[0]
                                        .values())
    region = {index[a]: r for a, r in reference_region(rows).items()}
    members = defaultdict(set)
    for a, r in region.items():
        members[r].add(a)
    interacted = set(count)
    for target, context, drawn in negatives:
        assert len(drawn) == 4
        assert target not in drawn and context not in drawn
        assert set(drawn) <= interacted
        if len(members[region.get(target)]) >= 3:
            assert all(region.get(a) == region[target] for a in drawn[:2])


def test_the_index_covers_every_valid_article_and_manifests_record_it(example_run):
    _, outs = example_run
    out = outs["time"]
    rows = valid_rows(out)
    index = index_of(out)
    _, _, frequency, _ = reference_graph(rows)
    others = {r["article_id"] for r in rows if r["article_id"] is not None}
    assert index == reference_index(frequency, others=others)
    assert set(index) == others and len(others) > len(frequency)
    for kind in ("skipgram", "sequences", "ranking"):
        m = published_manifest(os.path.join(out, "examples", kind, f"dt={RUN_DATE}"))
        assert m["article_index"] == {"version": 1, "parent": None,
                                      "vocab_size": max(index.values()) + 1}
        assert m["input_days"] == [RUN_DATE]
        assert m["validation"]["blessed"] is True
        for split in ("train", "eval"):
            for f in m["file_sets"][split]["files"]:
                assert f["name"].startswith(f"{split}-") and f["size_bytes"] > 0 and f["rows"] > 0
                assert "-of-" in f["name"] and len(f["crc32c"]) == 8


def test_no_example_spans_both_splits(example_run):
    _, outs = example_run
    out = outs["time"]
    rows = valid_rows(out)
    for record in records(out, "sequences", "train"):
        assert decode_sequence_example(record)[0]["start_time"][1][0] < BOUNDARY_US
    # Each sequence's positions are on one side: the reference cuts at the boundary and
    # the published records equal it (test_sequences_match_the_reference); here the raw
    # times of every ranking list's impressions are all on the list's side.
    for side, split in enumerate(("train", "eval")):
        for record in records(out, "ranking", split):
            c, _ = decode_sequence_example(record)
            assert (c["start_time"][1][0] >= BOUNDARY_US) == bool(side)
    expected = reference_sequences(rows, index_of(out))
    for key in expected:
        side, start = key[0], key[4]
        assert (start >= BOUNDARY_US) == bool(side)


def test_user_hash_split_puts_each_user_on_one_side(example_run):
    _, outs = example_run
    out = outs["user_hash"]
    rows = valid_rows(outs["time"])
    users = {r["user_id"] for r in rows if r["user_id"] is not None}
    threshold = math.ceil((1 - 0.3) * 2.0 ** 64)
    eval_users = frozenset(u for u in users if int(pseudonym(u)[:16], 16) >= threshold)
    assert 0 < len(eval_users) < len(users)
    expected = reference_sequences(rows, index_of(out), "user_hash", eval_users)
    assert decoded_sequences(out) == expected
    eval_pseudonyms = {pseudonym(u) for u in eval_users}
    for side, split in enumerate(("train", "eval")):
        for record in records(out, "ranking", split):
            c, _ = decode_sequence_example(record)
            assert (c["user_id"][1][0].decode() in eval_pseudonyms) == bool(side)


def test_session_boundaries_equal_the_graphs(example_run):
    """With the user-hash split nothing is cut at a boundary: the sequences' sessions are
    the graph reference's sessions (>= 2 positions), article for article."""
    _, outs = example_run
    out = outs["user_hash"]
    index = index_of(out)
    from tests.helpers.graph_reference import reference_sessions
    graph_sessions = Counter(tuple(index[a] for a, _ in s)
                             for s in reference_sessions(valid_rows(outs["time"]))
                             if len(s) >= 2)
    got = Counter()
    for split in ("train", "eval"):
        for record in records(out, "sequences", split):
            c, f = decode_sequence_example(record)
            got[tuple(v[0] for v in f["article"][1]) + (c["label_article"][1][0],)] += 1
    assert got == graph_sessions


def test_no_raw_user_id_in_any_example(example_run):
    _, outs = example_run
    out = outs["time"]
    users = {r["user_id"] for r in valid_rows(out) if r["user_id"] is not None}
    blob = b"".join(r for kind in ("skipgram", "sequences", "ranking")
                    for split in ("train", "eval") for r in records(out, kind, split))
    assert not [u for u in users if u.encode() in blob]
    assert pseudonym(sorted(users)[0]).encode() in blob or any(
        pseudonym(u).encode() in blob for u in users)


def test_the_job_refuses_to_run_without_a_salt(tmp_path):
    with pytest.raises(ValueError, match="--user_id_salt_file"):
        training_examples.run(["--runner=FnApiRunner", f"--events={tmp_path}",
                               f"--run_date={RUN_DATE}", f"--output_dir={tmp_path / 'out'}"])


NO_TENSORFLOW = r'''
import sys
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from beam_jobs import cooccurrence_graph, launch, training_examples
validated, out, salt = sys.argv[1], sys.argv[2], sys.argv[3]
common = ["--runner=FnApiRunner", f"--validated_events={validated}", "--run_date=2026-11-26",
          "--timezone=Asia/Seoul"]
# The examples job's pipeline is built (not run): no TensorFlow at construction.
argv = common + [f"--output_dir={out}/examples-job", f"--user_id_salt_file={salt}"]
args = launch.parse(argv, "x", training_examples.OPTION_CLASSES, "")
training_examples.check_args(args)
pipeline = beam.Pipeline(options=PipelineOptions(argv))
training_examples.build(pipeline, args, launch.resolve_day(args.run_date, args.timezone))
assert "tensorflow" not in sys.modules, "examples construction imported TensorFlow"
# The graph job runs whole from a validated day without importing TensorFlow.
cooccurrence_graph.run(common + [f"--output_dir={out}/graph-job"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorflow_transform",
                                                              "tensorflow_data_validation"))
assert not loaded, loaded[:5]
print("NO_TENSORFLOW_OK")
'''


def test_the_graph_job_and_example_construction_never_import_tensorflow(example_run, tmp_path):
    import subprocess
    import sys
    _, outs = example_run
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, f"{outs['time']}/validated",
                           str(tmp_path), SALT_FILE], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NO_TENSORFLOW_OK" in done.stdout
    assert os.path.exists(tmp_path / "graph-job" / "cooccurrence" / f"dt={RUN_DATE}" / "_SUCCESS")


def test_manifests_record_the_suite_and_the_input_read(example_run):
    from transforms.common import version
    root, outs = example_run
    suite = version.suite_fields()
    events = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(root / "events") for f in fs
                    if f.endswith(".parquet"))
    for kind in ("skipgram", "sequences", "ranking"):
        m = published_manifest(os.path.join(outs["time"], "examples", kind, f"dt={RUN_DATE}"))
        assert (m["suite_version"], m["suite_revision"]) == (suite["suite_version"],
                                                             suite["suite_revision"])
        described = m["input_provenance"]
        assert described["kind"] == "files"
        assert [(f["path"], f["bytes"]) for f in described["files"]] == \
            [(p, os.path.getsize(p)) for p in events]
        # From a validated day: that day's run and files, and what it had read.
        m = published_manifest(os.path.join(outs["user_hash"], "examples", kind,
                                            f"dt={RUN_DATE}"))
        validated = os.path.join(outs["time"], "validated", f"dt={RUN_DATE}")
        assert m["input_provenance"]["kind"] == "validated"
        assert m["input_provenance"]["run_id"] == published_manifest(validated)["run_id"]
        assert [f["path"] for f in m["input_provenance"]["files"]] == \
            published_files(validated, "part")
        assert m["input_provenance"]["input"]["files"] == described["files"]
