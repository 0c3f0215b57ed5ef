"""<kind>/LATEST (the newest published day of a kind) and the withdrawal of a refused
day (docs/publishing.md).
"""

import json
import re
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from transforms.publishing.files import READ_ERRORS, SUCCESS, WITHDRAWN, write_atomic
from transforms.publishing.runs import Clock, stamp, utc_now
from transforms.publishing.store import store_for

LATEST = "LATEST"
MOVES = 20   # compare-and-swap tries before a pointer that keeps moving is an error
_DAY_FOLDER_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


# The published kinds a refused day withdraws (the quarantine is kept: refused days keep it).
WITHDRAWN_KINDS = ("validated", "cooccurrence")


WITHDRAWN_FAMILIES = ("examples", "features")   # <out>/<family>/<kind>/dt=D


# The signal of a day moving a kind's LATEST forward: a Beam counter of this namespace,
# named latest_counter_name(kind), incremented by the publish step (Dataflow exports user
# counters to Cloud Monitoring; docs/deploy.md#alerting). A backfill of an older day,
# which leaves LATEST, does not count.
SIGNAL_NAMESPACE = "preprocessing"


def kind_label(kind_dir: str) -> str:
    """The kind of a <output_dir>/<kind> folder as the suite names it: "validated",
    "examples/skipgram", "features/_daily", ..."""
    parts = kind_dir.rstrip("/").split("/")
    return "/".join(parts[-2:]) if len(parts) > 1 and parts[-2] in WITHDRAWN_FAMILIES \
        else parts[-1]


def latest_counter_name(kind: str) -> str:
    """latest_forward_<kind>, "/" as "_": one counter per kind."""
    return "latest_forward_" + kind.replace("/", "_")


def split_day_folder(final_dir: str):
    """(kind folder, day) of a <kind folder>/dt=YYYY-MM-DD path, or None for another path."""
    head, _, leaf = final_dir.rstrip("/").rpartition("/")
    found = _DAY_FOLDER_RE.match(leaf)
    return (head, found.group(1)) if head and found else None


def read_latest(kind_dir: str) -> str:
    """The day <kind_dir>/LATEST names (YYYY-MM-DD), '' when there is none."""
    path = f"{kind_dir.rstrip('/')}/{LATEST}"
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return handle.read().decode("utf-8").strip()
    except READ_ERRORS:
        if FileSystems.exists(path):
            raise
        return ""


def published_days(kind_dir: str) -> List[str]:
    """The days (YYYY-MM-DD, ascending) of <kind_dir>/dt=D folders holding _SUCCESS."""
    matches = FileSystems.match([f"{kind_dir.rstrip('/')}/dt=*/{SUCCESS}"])[0].metadata_list
    days = set()
    for m in matches:
        found = _DAY_FOLDER_RE.match(m.path.rstrip("/").split("/")[-2])
        if found:
            days.add(found.group(1))
    return sorted(days)


def _is_published(kind_dir: str, day: str) -> bool:
    return FileSystems.exists(f"{kind_dir.rstrip('/')}/dt={day}/{SUCCESS}")


def update_latest(kind_dir: str, day: str) -> bool:
    """After `day` was published under kind_dir: LATEST := day when day >= the day LATEST
    names (a backfill of an older day leaves it) and `day` is still published, by
    compare-and-swap from the LATEST just read, read again when another writer moved it
    first. Returns whether LATEST was written."""
    path = f"{kind_dir.rstrip('/')}/{LATEST}"
    store = store_for(path)
    for _ in range(MOVES):
        now = store.read(path)
        current = (now.data or b"").decode().strip()
        if current and day < current:
            return False
        # Checked after LATEST was read: a withdrawal of the day deletes _SUCCESS first
        # and then always rewrites LATEST, so this write fails if it comes later.
        if not _is_published(kind_dir, day):
            return False
        if store.write_if(path, f"{day}\n".encode(), now.generation) is not None:
            if day != current:
                Metrics.counter(SIGNAL_NAMESPACE,
                                latest_counter_name(kind_label(kind_dir))).inc()
            return True
    raise RuntimeError(f"{path} kept moving: gave up after {MOVES} tries")


def reset_latest(kind_dir: str, excluding: str = "") -> str:
    """LATEST := the newest day with _SUCCESS other than `excluding`, empty when none is
    left; written by compare-and-swap (always written, even unchanged: a publish that read
    LATEST before then cannot move it to a day withdrawn meanwhile). Returns the day it
    names now ('' when none)."""
    path = f"{kind_dir.rstrip('/')}/{LATEST}"
    store = store_for(path)
    for _ in range(MOVES):
        now = store.read(path)
        days = [d for d in published_days(kind_dir) if d != excluding]
        newest = days[-1] if days else ""
        if store.write_if(path, f"{newest}\n".encode() if newest else b"",
                          now.generation) is not None:
            return newest
    raise RuntimeError(f"{path} kept moving: gave up after {MOVES} tries")


def day_markers(output_dir: str, run_date: str) -> List[str]:
    """The _SUCCESS of every withdrawable kind of day `run_date` published now."""
    out = output_dir.rstrip("/")
    markers = [f"{out}/{kind}/dt={run_date}/{SUCCESS}" for kind in WITHDRAWN_KINDS]
    markers = [m for m in markers if FileSystems.exists(m)]
    for family in WITHDRAWN_FAMILIES:
        found = FileSystems.match([f"{out}/{family}/*/dt={run_date}/{SUCCESS}"])[0]
        markers += [m.path for m in found.metadata_list]
    return sorted(set(markers))


def day_bases(output_dir: str, run_date: str) -> Dict[str, int]:
    """_SUCCESS path -> generation, of every kind of day `run_date` published when a run
    starts: what that run may withdraw (and nothing published after it started)."""
    return {marker: store_for(marker).read(marker).generation
            for marker in day_markers(output_dir, run_date)}


def withdraw_day(output_dir: str, run_date: str,
                 bases: Optional[Dict[str, int]] = None) -> List[str]:
    """Unpublish day `run_date` (YYYY-MM-DD) of every kind under output_dir except the
    quarantine: `validated`, `cooccurrence`, `examples/<kind>`, `features/<kind>` lose
    <kind>/dt=<run_date>/_SUCCESS (readers follow it, so the day is gone for them; its
    files go with the retention sweep of a later publish), each only if it is still at the
    generation in `bases` (day_bases, read at the run's start; read now when None): a
    kind another run published after this run started stays published. When LATEST of
    a kind names that day it moves back to the newest day left (or is emptied). Returns
    the withdrawn kind folders relative to output_dir, sorted."""
    out = output_dir.rstrip("/")
    bases = day_bases(out, run_date) if bases is None else bases
    withdrawn = []
    for marker, generation in sorted(bases.items()):
        day_dir = marker[:-len(f"/{SUCCESS}")]
        if generation and withdraw_folder(day_dir, generation):
            withdrawn.append(split_day_folder(day_dir)[0][len(out) + 1:])
    # A kind whose LATEST still names the day though it is not published (an earlier
    # withdrawal stopped between its two steps) is put right too.
    kinds = [f"{out}/{kind}" for kind in WITHDRAWN_KINDS]
    for family in WITHDRAWN_FAMILIES:
        found = FileSystems.match([f"{out}/{family}/*/{LATEST}"])[0].metadata_list
        kinds += [m.path[:-len(f"/{LATEST}")] for m in found]
    for kind_dir in sorted(set(kinds)):
        if read_latest(kind_dir) == run_date and not _is_published(kind_dir, run_date):
            reset_latest(kind_dir)
    return withdrawn


def withdraw_folder(day_dir: str, generation: Optional[int] = None,
                    clock: Optional[Clock] = None) -> bool:
    """Unpublish one <kind>/dt=D folder whose _SUCCESS is still at `generation` (the one
    read now when None): LATEST moved off D first (a crash after it leaves LATEST older,
    never naming a withdrawn day), then withdrawn-<run_id>.json written (retention keeps
    the withdrawn run's files from then on, for readers that opened the day), then
    _SUCCESS deleted by compare-and-swap, then
    LATEST rewritten from the days published now (a publish of D that read LATEST in
    between cannot move it back to D). False when the folder was not published, or was
    published again since that generation; a LATEST naming D though D is not published
    (an earlier withdrawal stopped in between) is put right either way."""
    marker = f"{day_dir.rstrip('/')}/{SUCCESS}"
    store = store_for(marker)
    now = store.read(marker)
    kind_dir, day = split_day_folder(day_dir)
    if now.data is not None and (generation is None or now.generation == generation):
        reset_latest(kind_dir, excluding=day)
        run_id = now.data.decode().strip()
        if run_id:
            record = {"run_id": run_id, "withdrawn_at": stamp((clock or utc_now)())}
            write_atomic(f"{day_dir.rstrip('/')}/{WITHDRAWN.format(run_id=run_id)}",
                         (json.dumps(record, sort_keys=True) + "\n").encode(), run_id)
        withdrawn = store.delete_if(marker, now.generation)
        reset_latest(kind_dir)
        return withdrawn
    if read_latest(kind_dir) == day and not _is_published(kind_dir, day):
        reset_latest(kind_dir)
    return False
