"""Run ids and the times a run records (docs/publishing.md): a run id is the UTC time the
run's publishing step was built plus random hex, so that retention can tell a run's age
from any file named for it.
"""

import datetime as dt
import re
import uuid
from typing import Callable, Optional

RUN_ID_RE = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{8}")
_RUN_ID_TIME = "%Y%m%dT%H%M%SZ"
_STAMP = "%Y-%m-%dT%H:%M:%SZ"

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_run_id(clock: Optional[Clock] = None) -> str:
    """A run id unique to one construction of a publishing step: the UTC time `clock`
    gives (now by default) + random hex."""
    now = (clock or utc_now)().astimezone(dt.timezone.utc)
    return f"{now.strftime(_RUN_ID_TIME)}-{uuid.uuid4().hex[:8]}"


def run_id_time(run_id: str) -> Optional[dt.datetime]:
    """When the run of `run_id` started (run ids begin with their UTC start time); None
    for a text that is not a run id."""
    found = RUN_ID_RE.fullmatch(run_id)
    if not found:
        return None
    try:
        moment = dt.datetime.strptime(found.group(1), _RUN_ID_TIME)
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.timezone.utc)


def stamp(moment: dt.datetime) -> str:
    """A UTC time as manifests and withdrawal records hold it (ISO 8601, seconds)."""
    return moment.astimezone(dt.timezone.utc).strftime(_STAMP)


def parse_stamp(text) -> Optional[dt.datetime]:
    """The time of a stamp; None for anything else (a manifest written before stamps)."""
    try:
        return dt.datetime.strptime(str(text), _STAMP).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None
