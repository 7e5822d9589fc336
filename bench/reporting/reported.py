"""Published numbers: the papers' result tables, as CSV files under `reported/`.

Each row is one number a paper printed: the cell text as printed, the number on the harness's
scale, and where in the paper it stands. Reported numbers are never mixed with measured ones:
they were computed by other code on other sample sets, under the protocol the row names, and are
shown in their own table of a leaderboard. Rows marked `headline` are the papers' main tables, the
numbers the reproduction page sets against measured runs.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from pathlib import Path

import pandas as pd

from ..core.errors import BenchError
from ..evaluation.protocols import METRIC_BASES, protocol_names
from ..methods.specs import method_names

COLUMNS = ["paper", "table", "dataset", "protocol", "method_reported", "method", "category", "metric", "value",
           "printed", "spread_kind", "spread", "ci_low", "ci_high", "source", "note", "headline", "split"]
#: columns a file may leave out (read as empty)
OPTIONAL = ("headline", "split")
#: the file of the split manifests, beside the reported CSVs
SPLITS_FILE = "splits.toml"
#: the largest manifest read (bytes): a few thousand sample ids
MANIFEST_LIMIT = 1 << 20
REQUIRED = ("paper", "table", "dataset", "protocol", "method_reported", "category", "metric", "value", "printed",
            "spread_kind", "source")

#: the protocols a reported number can be attached to: every protocols/NAME.toml
PROTOCOLS = tuple(protocol_names())
SPREAD_KINDS = ("none", "std_over_seeds", "std_over_trainings", "std_over_samples", "std_over_classes",
                "bootstrap_ci")
AGGREGATES = ("macro", "micro", "weighted")
HEADLINE = ("yes", "")
MS_CXR = ("atelectasis", "cardiomegaly", "consolidation", "edema", "lung opacity", "pleural effusion", "pneumonia",
          "pneumothorax")
#: the VinDr-CXR local labels, and `pneumonia` (a global label Vilouras et al. 2025 ground with its boxes)
VINDR_CXR = ("aortic enlargement", "atelectasis", "calcification", "cardiomegaly", "clavicle fracture", "consolidation",
             "edema", "emphysema", "enlarged pa", "ild", "infiltration", "lung cavity", "lung cyst", "lung opacity",
             "mediastinal shift", "nodule/mass", "other lesion", "pleural effusion", "pleural thickening",
             "pneumonia", "pneumothorax", "pulmonary fibrosis", "rib fracture")
CHESTX_RAY14 = ("atelectasis", "cardiomegaly", "effusion", "infiltrate", "mass", "nodule", "pneumonia", "pneumothorax")
CATEGORIES = {"ms-cxr": MS_CXR, "ms-cxr-loc": MS_CXR, "vindr-cxr": VINDR_CXR, "chestx-ray14": CHESTX_RAY14}
DATASETS = tuple(CATEGORIES)
#: metrics on a [0, 1] scale: a paper may print them in percent (`printed` = 100 x `value`)
#: the box metrics of box-producing methods (per sample: top-ranked box IoU against the GT union box or the
#: best-matching GT box, its hit at IoU 0.5, COCO AP, RadFact's box precision / recall / containment, ChEX's
#: dataset-pooled IoU), all on [0, 1]
BOX_METRICS = ("top1_iou_union", "top1_iou_best", "acc@0.5", "ap@0.5", "ap@[.5:.95]", "box_precision", "box_recall",
               "box_contained", "pooled_iou")
FRACTIONS = ("miou", "auc_roc", "auc_roc_binned", "pointing_game", "iou_fg", "miou_fgbg", "bbox_iou_fg",
             "bbox_miou_fgbg", *BOX_METRICS)
_IOU_AT = re.compile(r"^(iou|dice)@(0(\.\d+)?|1)$")
_NUM = r"[+\-\u2212]?(?:\d+\.?\d*|\.\d+)"
#: a printed cell: a number, optionally `± s` or an interval `[lo, hi]` / `(lo, hi)`; `%` signs allowed
_PRINTED = re.compile(rf"^\s*(?P<v>{_NUM})\s*%?\s*(?:(?:±|\+/-|\+-)\s*(?P<s>{_NUM})\s*%?"
                      rf"|[\[(]\s*(?P<lo>{_NUM})\s*%?\s*[,;\u2013]\s*(?P<hi>{_NUM})\s*%?\s*[\])])?\s*$")
#: a citation: an arXiv id or a DOI, then where in the paper (`arXiv:2404.12920, Table II`)
_SOURCE = re.compile(r"^(?:arXiv:\d{4}\.\d{4,5}(?:v\d+)?|(?:doi|DOI):\s?10\.\d{4,9}/[^\s,;]+)[,;]?\s+\S.*$")


def known_metric(name: str) -> bool:
    """A metric column name of the samples table (`iou@t`, `dice@t` for any t in [0, 1])."""
    return (name in METRIC_BASES and name not in ("iou", "dice")) or name in BOX_METRICS or bool(_IOU_AT.match(name))


def known_method(name: str) -> bool:
    """A harness method name (an adapter spec, or `<ldm method>+bbm`)."""
    return name in method_names()


def percent_allowed(metric: str) -> bool:
    """Whether a paper may print `metric` in percent: the [0, 1] metrics."""
    return metric in FRACTIONS or bool(_IOU_AT.match(metric))


def _number(text: str) -> float | None:
    text = str(text).strip().replace("\u2212", "-")
    if text in ("", "nan"):
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_printed(text: str) -> dict[str, float] | None:
    """The numbers of a printed cell: `v`, and `s` (after ±) or `lo`, `hi` (an interval); None if unreadable."""
    m = _PRINTED.match(str(text))
    if m is None:
        return None
    return {k: _number(v) for k, v in m.groupdict().items() if v is not None}


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _check_printed(row: dict, where: str) -> None:
    """`printed` must read as `value` (times 100 for a [0, 1] metric printed in percent), and a spread it
    prints must be the row's spread or interval on the same scale."""
    parsed = parse_printed(row["printed"])
    if parsed is None:
        raise BenchError(f"{where}: printed {row['printed']!r} is not a number (optionally with ± s or [lo, hi])")
    value = _number(row["value"])
    scales = (1.0, 100.0) if percent_allowed(row["metric"]) else (1.0,)
    scale = next((s for s in scales if _same(parsed["v"], value * s)), None)
    if scale is None:
        allowed = " or 100 x value (percent)" if len(scales) > 1 else ""
        raise BenchError(f"{where}: value {row['value']} does not match printed {row['printed']!r} "
                         f"(printed must read as value{allowed})")
    kind = row["spread_kind"]
    if "s" in parsed:
        if not kind.startswith("std_"):
            raise BenchError(f"{where}: printed {row['printed']!r} has a ± spread but spread_kind is {kind}")
        if not _same(parsed["s"], _number(row["spread"]) * scale):
            raise BenchError(f"{where}: spread {row['spread']} does not match printed {row['printed']!r}")
    if "lo" in parsed:
        if kind != "bootstrap_ci":
            raise BenchError(f"{where}: printed {row['printed']!r} has an interval but spread_kind is {kind}")
        for col, key in (("ci_low", "lo"), ("ci_high", "hi")):
            if not _same(parsed[key], _number(row[col]) * scale):
                raise BenchError(f"{where}: {col} {row[col]} does not match printed {row['printed']!r}")


def load_splits(folder: Path) -> dict[str, dict]:
    """The split manifests `folder/splits.toml` declares (none: an empty mapping), each checked.

    An entry names a sample set a paper scored that is not a protocol's whole dataset: `dataset`,
    `what` (how the paper built it) and `source`, then either `file` (a manifest beside the table,
    one harness sample id a line), its `sha256` and its number of `samples`, or `why` its ids
    cannot be known. BenchError names the entry at fault.
    """
    path = Path(folder) / SPLITS_FILE
    if not path.exists():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"{path}: not a readable TOML file ({exc})") from None
    for name, entry in raw.items():
        where = f"{path}, [{name}]"
        if not isinstance(entry, dict):
            raise BenchError(f"{where}: must be a table")
        for key in ("dataset", "what", "source"):
            if not str(entry.get(key, "")).strip():
                raise BenchError(f"{where}: empty {key}")
        if entry["dataset"] not in DATASETS:
            raise BenchError(f"{where}: unknown dataset {entry['dataset']!r} (known: {', '.join(DATASETS)})")
        if "file" not in entry:
            if not str(entry.get("why", "")).strip():
                raise BenchError(f"{where}: needs file, sha256 and samples, or why its sample ids cannot be known")
            continue
        _check_manifest(Path(folder), entry, where)
    return raw


def _check_manifest(folder: Path, entry: dict, where: str) -> None:
    """The manifest file is inside `folder`, bounded, has the recorded sha256, and holds `samples` distinct ids."""
    file = (folder / str(entry["file"])).resolve()
    if folder.resolve() not in file.parents:
        raise BenchError(f"{where}: file {entry['file']!r} is not inside {folder}")
    if not file.is_file():
        raise BenchError(f"{where}: manifest {file} does not exist")
    if file.stat().st_size > MANIFEST_LIMIT:
        raise BenchError(f"{where}: manifest {file} is over {MANIFEST_LIMIT} bytes")
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        raise BenchError(f"{where}: manifest {file} has sha256 {digest}, the entry records {entry.get('sha256')!r}")
    ids = data.decode("utf-8").splitlines()
    if any(not i.strip() or i != i.strip() for i in ids) or len(set(ids)) != len(ids):
        raise BenchError(f"{where}: manifest {file} must hold one distinct sample id a line, no blank lines")
    if len(ids) != entry.get("samples"):
        raise BenchError(f"{where}: manifest {file} holds {len(ids)} sample ids, the entry says {entry.get('samples')}")


def _check_row(row: dict, where: str, splits: dict | None = None) -> None:
    for col in REQUIRED:
        if not str(row[col]).strip():
            raise BenchError(f"{where}: empty {col}")
    checks = (("protocol", PROTOCOLS), ("dataset", DATASETS), ("spread_kind", SPREAD_KINDS))
    for col, allowed in checks:
        if row[col] not in allowed:
            raise BenchError(f"{where}: unknown {col} {row[col]!r} (known: {', '.join(allowed)})")
    if row["method"] and not known_method(row["method"]):
        raise BenchError(f"{where}: unknown method {row['method']!r} (known: {', '.join(method_names())}, or empty)")
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
    needs = {"bootstrap_ci": ("ci_low", "ci_high"), "none": ()}.get(kind, ("spread",))
    for col in needs:
        if _number(row[col]) is None:
            raise BenchError(f"{where}: spread_kind {kind} needs a number in {col}")
    _check_printed(row, where)
    if not _SOURCE.match(str(row["source"])):
        raise BenchError(f"{where}: source {row['source']!r} is not a citation "
                         "(an arXiv id or DOI, then where in the paper: 'arXiv:2404.12920, Table II')")
    if row["headline"] not in HEADLINE:
        raise BenchError(f"{where}: headline {row['headline']!r} must be 'yes' or empty")
    split = row.get("split", "")
    if split:
        known = splits or {}
        if split not in known:
            raise BenchError(f"{where}: unknown split {split!r} (declared in {SPLITS_FILE}: "
                             f"{', '.join(known) or 'none'})")
        if known[split]["dataset"] != row["dataset"]:
            raise BenchError(f"{where}: split {split!r} is of {known[split]['dataset']}, the row of {row['dataset']}")


def read_reported_file(path: Path) -> pd.DataFrame:
    """One reported CSV, validated row by row; BenchError names the file, line and field at fault."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not a readable CSV ({str(exc).splitlines()[0] if str(exc) else exc})") from None
    missing = [c for c in COLUMNS if c not in table.columns and c not in OPTIONAL]
    if missing:
        raise BenchError(f"{path}: missing column {missing[0]!r} (columns: {', '.join(COLUMNS)})")
    extra = [c for c in table.columns if c not in COLUMNS]
    if extra:
        raise BenchError(f"{path}: unknown column {extra[0]!r} (columns: {', '.join(COLUMNS)})")
    for col in OPTIONAL:
        if col not in table.columns:
            table[col] = ""
    splits = load_splits(path.parent) if "split" in table.columns and any(table["split"]) else {}
    for i, row in enumerate(table.to_dict("records")):
        _check_row(row, f"{path}, line {i + 2}", splits)
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
