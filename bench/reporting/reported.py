"""Published numbers: per-pathology tables of the papers, as CSV files under `reported/`.

Each row is one number a paper printed, with where it came from. Reported numbers are never
mixed with measured ones: they were computed by other code on other sample sets, under the
protocol the row names, and are shown in their own table of a leaderboard.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from ..core.errors import BenchError
from ..evaluation.protocols import METRIC_BASES, protocol_names

COLUMNS = ["paper", "table", "dataset", "protocol", "method_reported", "method", "category", "metric", "value",
           "spread_kind", "spread", "ci_low", "ci_high", "source_url", "note"]
REQUIRED = ("paper", "table", "dataset", "protocol", "method_reported", "category", "metric", "value",
            "spread_kind", "source_url")

#: the protocols a reported number can be attached to: every protocols/NAME.toml
PROTOCOLS = tuple(protocol_names())
DATASETS = ("ms-cxr", "vindr-cxr", "chestx-ray14")
#: our method names a paper's method can map to (empty when none does)
METHODS = ("biovil", "biovil_t", "ldm_frozen", "clip_ldm", "cxrbert_ldm", "cxrbert_ldm+bbm", "anatomy_ldm")
SPREAD_KINDS = ("none", "std_over_seeds", "std_over_samples", "std_over_classes", "bootstrap_ci")
AGGREGATES = ("macro", "micro", "weighted")
MS_CXR = ("atelectasis", "cardiomegaly", "consolidation", "edema", "lung opacity", "pleural effusion", "pneumonia",
          "pneumothorax")
VINDR_CXR = ("aortic enlargement", "atelectasis", "calcification", "cardiomegaly", "clavicle fracture", "consolidation",
             "edema", "emphysema", "enlarged pa", "ild", "infiltration", "lung cavity", "lung cyst", "lung opacity",
             "mediastinal shift", "nodule/mass", "other lesion", "pleural effusion", "pleural thickening",
             "pneumothorax", "pulmonary fibrosis", "rib fracture")
CHESTX_RAY14 = ("atelectasis", "cardiomegaly", "effusion", "infiltrate", "mass", "nodule", "pneumonia", "pneumothorax")
CATEGORIES = {"ms-cxr": MS_CXR, "vindr-cxr": VINDR_CXR, "chestx-ray14": CHESTX_RAY14}
_IOU_AT = re.compile(r"^iou@(0(\.\d+)?|1)$")


def known_metric(name: str) -> bool:
    """A metric column name of the samples table (`iou@t` for any t in [0, 1])."""
    return (name in METRIC_BASES and name != "iou") or bool(_IOU_AT.match(name))


def _number(text: str) -> float | None:
    text = str(text).strip()
    if text in ("", "nan"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_row(row: dict, where: str) -> None:
    for col in REQUIRED:
        if not str(row[col]).strip():
            raise BenchError(f"{where}: empty {col}")
    checks = (("protocol", PROTOCOLS), ("dataset", DATASETS), ("spread_kind", SPREAD_KINDS))
    for col, allowed in checks:
        if row[col] not in allowed:
            raise BenchError(f"{where}: unknown {col} {row[col]!r} (known: {', '.join(allowed)})")
    if row["method"] and row["method"] not in METHODS:
        raise BenchError(f"{where}: unknown method {row['method']!r} (known: {', '.join(METHODS)}, or empty)")
    cats = CATEGORIES[row["dataset"]] + AGGREGATES
    if row["category"] not in cats:
        raise BenchError(f"{where}: unknown category {row['category']!r} for {row['dataset']} "
                         f"(known: {', '.join(cats)})")
    if not known_metric(row["metric"]):
        raise BenchError(f"{where}: unknown metric {row['metric']!r} (known: "
                         f"{', '.join(m for m in METRIC_BASES if m != 'iou')}, iou@T)")
    if _number(row["value"]) is None:
        raise BenchError(f"{where}: value {row['value']!r} is not a number")
    kind = row["spread_kind"]
    needs = {"std_over_seeds": ("spread",), "std_over_samples": ("spread",), "std_over_classes": ("spread",),
             "bootstrap_ci": ("ci_low", "ci_high"), "none": ()}[kind]
    for col in needs:
        if _number(row[col]) is None:
            raise BenchError(f"{where}: spread_kind {kind} needs a number in {col}")
    if not str(row["source_url"]).startswith(("https://", "http://")):
        raise BenchError(f"{where}: source_url must be an http(s) address")


def read_reported_file(path: Path) -> pd.DataFrame:
    """One reported CSV, validated row by row; BenchError names the file, line and field at fault."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise BenchError(f"{path}: missing column {missing[0]!r} (columns: {', '.join(COLUMNS)})")
    extra = [c for c in table.columns if c not in COLUMNS]
    if extra:
        raise BenchError(f"{path}: unknown column {extra[0]!r} (columns: {', '.join(COLUMNS)})")
    for i, row in enumerate(table.to_dict("records")):
        _check_row(row, f"{path}, line {i + 2}")
    table = table[COLUMNS].copy()
    for col in ("value", "spread", "ci_low", "ci_high"):
        table[col] = [_number(v) for v in table[col]]
    return table


def load_reported(folder: Path) -> pd.DataFrame:
    """Every `*.csv` under `folder` (none is fine: an empty table); rows keep file order."""
    folder = Path(folder)
    if not folder.exists():
        return pd.DataFrame(columns=COLUMNS)
    if not folder.is_dir():
        raise BenchError(f"reported numbers folder {folder} is not a folder")
    tables = [read_reported_file(p) for p in sorted(folder.glob("*.csv"))]
    tables = [t for t in tables if not t.empty]
    if not tables:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(tables, ignore_index=True)
