"""What run.json records about how a run was made: the command line, the date, the harness."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__

#: version of the run.json layout; 2 added the dataset fingerprint, the command line, date and commit;
#: 3 the digests of the tables and of the heatmap set (`digests`, see integrity.py)
SCHEMA_VERSION = 3


def harness_commit() -> str | None:
    """The git commit of the installed harness when it runs from a git checkout, else None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def run_header() -> dict:
    """Schema version, command line, UTC date, harness version and commit, for run.json."""
    return {"schema_version": SCHEMA_VERSION, "command": list(sys.argv),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "harness": {"version": __version__, "commit": harness_commit()}}
