"""What a run records of its own files, and the check that a run read later still holds them.

When a run is written (`bench run`, `bench score`, a shard merge, a rescored table), run.json gets
`digests`: the sha256 of `samples.csv` and `summary.csv`, the number of sample rows, and the digest
of the heatmap set the run scored (the sha256 of the lines `NAME<TAB>SHA256`, one per `.npz` /
`.npy` map of the folder, sorted by name). Readers check the tables against them (and the maps,
wherever maps are read again) and refuse a mismatch in one line naming the file; with
`allow_modified` they read the run anyway and it is shown as modified.

A run of an older harness records no digests: it is read with a warning that it is unverified,
and the leaderboard refuses it until its command is run again (which resumes and records them).

Digests are not signatures: they catch hand edits, damaged copies and maps swapped into a run's
folder, not someone who rewrites run.json as well.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..core.errors import BenchError

if TYPE_CHECKING:
    import pandas as pd

FIELD = "digests"
SAMPLES = "samples.csv"
SUMMARY = "summary.csv"
TABLES = (SAMPLES, SUMMARY)
MAP_SUFFIXES = (".npz", ".npy")
MODIFIED = "modified"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class HeatmapSet:
    """The digest of a folder's maps and how many there are."""

    digest: str
    files: int


def heatmap_files(folder: Path) -> list[Path]:
    """The maps of a folder a run can score: `.npz` and `.npy` files, hidden (temporary) files left out."""
    return sorted((p for p in Path(folder).iterdir()
                   if p.suffix in MAP_SUFFIXES and not p.name.startswith(".") and p.is_file()),
                  key=lambda p: p.name)


def heatmap_set(folder: Path | None) -> HeatmapSet | None:
    """The digest over the sorted (file name, sha256) of the folder's maps; None without the folder."""
    if folder is None or not Path(folder).is_dir():
        return None
    files = heatmap_files(Path(folder))
    lines = "".join(f"{p.name}\t{file_digest(p)}\n" for p in files)
    return HeatmapSet(hashlib.sha256(lines.encode("utf-8")).hexdigest(), len(files))


def record_digests(root: Path, rows: int, maps: HeatmapSet | None, boxes: HeatmapSet | None = None) -> dict:
    """run.json's `digests` of the tables in `root` (written just before) and of the scored maps; with
    `boxes`, also of the scored box predictions (`boxes`, `box_files`: a run's boxes/ folder or a --boxes file)."""
    root = Path(root)
    out = {"algorithm": "sha256", SAMPLES: file_digest(root / SAMPLES), SUMMARY: file_digest(root / SUMMARY),
           "rows": int(rows), "heatmaps": maps.digest if maps else None, "heatmap_files": maps.files if maps else None}
    if boxes is not None:
        out.update({"boxes": boxes.digest, "box_files": boxes.files})
    return out


def recorded(record: dict | None) -> dict | None:
    """The digests a run.json records (None: written by an older harness)."""
    value = (record or {}).get(FIELD)
    return value if isinstance(value, dict) else None


def check_unique_rows(table: pd.DataFrame, path: Path) -> None:
    """BenchError when a sample id is in more than one row of a samples table."""
    counts = table["sample_id"].value_counts()
    repeated = counts[counts > 1]
    if len(repeated):
        first = repeated.index[0]
        raise BenchError(f"{path}: sample id {first!r} is in {int(repeated.iloc[0])} rows ({len(repeated)} id(s) "
                         "repeated); a run's table has one row per sample, so it was edited or damaged")


def _refusal(path: Path, detail: str) -> BenchError:
    return BenchError(f"{path} was changed after the run was written ({detail}); use --allow-modified "
                      "(allow_modified=True in Python) to read it anyway, marked as modified")


@dataclass
class Verification:
    """What reading a run found: the files that differ from its record, and whether it records digests."""

    modified: list[str] = field(default_factory=list)
    verified: bool = True

    def merge(self, other: Verification) -> Verification:
        return Verification(self.modified + other.modified, self.verified and other.verified)


def verify_tables(root: Path, record: dict, allow_modified: bool = False,
                  rows: int | None = None) -> Verification:
    """Check samples.csv and summary.csv of the run in `root` against run.json's digests.

    `rows` is the number of rows of samples.csv as read (compared with the recorded count, to say
    what changed). A mismatch is a BenchError naming the file, or with `allow_modified` an entry of
    `modified` ("samples.csv (10 rows, 12 recorded)"). A record without digests gives
    `verified=False`.
    """
    digests = recorded(record)
    if digests is None:
        return Verification(verified=False)
    root = Path(root)
    found = []
    for name in TABLES:
        path = root / name
        want = digests.get(name)
        if want is None or not path.is_file():
            continue
        if file_digest(path) == want:
            continue
        note = ""
        if name == SAMPLES and rows is not None and digests.get("rows") not in (None, rows):
            note = f"{rows} rows, {digests['rows']} recorded"
        if not allow_modified:
            raise _refusal(path, "its sha256 differs from the one run.json records" + (f"; {note}" if note else ""))
        found.append(f"{name} ({note})" if note else name)
    return Verification(found)


def verify_heatmaps(folder: Path, record: dict, allow_modified: bool = False) -> tuple[Verification, HeatmapSet | None]:
    """Check the maps in `folder` against the heatmap digest run.json records.

    Returns the verification and the folder's digest (None when the folder is absent, which is not
    a mismatch: maps are often not kept or not copied). A record without a heatmap digest gives
    `verified=False`.
    """
    maps = heatmap_set(folder)
    want = (recorded(record) or {}).get("heatmaps")
    if maps is None:
        return Verification(), None
    if want is None:
        return Verification(verified=False), maps
    if maps.digest == want:
        return Verification(), maps
    files = (recorded(record) or {}).get("heatmap_files")
    detail = "the maps' digest differs from the one run.json records"
    if files is not None and files != maps.files:
        detail += f"; {maps.files} maps, {files} recorded"
    if not allow_modified:
        raise _refusal(Path(folder), detail)
    return Verification([f"{Path(folder).name}/ (maps)"]), maps


def maps_folder(root: Path, record: dict) -> Path | None:
    """The folder of maps a run scored: its own heatmaps/, or the folder `bench score` read (if still there)."""
    own = Path(root) / "heatmaps"
    if own.is_dir():
        return own
    scored = record.get("heatmaps")
    if isinstance(scored, str) and Path(scored).is_absolute() and Path(scored).is_dir():
        return Path(scored)
    return None


def mark(label: str, modified: list[str]) -> str:
    """A run's label as shown in tables: `name [modified]` when any of its files differ from its record."""
    return f"{label} [{MODIFIED}]" if modified else label


def unverified_warning(where: Path | str, warn: Callable[[str], None]) -> None:
    """Say once that a run of an older harness cannot be checked."""
    warn(f"{where}: run.json records no digests (made by an older harness), so its tables are not verified; "
         "run its command again to record them")


def stderr_warning(text: str) -> None:
    """The command line's warnings: one line on stderr."""
    print(f"WARNING: {text}", file=sys.stderr)
