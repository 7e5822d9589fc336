"""The reproduction page: every headline number of the papers against the harness run that reproduces it.

A headline row of `reported/` names the harness method, dataset and protocol that reproduce it; the
page gives the command that makes that run and, once the run is committed under `results/`, the
measured value with its interval, the difference and whether the published value lies inside the
interval. Until then the row says why it is not measured. What stands in the way (a credentialed
dataset, an unpublished checkpoint) is data: `reported/reproduction.toml`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core.errors import BenchError
from .pages import GENERATED, ci, md_table, method_link, num, reported_cell
from .results import Entry

GUIDE = "reproduction.toml"


def load_guide(reported: Path) -> dict:
    """`reported/reproduction.toml` (datasets: data_root, args, access; methods: args, blocker); empty when absent."""
    path = Path(reported) / GUIDE
    if not path.is_file():
        return {"datasets": {}, "methods": {}}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{path}: not valid TOML ({exc})") from None
    unknown = [k for k in data if k not in ("datasets", "methods")]
    if unknown:
        raise BenchError(f"{path}: unknown table {unknown[0]!r} (known: datasets, methods)")
    from ..reporting.reported import DATASETS, known_method

    fields = {"datasets": ("data_root", "args", "access"), "methods": ("args", "blocker")}
    for part, known in (("datasets", DATASETS), ("methods", None)):
        for name, entry in data.get(part, {}).items():
            if (name not in known) if known is not None else not known_method(name):
                raise BenchError(f"{path}: unknown {part[:-1]} {name!r} in [{part}]")
            bad = [k for k in entry if k not in fields[part] or not isinstance(entry[k], str)]
            if bad:
                raise BenchError(f"{path}: [{part}.{name}] field {bad[0]!r} is unknown or not a string "
                                 f"(fields: {', '.join(fields[part])})")
    return {"datasets": data.get("datasets", {}), "methods": data.get("methods", {})}


def run_command(method: str, dataset: str, protocol: str, guide: dict) -> str:
    """The `bench run` that reproduces a number, then the `--add` that commits it."""
    root = guide["datasets"].get(dataset, {}).get("data_root", "DATA_ROOT")
    extra = " ".join(a for a in (guide["datasets"].get(dataset, {}).get("args", ""),
                                 guide["methods"].get(method, {}).get("args", "")) if a)
    out = f"runs/{dataset}/{protocol}/{method}"
    run = f"bench run --method {method} --dataset {dataset} --protocol {protocol} --data-root {root}"
    return f"`{run}{' ' + extra if extra else ''} --out {out}` then `bench leaderboard --add {out}`"


def _entry(entries: Sequence[Entry], method: str, dataset: str, protocol: str) -> Entry | None:
    return next((e for e in entries if (e.name, e.dataset, e.protocol.name) == (method, dataset, protocol)), None)


def _known_dataset(name: str) -> bool:
    from ..datasets import dataset_class

    try:
        dataset_class(name)
    except BenchError:
        return False
    return True


def _why_not(r: pd.Series, guide: dict) -> str:
    if not r["method"]:
        return f"not measured: {r['method_reported']} is not a harness method"
    reasons = [f"no committed run of {r['method']} on {r['dataset']} under {r['protocol']}"]
    if not _known_dataset(r["dataset"]):
        reasons.append(f"the harness has no {r['dataset']} dataset yet")
    access = guide["datasets"].get(r["dataset"], {}).get("access", "")
    blocker = guide["methods"].get(r["method"], {}).get("blocker", "")
    reasons += [x for x in (access, blocker) if x]
    return "not measured: " + "; ".join(reasons)


def reproduction_rows(reported: pd.DataFrame, entries: Sequence[Entry], guide: dict) -> pd.DataFrame:
    """One row per headline number: published, measured (mean, ci_low, ci_high or NaN), difference,
    inside (True/False/None) and status."""
    head = reported[reported["headline"] == "yes"] if not reported.empty else reported
    rows = []
    for _, r in head.iterrows():
        out = {"paper": r["paper"], "table": r["table"], "method_reported": r["method_reported"],
               "method": r["method"], "dataset": r["dataset"], "protocol": r["protocol"], "category": r["category"],
               "metric": r["metric"], "published": r["value"], "published_cell": reported_cell(r),
               "command": run_command(r["method"], r["dataset"], r["protocol"], guide) if r["method"] else "—",
               "measured": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": None,
               "difference": float("nan"), "inside": None, "status": _why_not(r, guide)}
        entry = _entry(entries, r["method"], r["dataset"], r["protocol"]) if r["method"] else None
        if entry is not None:
            s = entry.summary
            hit = s[(s["group"] == r["category"]) & (s["metric"] == r["metric"])]
            if hit.empty:
                out["status"] = (f"not measured: the run's summary has no {r['metric']} for {r['category']} "
                                 f"(protocol {r['protocol']} does not report it)")
            else:
                m = hit.iloc[0]
                out.update(measured=float(m["mean"]), ci_low=float(m["ci_low"]), ci_high=float(m["ci_high"]),
                           n=int(m["n"]), difference=float(m["mean"]) - float(r["value"]),
                           inside=bool(m["ci_low"] <= r["value"] <= m["ci_high"]))
                level = f"{entry.protocol.ci_level:.0%}"
                out["status"] = f"measured: {'inside' if out['inside'] else 'outside'} the {level} CI"
                if entry.modified:  # read with --allow-modified: say so wherever its numbers show
                    out["status"] += f" (entry modified: {', '.join(entry.modified)})"
        rows.append(out)
    return pd.DataFrame(rows)


def reproduction_page(reported: pd.DataFrame, entries: Sequence[Entry], guide: dict) -> str:
    """Markdown of `leaderboards/reproduction.md`."""
    table = reproduction_rows(reported, entries, guide)
    lines = ["# Reproduction of the published numbers", "", GENERATED, "",
             "One row per headline number of the papers (the rows marked `headline` in `reported/`: each paper's "
             "main table, average and per pathology), against the harness run that reproduces it: the method, "
             "dataset and protocol named in the row, made with the command shown. A measured value is the run's "
             "mean with its 95% bootstrap interval (the protocol's resamples, stratified by category); the "
             "difference is measured minus published, and the verdict says whether the published value, as "
             "printed (rounded), lies inside that interval. A row without a committed run says why it is not "
             "measured.", ""]
    if table.empty:
        return "\n".join(lines + ["No headline numbers are recorded (see `reported/README.md`).", ""])
    n_measured = int(table["inside"].notna().sum())
    n_inside = int((table["inside"] == True).sum())  # noqa: E712 (None marks unmeasured rows)
    lines += [f"{len(table)} headline numbers; {n_measured} measured, {n_inside} of them with the published value "
              "inside the 95% CI.", ""]
    keys = ["paper", "table", "method_reported", "method", "dataset", "protocol"]
    overview = [[f"{paper}, {tab}", reported, method_link(method), dataset, protocol, str(len(g)),
                 str(int(g["inside"].notna().sum())), str(int((g["inside"] == True).sum()))]  # noqa: E712
                for (paper, tab, reported, method, dataset, protocol), g in table.groupby(keys, sort=False)]
    lines += md_table(["paper, table", "method (paper)", "method (ours)", "dataset", "protocol", "numbers",
                       "measured", "inside CI"], overview) + [""]
    for (paper, tab), part in table.groupby(["paper", "table"], sort=False):
        lines += [f"## {paper}, {tab}", ""]
        for (method_reported, method, dataset, protocol), rows in part.groupby(
                ["method_reported", "method", "dataset", "protocol"], sort=False):
            lines += [f"### {method_reported} ({method_link(method)}; {dataset}, {protocol} protocol)", "",
                      f"Reproduce: {rows['command'].iloc[0]}", ""]
            statuses = list(dict.fromkeys(rows["status"]))
            body = [[r["category"], r["metric"], r["published_cell"], ci(r["measured"], r["ci_low"], r["ci_high"]),
                     num(r["difference"]),
                     "—" if r["inside"] is None else ("yes" if r["inside"] else "no"),
                     r["status"] if len(statuses) > 1 else ("measured" if r["inside"] is not None else "not measured")]
                    for _, r in rows.iterrows()]
            lines += md_table(["category", "metric", "published", "measured [95% CI]", "difference",
                               "inside CI", "status"], body) + [""]
            if len(statuses) == 1 and rows["inside"].isna().all():
                lines += [statuses[0][:1].upper() + statuses[0][1:] + ".", ""]
    return "\n".join(lines)
