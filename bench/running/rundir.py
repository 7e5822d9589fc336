"""The run directory: heatmaps/, scores.jsonl (progress), samples.csv, summary.csv, run.json."""

from __future__ import annotations

import hashlib
import json
import re
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from ..core import atomic
from ..core.errors import BenchError
from ..core.rows import FLOAT_FORMAT, Rows
from .integrity import check_unique_rows
from .lock import is_empty, is_lock_file

if TYPE_CHECKING:
    import pandas as pd

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: str) -> str:
    """`text` with every character outside [A-Za-z0-9._-] replaced by `_` (not unique: see file_name)."""
    return _UNSAFE.sub("_", text)


def file_name(sample_id: str) -> str:
    """The file stem of a sample's heatmap: unique per sample id and the same in every run.

    An id made only of [A-Za-z0-9._-] is its own name (every built-in dataset's ids are); any other
    id gets its unsafe characters replaced and the first 8 hex digits of its SHA-1 appended, so
    `x y-mass` and `x_y-mass` never share a file.
    """
    cleaned = safe_name(sample_id)
    if cleaned == sample_id and sample_id not in ("", ".", ".."):
        return sample_id
    return f"{cleaned}~{hashlib.sha1(sample_id.encode('utf-8')).hexdigest()[:8]}"


def record_backend(record: dict | None) -> str | None:
    """The method backend whose maps a run holds, from a model run's config or a rescored run's record.

    Protocols may have per-backend value policies (BioViL maps clamped, not min-maxed, under
    vilouras2024), so a re-scored run must carry its source's backend on.
    """
    record = record or {}
    return record.get("backend") or ((record.get("config") or {}).get("method") or {}).get("backend")


def record_output(record: dict | None) -> str:
    """What a run's method output: "boxes" for a box method's run (or `bench score --boxes`), else "heatmap"."""
    record = record or {}
    return record.get("output") or ((record.get("config") or {}).get("method") or {}).get("output") or "heatmap"


class RunDir:
    """Paths and atomic reads/writes of one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def heatmaps(self) -> Path:
        return self.root / "heatmaps"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def samples_csv(self) -> Path:
        return self.root / "samples.csv"

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    @property
    def scores_log(self) -> Path:
        return self.root / "scores.jsonl"

    def heatmap_path(self, sample_id: str) -> Path:
        return self.heatmaps / f"{file_name(sample_id)}.npz"

    @property
    def boxes(self) -> Path:
        """The folder of a box method's predictions (one JSON record per sample)."""
        return self.root / "boxes"

    def prediction_path(self, sample_id: str, output: str = "heatmap") -> Path:
        """Where a sample's prediction is stored: its heatmap (.npz), or its boxes (.json) for a box method."""
        return self.boxes / f"{file_name(sample_id)}.json" if output == "boxes" else self.heatmap_path(sample_id)

    def remove_stale_temporaries(self, targets: Iterable[Path] | None = None) -> None:
        """Delete temporary files left by a process killed in the middle of an atomic write.

        With `targets`, only the temporaries of those files go (other shards may be writing theirs).
        """
        if targets is not None:
            for target in targets:
                if target.parent.is_dir():
                    for tmp in target.parent.glob(f".{glob_escape(target.name)}.*.tmp"):
                        tmp.unlink(missing_ok=True)
            return
        for folder in (self.root, self.heatmaps, self.boxes, self.root / "shards"):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def holds_only_shards(self) -> bool:
        """True when the folder holds nothing but shard results (heatmaps/ or boxes/, and shards/)."""
        return (self.root / "shards").is_dir() and all(p.name in ("heatmaps", "boxes", "shards") or is_lock_file(p.name)
                                                    for p in self.root.iterdir())

    def open_for(self, config: dict) -> None:
        """Make the folder ready for a run of `config`: empty, or holding that run (which then resumes).

        BenchError for a folder holding a different run, or files and no run; stale temporaries of
        an interrupted write are removed. Call it under the folder's lock.
        """
        previous = self.read_run()
        if previous is not None and previous.get("config") != config:
            raise BenchError(f"--out {self.root} holds a different run; choose another --out")
        if previous is None and not is_empty(self.root):
            raise BenchError(f"--out {self.root} is not empty and holds no run; choose another --out")
        self.remove_stale_temporaries()

    def read_run(self) -> dict | None:
        if not self.run_json.is_file():
            return None
        try:
            return json.loads(self.run_json.read_text())
        except json.JSONDecodeError:
            raise BenchError(f"{self.run_json} is not valid JSON") from None

    def write_run(self, record: dict) -> None:
        atomic.write_text(self.run_json, json.dumps(record, indent=2, sort_keys=False, default=str) + "\n")

    def read_scores(self, fingerprint: str, logs: Iterable[Path] = ()) -> dict[str, dict]:
        """Scores logged by an earlier, interrupted attempt (or by shards, in `logs`) under the same protocol."""
        done: dict[str, dict] = {}
        for log in (self.scores_log, *logs):
            if not log.is_file():
                continue
            for line in log.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by an interruption
                if entry.get("protocol") == fingerprint:
                    done[entry["sample_id"]] = entry
        return done

    def append_scores(self, entries: Iterable[dict], log: Path | None = None) -> None:
        """Append score entries to the run's log (or to a shard's `log`), flushed to disk."""
        import os

        log = log or self.scores_log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            for e in entries:
                fh.write(json.dumps(e) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def write_table(self, path: Path, table: Rows | pd.DataFrame) -> None:
        """A table as CSV, atomically: `Rows` write the same text pandas writes for them."""
        text = table.to_csv() if isinstance(table, Rows) else table.to_csv(index=False, float_format=FLOAT_FORMAT)
        atomic.write_text(path, text)

    def read_samples(self, unique: bool = True) -> pd.DataFrame:
        """samples.csv; a repeated sample id is a BenchError (`unique=False` leaves that to the caller)."""
        import pandas as pd

        if not self.samples_csv.is_file():
            raise BenchError(f"{self.root} has no samples.csv (not a finished run)")
        try:
            table = pd.read_csv(self.samples_csv, dtype={"sample_id": str, "category": str})
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise BenchError(f"cannot read {self.samples_csv}: {str(exc).splitlines()[0] or type(exc).__name__}") from None
        if "sample_id" not in table.columns or table.empty:
            raise BenchError(f"{self.samples_csv} holds no sample rows")
        if unique:
            check_unique_rows(table, self.samples_csv)
        return table
