"""<kind>/LATEST (the newest published day of a kind) and the withdrawal of a refused
day (docs/publishing.md).
"""

import re
import uuid
from typing import Dict, List, Optional

from apache_beam.io.filesystems import FileSystems

from transforms.publishing.files import READ_ERRORS, SUCCESS, delete_tolerant, write_atomic
from transforms.publishing.store import store_for

LATEST = "LATEST"
_DAY_FOLDER_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


# The published kinds a refused day withdraws (the quarantine is kept: refused days keep it).
WITHDRAWN_KINDS = ("validated", "cooccurrence")


WITHDRAWN_FAMILIES = ("examples", "features")   # <out>/<family>/<kind>/dt=D


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


def update_latest(kind_dir: str, day: str, run_id: str) -> bool:
    """After `day` was published under kind_dir: LATEST := day when day >= the day LATEST
    names (a backfill of an older day leaves it). Returns whether LATEST was written."""
    current = read_latest(kind_dir)
    if current and day < current:
        return False
    write_atomic(f"{kind_dir.rstrip('/')}/{LATEST}", f"{day}\n".encode(), run_id)
    return True


def reset_latest(kind_dir: str, run_id: str, excluding: str = "") -> str:
    """LATEST := the newest day with _SUCCESS other than `excluding`; deleted when none is
    left. Returns the day it names now ('' when deleted)."""
    days = [d for d in published_days(kind_dir) if d != excluding]
    path = f"{kind_dir.rstrip('/')}/{LATEST}"
    if days:
        write_atomic(path, f"{days[-1]}\n".encode(), run_id)
        return days[-1]
    delete_tolerant([path] if FileSystems.exists(path) else [])
    return ""


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
    files are removed by the day's next publish), each only if it is still at the
    generation in `bases` (day_bases, read at the run's start; read now when None): a
    kind another run published after this run started stays published. When LATEST of
    a kind names that day it moves back to the newest day left (or is deleted). Returns
    the withdrawn kind folders relative to output_dir, sorted."""
    out = output_dir.rstrip("/")
    bases = day_bases(out, run_date) if bases is None else bases
    withdrawn = []
    run_id = f"withdraw-{run_date}-{uuid.uuid4().hex[:8]}"
    for marker, generation in sorted(bases.items()):
        day_dir = marker[:-len(f"/{SUCCESS}")]
        if generation and withdraw_folder(day_dir, run_id, generation):
            withdrawn.append(split_day_folder(day_dir)[0][len(out) + 1:])
    return withdrawn


def withdraw_folder(day_dir: str, run_id: str, generation: Optional[int] = None) -> bool:
    """Unpublish one <kind>/dt=D folder: LATEST first (moved back when it names D), then
    _SUCCESS, deleted only at `generation` (the one read now when None). False when the
    folder was not published, or was published again since that generation."""
    marker = f"{day_dir.rstrip('/')}/{SUCCESS}"
    store = store_for(marker)
    now = store.read(marker)
    if now.data is None or (generation is not None and now.generation != generation):
        return False
    kind_dir, day = split_day_folder(day_dir)
    # LATEST first: a crash in between leaves it older, never naming a withdrawn day,
    # and the marker still there for a rerun of the gate to withdraw.
    if read_latest(kind_dir) == day:
        reset_latest(kind_dir, run_id, excluding=day)
    return store.delete_if(marker, now.generation)
