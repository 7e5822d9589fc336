"""Splitting a run over processes: shard selection, shard records, launcher detection, the barrier.

A shard is `INDEX/COUNT` with INDEX in 0..COUNT-1. Shard INDEX takes every COUNT-th sample of the
run's sample set sorted by sample_id, so the split depends only on the sample ids. Each shard writes
its heatmaps into the shared heatmaps/ folder (one file per sample, so shards never write the same
file), its scores into `shards/INDEX-of-COUNT.scores.jsonl` and its state into
`shards/INDEX-of-COUNT.json`. A run without a shard merges complete shard results and recomputes
nothing they hold.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Sequence

from ..core import atomic
from ..core.errors import BenchError
from ..core.samples import Sample

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_RECORD = re.compile(r"^(\d+)-of-(\d+)\.json$")
BARRIER_TIMEOUT = timedelta(hours=72)


@dataclass(frozen=True)
class Shard:
    """One part of a run: `index` in 0..count-1."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def stem(self) -> str:
        return f"{self.index}-of-{self.count}"


def parse_shard(text: str) -> Shard:
    """`"1/4"` -> Shard(1, 4); anything else is a BenchError naming the expected form."""
    m = _SHARD.match(text or "")
    if not m:
        raise BenchError(f"--shard {text!r}: expected INDEX/COUNT such as 0/4 (shards are numbered from 0)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1:
        raise BenchError(f"--shard {text!r}: COUNT must be at least 1")
    if index >= count:
        raise BenchError(f"--shard {text!r}: INDEX must be in 0..{count - 1} (shards are numbered from 0)")
    return Shard(index, count)


def select(samples: Sequence[Sample], shard: Shard) -> list[Sample]:
    """The shard's samples, in the run's order: every COUNT-th of the ids sorted, from INDEX."""
    mine = set(sorted(s.sample_id for s in samples)[shard.index::shard.count])
    return [s for s in samples if s.sample_id in mine]


def sample_set_id(samples: Sequence[Sample]) -> str:
    """A fingerprint of the whole sample set, so shards of different sets are never merged."""
    text = "\n".join(sorted(s.sample_id for s in samples))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Launch:
    """This process's place in a multi-process launch (accelerate launch, torchrun)."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip() != "":
            try:
                return int(value)
            except ValueError:
                raise BenchError(f"environment variable {name}={value!r} is not an integer") from None
    return None


def launch_from_env() -> Launch | None:
    """The launch this process belongs to, from RANK/WORLD_SIZE (or LOCAL_RANK/LOCAL_WORLD_SIZE); None if alone."""
    world = _env_int("WORLD_SIZE", "LOCAL_WORLD_SIZE")
    if world is None or world <= 1:
        return None
    rank = _env_int("RANK", "LOCAL_RANK")
    if rank is None or not 0 <= rank < world:
        raise BenchError(f"WORLD_SIZE={world} but RANK is {rank}; expected a rank in 0..{world - 1}")
    local = _env_int("LOCAL_RANK")
    return Launch(rank, world, rank if local is None else local)


def process_device(device: str, launch: Launch) -> str:
    """`cuda` becomes this process's GPU (`cuda:LOCAL_RANK`); an explicit device stays as given."""
    return f"cuda:{launch.local_rank}" if device == "cuda" else device


def check_rendezvous(launch: Launch) -> None:
    """The barrier needs MASTER_ADDR/MASTER_PORT (set by accelerate launch and torchrun); check before any work."""
    if not (os.environ.get("MASTER_ADDR") and os.environ.get("MASTER_PORT")):
        raise BenchError(f"WORLD_SIZE={launch.world_size} but MASTER_ADDR/MASTER_PORT are not set; start the "
                         "processes with `accelerate launch` or `torchrun`, or give each one --shard INDEX/COUNT")


def barrier(launch: Launch) -> None:
    """Wait until every process of the launch gets here (torch.distributed over gloo, on the CPU)."""
    check_rendezvous(launch)
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size, timeout=BARRIER_TIMEOUT)
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
    except (RuntimeError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BenchError(f"process {launch.rank}/{launch.world_size}: waiting for the other processes failed: "
                         f"{first}") from None


class ShardFiles:
    """The files of one shard in a run directory."""

    def __init__(self, root: Path, shard: Shard) -> None:
        self.shard = shard
        self.folder = Path(root) / "shards"
        self.record = self.folder / f"{shard.stem}.json"
        self.scores_log = self.folder / f"{shard.stem}.scores.jsonl"

    def write(self, record: dict) -> None:
        atomic.write_text(self.record, json.dumps(record, indent=2, default=str) + "\n")


def new_record(shard: Shard, config: dict, sample_set: str, n_samples: int, device: str) -> dict:
    """The record a shard writes when it starts (status `running`)."""
    return {"status": "running", "shard": str(shard), "config": config, "sample_set": sample_set,
            "n_samples": n_samples, "device": device, "host": socket.gethostname(), "pid": os.getpid()}


def read_records(root: Path) -> dict[Shard, dict]:
    """Every shard record found in a run directory."""
    folder = Path(root) / "shards"
    out: dict[Shard, dict] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        m = _RECORD.match(path.name)
        if not m:
            continue
        try:
            out[Shard(int(m.group(1)), int(m.group(2)))] = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise BenchError(f"{path} is not valid JSON; delete it and run that shard again") from None
    return out


def differs_only_in_limit(old: dict, new: dict) -> bool:
    """Two run configurations that are the same run but for `--limit` (so another sample set)."""
    return {k: v for k, v in old.items() if k != "limit"} == {k: v for k, v in new.items() if k != "limit"}


def check_compatible(records: dict[Shard, dict], config: dict, root: Path) -> None:
    """Refuse shard results of another method, dataset, protocol or seed."""
    for shard, rec in records.items():
        if rec.get("config") != config:
            old = rec.get("config", {})
            if differs_only_in_limit(old, config):
                raise BenchError(f"--out {root} holds shard {shard} of a run on a different sample set (--limit "
                                 f"{old.get('limit')}, this one {config.get('limit')}); run the merge with the "
                                 "shards' options, or choose another --out")
            raise BenchError(
                f"--out {root} holds shard {shard} of a different run (method {old.get('method', {}).get('name')}, "
                f"dataset {old.get('dataset', {}).get('name')}); choose another --out")


def complete_set(records: dict[Shard, dict], sample_set: str, root: Path) -> list[dict]:
    """The records of a finished shard set, in shard order; a BenchError says what is missing."""
    counts = sorted({s.count for s in records})
    if len(counts) > 1:
        raise BenchError(f"{root}/shards holds shards of different counts ({', '.join(map(str, counts))}); "
                         "keep the results of one split and delete the other shard records")
    count = counts[0]
    for rec in records.values():
        if rec.get("sample_set") != sample_set:
            raise BenchError(f"the shards in {root} were run on a different sample set (another --limit or "
                             "dataset options); run the merge with the shards' options")
    missing = [str(Shard(i, count)) for i in range(count) if Shard(i, count) not in records]
    if missing:
        raise BenchError(f"shard(s) {', '.join(missing)} have no results in {root}; run them with --shard, then merge")
    failed = [(s, r) for s, r in sorted(records.items(), key=lambda kv: kv[0].index) if r.get("status") == "failed"]
    if failed:
        shard, rec = failed[0]
        raise BenchError(f"shard {shard} failed: {rec.get('error', 'no message')}; run it again with --shard {shard}")
    unfinished = [str(s) for s in sorted(records, key=lambda s: s.index) if records[s].get("status") != "complete"]
    if unfinished:
        raise BenchError(f"shard(s) {', '.join(unfinished)} in {root} have not finished; wait for them, or run them "
                         "again with --shard to resume, then merge")
    return [records[Shard(i, count)] for i in range(count)]


def merged_versions(records: Sequence[dict]) -> dict[str, str]:
    """The package versions the shards ran with (distinct values joined when shards differ)."""
    out: dict[str, list[str]] = {}
    for rec in records:
        for name, version in rec.get("versions", {}).items():
            if version not in out.setdefault(name, []):
                out[name].append(version)
    return {name: ", ".join(values) for name, values in out.items()}


def remove(root: Path) -> None:
    """Delete the shard records and score logs once their results are in the merged tables."""
    folder = Path(root) / "shards"
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if _RECORD.match(path.name) or path.name.endswith(".scores.jsonl") or path.name.endswith(".tmp"):
            path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
