"""Retention of replaced runs (docs/publishing.md#retention): a commit does not delete the
files of the run it replaced, since a reader that opened the day (a training job lists a
day's files once) may still read them. Each publish sweeps its kind's last SWEEP_DAYS
days instead and deletes what no reader can still hold: the files of runs replaced (or
withdrawn) more than `keep_hours` ago, and the pieces of runs that never committed (a
crashed or losing run's) whose run id is older than that.
"""

import datetime as dt
import os
from typing import Dict, Iterable, List, Optional

from transforms.publishing.files import READ_ERRORS, RUN_MANIFEST, WITHDRAWN, \
    delete_tolerant, is_local, read_json, stored_sizes
from transforms.publishing.latest import split_day_folder
from transforms.publishing.readers import listed_names, read_run_id
from transforms.publishing.runs import RUN_ID_RE, parse_stamp, run_id_time, utc_now

DEFAULT_KEEP_HOURS = 48   # a whole training job that opened the day (docs/publishing.md)
SWEEP_DAYS = 14           # the day published and the 13 days before it


def check_keep_hours(keep_hours: float) -> float:
    if not 0 <= keep_hours < float("inf"):
        raise ValueError(f"--keep_replaced_hours={keep_hours} must be a number >= 0")
    return keep_hours


def _read_or_none(path: str) -> Optional[Dict]:
    """A small JSON file of the folder, None when it is gone (swept meanwhile) or unreadable."""
    try:
        found = read_json(path)
    except READ_ERRORS + (ValueError,):
        return None
    return found if isinstance(found, dict) else None


def files_by_run(names: Iterable[str]) -> Dict[str, List[str]]:
    """Run id -> the names (relative to the folder) holding it. Names without one (the
    protocol's fixed names: _SUCCESS, manifest.json, LATEST, CURRENT, the local store's
    _cas- files) are never swept."""
    runs: Dict[str, List[str]] = {}
    for name in names:
        found = RUN_ID_RE.search(name)
        if found and run_id_time(found.group(0)):
            runs.setdefault(found.group(0), []).append(name)
    return runs


def expired_runs(runs: Iterable[str], current: str, manifests: Dict[str, Dict],
                 withdrawn: Dict[str, Dict], cutoff: dt.datetime) -> List[str]:
    """The runs of one folder whose files may go: never `current` (the run _SUCCESS
    names); a run on its replaced chain (current's manifest `replaces` it, its manifest
    the one before, ...) when the run that replaced it committed at or before `cutoff`;
    any other run (never committed, or withdrawn) when the newest of its start (run id),
    its commit and its withdrawal is at or before `cutoff`. `manifests` and `withdrawn`
    map run ids to their manifest and withdrawal record where the folder holds one."""
    replaced_at: Dict[str, dt.datetime] = {}
    run, seen = current, set()
    while run and run not in seen and run in manifests:
        seen.add(run)
        manifest = manifests[run]
        previous = str(manifest.get("replaces") or "")
        if previous:
            committed = parse_stamp(manifest.get("committed_at"))
            replaced_at[previous] = committed or run_id_time(run) or cutoff
        run = previous
    expired = []
    for run in sorted(set(runs)):
        if run == current:
            continue
        if run in replaced_at:
            since = replaced_at[run]
        else:
            times = [run_id_time(run),
                     parse_stamp((manifests.get(run) or {}).get("committed_at")),
                     parse_stamp((withdrawn.get(run) or {}).get("withdrawn_at"))]
            since = max(t for t in times if t is not None)
        if since <= cutoff:
            expired.append(run)
    return expired


def sweep_folder(folder: str, keep_hours: float, now: dt.datetime) -> List[str]:
    """Delete the files of `folder`'s expired runs (expired_runs, cutoff now - keep_hours),
    and the published run's files its manifest does not list once its run id is older
    than the cutoff: pieces first, manifests and withdrawal records last (a sweep that
    stops midway finds the run again). A name a kept run's manifest lists stays.
    Returns the deleted paths."""
    folder = folder.rstrip("/")
    # _SUCCESS first: a run committing after this read is younger than the cutoff
    # (unless it ran longer than keep_hours, see docs/publishing.md#retention).
    current = read_run_id(folder, missing_ok=True)
    names = list(stored_sizes(folder))
    runs = files_by_run(names)
    if not runs:
        return []
    present = set(names)
    manifests, withdrawn = {}, {}
    for run in runs:
        for template, into in ((RUN_MANIFEST, manifests), (WITHDRAWN, withdrawn)):
            name = template.format(run_id=run)
            if name in present:
                found = _read_or_none(f"{folder}/{name}")
                if found is not None:
                    into[run] = found
    cutoff = now - dt.timedelta(hours=keep_hours)
    expired = set(expired_runs(runs, current, manifests, withdrawn, cutoff))
    kept = {name for run, manifest in manifests.items() if run not in expired
            for name in listed_names(manifest)}
    last = {RUN_MANIFEST.format(run_id=r) for r in expired} | \
        {WITHDRAWN.format(run_id=r) for r in expired}
    doomed = [n for r in sorted(expired) for n in sorted(runs[r]) if n not in kept]
    if current in manifests and run_id_time(current) <= cutoff:
        # What the published run wrote but does not list (a crashed write's temporary
        # file, a retried bundle's orphan chunk): no reader opens it.
        doomed += [n for n in sorted(runs[current])
                   if n not in kept and n != RUN_MANIFEST.format(run_id=current)]
    if not doomed:
        return []
    pieces = [f"{folder}/{n}" for n in doomed if n not in last]
    records = [f"{folder}/{n}" for n in doomed if n in last]
    delete_tolerant(pieces)
    delete_tolerant(records)
    for run in expired:
        remove_empty_folders(folder, run)
    return pieces + records


def remove_empty_folders(folder: str, run_id: str) -> None:
    """Locally, the folders a deleted run's trees leave empty (an object store has none);
    only folders named for that run, so another run's fresh folder is never touched."""
    if not is_local(folder) or not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        top = os.path.join(folder, name)
        if run_id in name and os.path.isdir(top):
            for dirpath, _, _ in sorted(os.walk(top), reverse=True):
                try:
                    os.rmdir(dirpath)
                except OSError:   # not empty
                    pass


def sweep_folders(final_dir: str) -> List[str]:
    """The folders a publish of final_dir sweeps: for <kind>/dt=D the kind's days D-13 ..
    D (a bounded number of listings, whatever the kind's history), else final_dir."""
    final_dir = final_dir.rstrip("/")
    day_folder = split_day_folder(final_dir)
    if not day_folder:
        return [final_dir]
    kind_dir, day = day_folder
    last = dt.date.fromisoformat(day)
    return [f"{kind_dir}/dt={last - dt.timedelta(days=back)}"
            for back in range(SWEEP_DAYS - 1, -1, -1)]


def sweep(final_dir: str, keep_hours: float, now: Optional[dt.datetime] = None) -> List[str]:
    """The sweep a publish of final_dir runs after its commit; returns the deleted paths."""
    now = now or utc_now()
    deleted = []
    for folder in sweep_folders(final_dir):
        deleted += sweep_folder(folder, keep_hours, now)
    return deleted
