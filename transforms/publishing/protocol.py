"""The publishing protocol (docs/publishing.md): a run's pieces are streamed into the
day's folder under names holding its run id, then one step commits them: the run
manifest, then _SUCCESS moved to the run id by compare-and-swap from what the run read
at its start, then manifest.json, LATEST and the retention sweep (the replaced run's
files stay for --keep_replaced_hours). PublishFileSets is the composite; publish_day
its commit.
"""

import json
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems


from transforms.common.errors import Refusal
from transforms.common.version import suite_fields
from transforms.publishing.files import MANIFEST, READ_ERRORS, RUN_MANIFEST, SUCCESS, \
    delete_tolerant, read_bytes, read_json, stored_sizes, write_atomic
from transforms.publishing.latest import split_day_folder, update_latest
from transforms.publishing.readers import listed_names, read_run_id
from transforms.publishing.retention import DEFAULT_KEEP_HOURS, check_keep_hours, sweep
from transforms.publishing.runs import Clock, new_run_id, stamp, utc_now
from transforms.publishing.store import Versioned, store_for
from transforms.publishing.writers import CHUNK_ROWS, FORMATS, FileRecord, WritePieces, \
    bytes_of_mb, require_blessed

def manifest_content(run_id: str, records: Iterable[FileRecord], fields: Dict,
                     file_sets: Sequence[str] = ()) -> Dict:
    """The manifest of a run: `fields`, the run id and, per file set, every file (name,
    rows, size_bytes) in name order, the total rows and the feature spec. Records of the
    same file (a retried bundle) count once; records of one name with different rows
    (two pieces with one key) raise. (Sizes may differ: tfx-bsl serialises an Example's
    features in no fixed order, so a rewrite holds the same records in other bytes.)"""
    by_name: Dict[str, FileRecord] = {}
    for record in records:
        record = FileRecord(*record)
        seen = by_name.setdefault(record.name, record)
        if (seen.file_set, seen.rows) != (record.file_set, record.rows):
            raise ValueError(f"two different records for file {record.name}: {seen} and {record}")
    sets: Dict[str, Dict] = {name: {"files": [], "rows": 0, "feature_spec": {}}
                             for name in file_sets}
    for record in sorted(by_name.values(), key=lambda r: (r.file_set, r.name)):
        entry = sets.setdefault(record.file_set, {"files": [], "rows": 0, "feature_spec": {}})
        listed = {"name": record.name, "rows": record.rows, "size_bytes": record.size_bytes}
        if record.crc32c:
            listed["crc32c"] = record.crc32c
        entry["files"].append(listed)
        entry["rows"] += record.rows
        entry["feature_spec"] = entry["feature_spec"] or record.feature_spec
    return dict(fields, run_id=run_id, file_sets=dict(sorted(sets.items())))


class CommitLost(Refusal):
    """Another run moved the day's _SUCCESS after this run read it: this run published
    nothing there."""


def check_claim(claim_dir: str, run_id: str) -> None:
    """Raise CommitLost unless the run's claim on its day (its first commit, in
    claim_dir) still names it: what a run writes under fixed names, or withdraws, waits
    on holding its claim."""
    holder = read_run_id(claim_dir, missing_ok=True)
    if holder != run_id:
        raise CommitLost(
            f"{claim_dir} was published again by run {holder or '(none: withdrawn)'} after "
            f"this run ({run_id}) published it: another run of this day started later and "
            "took the day over. This run stops before its validation files and publishes "
            "nothing more; let the other run finish.")


def read_base(final_dir: str) -> Versioned:
    """What a run replaces: _SUCCESS of final_dir (the run id it names, and its
    generation), read once at the start of the run; absent is generation 0."""
    success = f"{final_dir.rstrip('/')}/{SUCCESS}"
    return store_for(success).read(success)


def as_written(records: Iterable[FileRecord], sizes: Dict[str, int]) -> List[FileRecord]:
    """One record per file name: where a file was written twice (a retried bundle; the
    bytes of a rewrite can differ, tfx-bsl serialising an Example's features in no fixed
    order), the record of the write that is stored."""
    by_name: Dict[str, List[FileRecord]] = {}
    for record in records:
        by_name.setdefault(record[1], []).append(FileRecord(*record))
    return [next((r for r in seen if r.size_bytes == sizes.get(name)), seen[0])
            for name, seen in by_name.items()]


def check_listed_files(final_dir: str, manifest: Dict, sizes: Dict[str, int]) -> None:
    """Every file the manifest lists is in final_dir with its size, else raise naming
    the first ones missing or changed."""
    wrong = [f"{f['name']} (" + ("missing" if f["name"] not in sizes else
                                 f"{sizes[f['name']]} bytes, listed {f['size_bytes']}") + ")"
             for entry in manifest["file_sets"].values() for f in entry["files"]
             if isinstance(f, dict) and sizes.get(f["name"]) != f["size_bytes"]]
    if wrong:
        raise FileNotFoundError(f"{final_dir}: run {manifest['run_id']} lists files that are "
                                f"not there as written: {', '.join(wrong[:5])}"
                                + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""))


def _run_files(final_dir: str, run_id: str) -> List[str]:
    """The files of a run (from its manifest) and the manifest itself; [] when it has none."""
    path = f"{final_dir}/{RUN_MANIFEST.format(run_id=run_id)}"
    try:
        manifest = read_json(path)
    except READ_ERRORS:
        if FileSystems.exists(path):
            raise
        return []
    return [f"{final_dir}/{name}" for name in listed_names(manifest)] + [path]


def follow_success(final_dir: str, write: Callable[[str], bool]) -> Optional[str]:
    """write(run id _SUCCESS names): the files that follow the published run (a copy for
    people, a pointer), written again while _SUCCESS moves; `write` returns False when it
    lost a race of its own and should be tried again. The run id it settled on, "" when
    nothing is published, None when _SUCCESS was still moving after 5 reads."""
    success = f"{final_dir}/{SUCCESS}"
    store = store_for(success)
    for _ in range(5):
        before = store.read(success)
        if not before.data or not before.data.strip():
            return ""
        run_id = before.data.decode().strip()
        if write(run_id) and store.read(success).generation == before.generation:
            return run_id
    return None


def _write_copy_for_people(final_dir: str) -> None:
    """manifest.json := the manifest of the run _SUCCESS names (again while it moves)."""
    def copy(run_id: str) -> bool:
        body = read_bytes(f"{final_dir}/{RUN_MANIFEST.format(run_id=run_id)}")
        write_atomic(f"{final_dir}/{MANIFEST}", body, run_id)
        return True

    follow_success(final_dir, copy)


def publish_day(final_dir: str, run_id: str, records: Iterable[FileRecord], fields: Dict,
                file_sets: Sequence[str] = (), base: Optional[Versioned] = None,
                keep_hours: float = DEFAULT_KEEP_HOURS, clock: Optional[Clock] = None) -> Dict:
    """Commit a run's files as the published day of final_dir (docs/publishing.md): check
    every file it lists is there with its size, write manifest-<run_id>.json (recording
    the run it replaces, `replaces`, and `committed_at`), move _SUCCESS to the run id by
    compare-and-swap from `base` (what the run read at its start; read now when None),
    write manifest.json, the copy for people, move LATEST, and sweep the kind's last
    days (retention.sweep): the replaced run's files stay for `keep_hours`, so a reader
    that opened the day reads it to the end. A retried commit that finds its own run id
    in _SUCCESS has committed and goes on. When another run moved _SUCCESS first, this
    run deletes its own files and raises CommitLost. `clock` gives the time (now by
    default). Returns the manifest."""
    final_dir = final_dir.rstrip("/")
    success = f"{final_dir}/{SUCCESS}"
    base = read_base(final_dir) if base is None else Versioned(*base)
    now = (clock or utc_now)()
    replaced = (base.data or b"").decode().strip()
    records = list(records)      # a generator writes its files as it is consumed
    sizes = stored_sizes(final_dir)
    fields = dict(suite_fields(), **fields,
                  replaces=replaced if replaced != run_id else "", committed_at=stamp(now))
    if replaced == run_id:
        # A retried commit of a run that had committed: what it replaced then stands.
        try:
            fields["replaces"] = read_json(
                f"{final_dir}/{RUN_MANIFEST.format(run_id=run_id)}").get("replaces", "")
        except READ_ERRORS:
            pass
    manifest = manifest_content(run_id, as_written(records, sizes), fields, file_sets)
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    check_listed_files(final_dir, manifest, sizes)
    write_atomic(f"{final_dir}/{RUN_MANIFEST.format(run_id=run_id)}", body, run_id)
    ours = f"{run_id}\n".encode()
    store = store_for(success)
    if store.write_if(success, ours, base.generation) is None:
        now_there = store.read(success)
        if now_there.data != ours:
            # Its own files only: a file under a fixed name may be the winner's now.
            delete_tolerant([p for p in _run_files(final_dir, run_id)
                             if run_id in p[len(final_dir) + 1:]])
            winner = (now_there.data or b"").decode().strip() or "(withdrawn: no _SUCCESS)"
            raise CommitLost(
                f"{final_dir} was moved by another run while this run ({run_id}) ran: it "
                f"now names {winner}. This run published nothing there and removed its "
                "own files. Let the other run finish, then run this day again if it "
                "should be rebuilt.")
    _write_copy_for_people(final_dir)
    day_folder = split_day_folder(final_dir)
    if day_folder:
        update_latest(*day_folder)
    sweep(final_dir, keep_hours, now)
    return manifest


VALIDATION_FIELDS = ("rows_read", "rows_valid", "rows_quarantined", "duplicates_dropped",
                     "out_of_span", "blessed", "overridden")


class PublishFileSets(beam.PTransform):
    """Pieces (file_set, piece_key, data) -> the published day folder; outputs one
    element, the manifest written.

    data is a pa.RecordBatch or pa.Table (fmt "tfrecord": tf.train.Example; "parquet")
    or a list of str lines (fmt "jsonl"). Files are streamed into final_dir under names
    holding the run id (made once, here), cut at target_shard_mb, then published by one
    step (publish_day). With `gate` (a PCollection with the blessed day's validation
    summary) nothing is written before it holds one, and an empty gate refuses.
    `extra` maps manifest field names to PCollections of one value each (known only
    while the pipeline runs). `file_sets` are listed in the manifest even when empty.
    `final_dir_from` (a PCollection of one directory) names the folder at run time
    instead of final_dir, and `check` (a function of that folder) runs in the publish
    step right before publish_day: it raises to refuse publishing. `after` maps labels
    (a kind's folder) to the manifests of this run's earlier commits, its claim on the
    day: the commit waits on them, and a lost commit says they stay published.
    `keep_hours` is --keep_replaced_hours (retention); `clock` gives the time of the run
    id and the commit (now by default; tests move it). `check_input` (a PCollection of
    one value) is passed to `check` after the folder. `create_only` commits only a folder
    that has never been published (a version of the article index): the commit moves
    _SUCCESS only from absent, whatever the base read."""

    def __init__(self, final_dir: str, manifest: Dict, gate=None, fmt: str = "tfrecord",
                 target_shard_mb: float = 128.0, extra: Optional[Dict] = None,
                 file_sets: Sequence[str] = (), chunk_rows: int = CHUNK_ROWS,
                 final_dir_from=None, check=None, after: Optional[Dict] = None,
                 keep_hours: float = DEFAULT_KEEP_HOURS, clock: Optional[Clock] = None,
                 check_input=None, create_only: bool = False):
        super().__init__()
        check_keep_hours(keep_hours)
        if fmt not in FORMATS:
            raise ValueError(f"unknown file format {fmt!r}; expected one of {sorted(FORMATS)}")
        if not target_shard_mb > 0:
            raise ValueError(f"--target_shard_mb={target_shard_mb} must be > 0")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows={chunk_rows} must be >= 1")
        self._final_dir, self._manifest, self._gate, self._fmt = \
            final_dir.rstrip("/"), dict(manifest), gate, fmt
        self._target_bytes = bytes_of_mb(target_shard_mb)
        self._extra = dict(sorted((extra or {}).items()))
        self._file_sets, self._chunk_rows = tuple(file_sets), chunk_rows
        self._dir_from, self._check = final_dir_from, check
        self._after = dict(sorted((after or {}).items()))
        self._keep_hours, self._clock = keep_hours, clock
        self._check_input, self._create_only = check_input, create_only
        self.run_id = new_run_id(clock)

    def expand(self, pieces):
        final_dir, fields, run_id = self._final_dir, self._manifest, self.run_id
        file_sets, has_gate, extra_names = self._file_sets, self._gate is not None, \
            list(self._extra)
        gate_input = [beam.pvalue.AsSingleton(self._gate)] if has_gate else []
        dir_input = {"final_dir": beam.pvalue.AsSingleton(self._dir_from)} \
            if self._dir_from is not None else {}
        # What the run replaces, read before any piece is written; the commit moves
        # _SUCCESS only from it.
        base = (pieces.pipeline
                | "StartReadBase" >> beam.Create([None])
                | "ReadPublishedBase" >> beam.Map(
                    lambda _, final_dir=final_dir: tuple(read_base(final_dir)), **dir_input))
        base_input = {"base": beam.pvalue.AsSingleton(base)}
        records = pieces | "WriteFiles" >> beam.ParDo(WritePieces(
            final_dir, run_id, self._fmt, self._target_bytes, self._chunk_rows), *gate_input,
            **dir_input, **base_input)
        check = self._check

        after_labels = list(self._after)
        keep_hours, clock, create_only = self._keep_hours, self._clock, self._create_only
        checked = [] if self._check_input is None else [self._check_input]

        def publish(_, written, *side, final_dir=final_dir, base=None):
            values = dict(fields)
            if has_gate:
                gate, side = require_blessed(side[0], final_dir), side[1:]
                values["validation"] = {k: gate.get(k) for k in VALIDATION_FIELDS}
            values.update(zip(extra_names, side[:len(extra_names)]))
            earlier = dict(zip(after_labels, side[len(extra_names):len(extra_names)
                                                   + len(after_labels)]))
            if check is not None:
                check(final_dir, *side[len(extra_names) + len(after_labels):])
            try:
                return publish_day(final_dir, run_id, written, values, file_sets,
                                   base=Versioned(None, 0) if create_only else base,
                                   keep_hours=keep_hours, clock=clock)
            except CommitLost as lost:
                if create_only:
                    raise CommitLost(f"{lost} {final_dir} is made once and never replaced: "
                                     "another run made it first.") from lost
                if not earlier:
                    raise
                kept = ", ".join(f"{label} (run {m['run_id']})" for label, m in earlier.items())
                raise CommitLost(f"{lost} This run's earlier commits stay published: "
                                 f"{kept}; only {final_dir} is the other run's.") from lost

        side_inputs = [beam.pvalue.AsList(records)] + gate_input
        side_inputs += [beam.pvalue.AsSingleton(p) for p in self._extra.values()]
        side_inputs += [beam.pvalue.AsSingleton(p) for p in self._after.values()]
        side_inputs += [beam.pvalue.AsSingleton(p) for p in checked]
        return (pieces.pipeline
                | "StartPublish" >> beam.Create([None])
                | "PublishDay" >> beam.Map(publish, *side_inputs, **dir_input, **base_input))
