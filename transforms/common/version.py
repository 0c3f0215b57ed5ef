"""The suite's own version fields, recorded in every manifest: the distribution's version
and the git revision the code runs from (docs/publishing.md).

Plain and cheap: no cloud call; the git lookup runs once per process.
"""

import importlib.metadata
import os
import re
import subprocess
from typing import Dict

DISTRIBUTION = "marketplace-preprocessing"
UNKNOWN = "unknown"
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def suite_version() -> str:
    """The installed distribution's version, else setup.py's (a checkout that is not
    installed), else 'unknown'."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        with open(os.path.join(_ROOT, "setup.py"), encoding="utf-8") as handle:
            found = re.search(r'^\s*version="([^"]+)"', handle.read(), re.M)
    except OSError:
        return UNKNOWN
    return found.group(1) if found else UNKNOWN


def suite_revision() -> str:
    """SUITE_REVISION (a build argument of the image), else the git revision of the
    checkout the code runs from, else 'unknown'."""
    revision = os.environ.get("SUITE_REVISION", "").strip()
    if revision:
        return revision
    if not os.path.exists(os.path.join(_ROOT, ".git")):
        return UNKNOWN
    try:
        proc = subprocess.run(["git", "-C", _ROOT, "rev-parse", "HEAD"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return UNKNOWN
    revision = proc.stdout.strip()
    return revision if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", revision) \
        else UNKNOWN


_SUITE: Dict[str, str] = {}


def suite_fields() -> Dict[str, str]:
    """{"suite_version", "suite_revision"}; the version and the git lookup are worked out
    once per process (SUITE_REVISION, when set, is read every time)."""
    if not _SUITE:
        _SUITE.update(suite_version=suite_version(), git=suite_revision())
    revision = os.environ.get("SUITE_REVISION", "").strip() or _SUITE["git"]
    return {"suite_version": _SUITE["suite_version"], "suite_revision": revision}
