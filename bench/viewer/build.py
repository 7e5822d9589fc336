"""`bench view`: one or more runs as a static HTML folder of every scored sample.

The folder opens from `file://` with no server and no network: `index.html` (rendered with Jinja2
from the package's templates), `view.css`, `view.js` (sorting and filtering, no libraries), one
JPEG overlay per run and sample under `img/`, and `view.json` (what was shown). It is built in a
temporary folder beside `--out` and renamed into place, so a failed build leaves nothing and an
earlier viewer stays whole until the new one replaces it.

Runs are read as `bench compare` reads them: their tables and heatmaps are checked against the
digests of their run.json (`allow_modified` reads them anyway, marked), runs on different sample
lists or under different protocols are refused, and the shown samples are those every run scored,
so the per-sample differences against the first run are paired. Overlays are cached under
BENCH_CACHE/view, keyed by the run's heatmap-set digest, the sample, the protocol's value policy
and the image file, so a rebuild makes none again; the cache is kept within BENCH_VIEW_CACHE_MB
(`overlay_cache.py`).

A mask sample's GT mask is outlined on its overlay in the ground-truth colour; GT points (a
points-only sample's ground truth) are drawn as circles of the protocol's
`point_radius`, the distance within which the map's peak scores a hit.

A box method's run shows its boxes rasterised as the map (the protocol's `boxes_to_heatmap`) with
the boxes drawn dashed; under a box protocol a heatmap method's cell also draws the boxes the
protocol's conversion made of its map.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from ..core import atomic
from ..core.cache import cache_root
from ..core.errors import BenchError, SampleError
from ..core.ground_truth import load_mask
from ..evaluation.box_scoring import heatmap_boxes
from ..evaluation.conversions import prediction_heatmap
from ..evaluation.protocols import LOWER_IS_BETTER, Protocol
from ..reporting.compare import LoadedRun, check_same_samples, load_run
from ..reporting.plots import BOX_COLOUR, PRED_BOX_COLOUR
from ..running import integrity
from ..running.box_files import box_set, read_prediction
from ..running.rundir import RunDir, file_name, record_backend, record_output
from .folder import build_folder, check_out
from .overlay_cache import cache_limit, prune
from .thumbnails import (
    THUMBNAIL,
    colour_stops,
    draw_outline,
    example_arrays,
    jpeg,
    mask_outline,
    overlay_rgb,
    stored_heatmap,
)

#: bump when the look of an overlay changes, so cached overlays are made again
STYLE = 2
MARKER = "view.json"
STATIC = ("view.css", "view.js")
#: a GT point's circle is the protocol's point_radius at thumbnail scale, never smaller than this (pixels)
POINT_MIN_RADIUS = 3.0


def cache_dir() -> Path:
    """Where overlays are cached: BENCH_CACHE/view [default: ~/.cache/cxr-grounding-bench/view]."""
    return cache_root() / "view"


@dataclass
class ViewResult:
    """What `build_view` wrote: the folder, the runs' labels, and how many samples and overlays (made anew)."""

    out: Path
    labels: list[str]
    samples: int
    overlays: int
    made: int
    pruned: int = 0  # overlays of other builds removed from the cache to keep it within its bound


def _load(roots: Sequence[Path], allow_modified: bool, warn: Callable[[str], None]) -> list[LoadedRun]:
    resolved = [Path(r).resolve() for r in roots]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise BenchError(f"run {roots[i]} is given twice; view distinct runs")
    runs = []
    for root in roots:
        if not Path(root).is_dir():
            raise BenchError(f"{root} is not a folder (give a run directory)")
        runs.append(load_run(Path(root), allow_modified, warn))
    if len({r.record.get("protocol_fingerprint") for r in runs}) > 1:
        names = ", ".join(f"{r.root} ({r.record['protocol']['name']})" for r in runs)
        raise BenchError(f"runs were scored under different protocols: {names}; re-score them with `bench score`")
    check_same_samples(runs, warn)
    for r in runs:
        if record_output(r.record) == "boxes":
            _check_boxes(r, allow_modified)
            continue
        if integrity.maps_folder(r.root, r.record) is None:
            raise BenchError(f"{r.root} has no heatmaps (no heatmaps/ folder, nor the folder its maps were scored "
                             "from); the viewer shows the maps, so view a run that kept them")
    return runs


def _check_boxes(run: LoadedRun, allow_modified: bool) -> None:
    """A box run's boxes/ against the digest its run.json records (refused, or marked modified)."""
    found = box_set(RunDir(run.root).boxes)
    if found is None:
        raise BenchError(f"{run.root} has no boxes/ folder; the viewer shows the boxes, so view a run that kept them")
    if found.digest != (integrity.recorded(run.record) or {}).get("boxes"):
        if not allow_modified:
            raise BenchError(f"{run.root}/boxes was changed after the run was written (the boxes' digest differs from "
                             "the one run.json records); use --allow-modified to read it anyway, marked as modified")
        run.modified.append("boxes/")


def _prediction(run: LoadedRun, rundir: RunDir, sample):
    """A box run's boxes for a sample (None for a heatmap run)."""
    if record_output(run.record) != "boxes":
        return None
    try:
        return read_prediction(rundir.boxes / f"{file_name(sample.sample_id)}.json", sample)
    except SampleError as exc:
        raise BenchError(str(exc)) from None


def _labels(runs: Sequence[LoadedRun]) -> list[str]:
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        names = [f"{r.name} ({r.root.name})" for r in runs]
    return [integrity.mark(n, r.modified) for n, r in zip(names, runs)]


def _boxes(row: pd.Series) -> list[list[float]]:
    """The boxes the protocol scored for a sample (`scored_boxes`, else `boxes`), [x, y, w, h] each."""
    for column in ("scored_boxes", "boxes"):
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            try:
                return [list(map(float, b)) for b in json.loads(value)]
            except (json.JSONDecodeError, TypeError, ValueError):
                raise BenchError(f"sample {row['sample_id']}: its {column} are not a JSON list of [x, y, w, h]") from None
    return []


def _overlay_key(run: LoadedRun, sample_id: str, image: Path | None, size: int) -> str:
    """The cache key of one overlay: everything that changes its pixels."""
    protocol = run.protocol
    backend = record_backend(run.record)
    maps = run.maps.digest if run.maps is not None else (integrity.recorded(run.record) or {}).get("heatmaps")
    if record_output(run.record) == "boxes":  # the boxes rasterised by the protocol's rule
        maps = f"{(integrity.recorded(run.record) or {}).get('boxes')}|{protocol.boxes_to_heatmap}"
    stat = ""
    if image is not None and image.is_file():
        st = image.stat()
        stat = f"{image.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    text = json.dumps([STYLE, size, maps, str(run.root.resolve()) if maps is None else "", file_name(sample_id),
                       protocol.interpolation, str(protocol.value_policy(backend)),
                       run.record.get("dataset_fingerprint"), stat])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _dataset(run: LoadedRun):
    from ..datasets import get_dataset

    config = (run.record.get("config") or {}).get("dataset") or {}
    try:
        return get_dataset(config.get("name") or run.record["dataset"], config.get("data_root"), config.get("options"),
                           bool(config.get("allow_outside_root")))
    except KeyError:
        raise BenchError(f"{run.root}/run.json names no dataset") from None


def _number(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def build_view(roots: Sequence[Path], out: Path, allow_modified: bool = False,
               warn: Callable[[str], None] = integrity.stderr_warning, size: int = THUMBNAIL,
               cache: Path | None = None, workers: int | None = None) -> ViewResult:
    """Write the viewer of the runs in `roots` to the folder `out` (replacing an earlier viewer there).

    BenchError (nothing written) for a folder that is not a finished run, a run without its maps,
    runs on different sample lists or protocols, a table or map set that differs from its digests
    (unless `allow_modified`), a sample whose map or image cannot be read, or an `out` that holds
    anything but an earlier viewer.
    """
    import jinja2

    if not roots:
        raise BenchError("view needs at least one run directory")
    out = Path(out)
    check_out(out, MARKER)
    limit = cache_limit()
    runs = _load(roots, allow_modified, warn)
    labels = _labels(runs)
    protocol: Protocol = runs[0].protocol
    metrics = [c for c in protocol.columns if all(c in r.samples.columns for r in runs)]
    common = set(runs[0].samples["sample_id"])
    for r in runs[1:]:
        common &= set(r.samples["sample_id"])
    if not common:
        raise BenchError("the runs share no sample")
    tables = [r.samples.set_index("sample_id") for r in runs]
    order = sorted(common)
    rundirs = [RunDir(r.root) for r in runs]
    for r, rd in zip(runs, rundirs):
        missing = [s for s in order if not _has_map(rd, r.record, s)]
        if missing:
            raise BenchError(f"{r.root} has no heatmap for {len(missing)} of its {len(order)} samples (first: "
                             f"{missing[0]}); the viewer shows every sample's map")
    dataset = _dataset(runs[0])
    by_id = {s.sample_id: s for s in dataset.samples() if s.sample_id in common}
    if hasattr(dataset, "materialise"):  # images drawn on demand (phantom): drawn now, so their files key the cache
        dataset.materialise(list(by_id.values()))
    if len(by_id) != len(common):
        lost = sorted(common - set(by_id))[0]
        raise BenchError(f"sample {lost} of {runs[0].root} is not in dataset {dataset.name} as it is now")
    cache = Path(cache) if cache is not None else cache_dir()
    keys = {(k, s): _overlay_key(r, s, Path(by_id[s].image_path), size) for k, r in enumerate(runs) for s in order}

    made = 0
    boxes_of = {s: _boxes(tables[0].loc[s]) for s in order}
    shapes: dict[str, tuple[int, int]] = {}

    def one(sample_id: str) -> int:
        sample = by_id[sample_id]
        scale = min(1.0, size / max(sample.height, sample.width))
        shapes[sample_id] = (max(1, int(round(sample.height * scale))), max(1, int(round(sample.width * scale))))
        todo = [k for k in range(len(runs)) if not (cache / f"{keys[k, sample_id]}.jpg").is_file()]
        if not todo:
            return 0
        try:
            image = dataset.load_image(sample)
        except (SampleError, OSError) as exc:
            raise BenchError(f"cannot read the image of sample {sample_id}: {exc}") from None
        outline = None
        if sample.gt_kind == "mask":
            try:
                outline = mask_outline(load_mask(sample.mask, sample.height, sample.width, sample_id), size)
            except SampleError as exc:
                raise BenchError(f"cannot read the mask of sample {sample_id}: {exc}") from None
        for k in todo:
            pred = _prediction(runs[k], rundirs[k], sample)
            heatmap = (stored_heatmap(rundirs[k], runs[k].record, sample_id) if pred is None else
                       prediction_heatmap(pred, sample.height, sample.width, runs[k].protocol.boxes_to_heatmap))
            arrays = example_arrays(image, heatmap, boxes_of[sample_id], runs[k].protocol,
                                    record_backend(runs[k].record), size)
            rgb = overlay_rgb(arrays["image"], arrays["heatmap"])
            if outline is not None:
                rgb = draw_outline(rgb, outline, BOX_COLOUR)
            atomic.write_bytes(cache / f"{keys[k, sample_id]}.jpg", jpeg(rgb, full_colour=outline is not None))
        return len(todo)

    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        made = sum(pool.map(one, order))

    rows: list[dict] = []

    def predicted(k: int, sample) -> list:
        """The boxes drawn dashed in run k's cell: a box run's own, or under a box protocol those converted from the map."""
        pred = _prediction(runs[k], rundirs[k], sample)
        if pred is None and protocol.scores_boxes:
            heatmap = stored_heatmap(rundirs[k], runs[k].record, sample.sample_id)
            pred = heatmap_boxes(heatmap, runs[k].protocol, record_backend(runs[k].record))
        return [] if pred is None else [list(b) for b in pred.boxes]

    def fill(tmp: Path) -> None:
        for s in order:
            sample = by_id[s]
            h, w = shapes[s]
            scale = w / sample.width
            first = tables[0].loc[s]
            cells = []
            for k, t in enumerate(tables):
                name = f"img/{k}/{file_name(s)}.jpg"
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                _link_or_copy(cache / f"{keys[k, s]}.jpg", target)
                values = [_number(t.at[s, m]) for m in metrics]
                diffs = None
                if k:
                    ref = [_number(tables[0].at[s, m]) for m in metrics]
                    diffs = [None if a is None or b is None else a - b for a, b in zip(values, ref)]
                pred = [[round(x * scale, 2), round(y * scale, 2), round(bw * scale, 2), round(bh * scale, 2)]
                        for x, y, bw, bh in predicted(k, sample)]
                cells.append({"img": name, "values": [(v, _fmt(v)) for v in values], "pred": pred,
                              "diffs": [(d, _fmt(d, True)) for d in diffs] if diffs is not None else None})
            rows.append({"id": s, "category": str(first["category"]), "phrase": str(first["phrase"]),
                         "width": w, "height": h,
                         "boxes": [[round(x * scale, 2), round(y * scale, 2), round(bw * scale, 2), round(bh * scale, 2)]
                                   for x, y, bw, bh in boxes_of[s]],
                         "points": [[round(x * scale, 2), round(y * scale, 2)] for x, y in sample.points],
                         "point_r": round(max(POINT_MIN_RADIUS, protocol.point_radius * scale), 2),
                         "runs": cells})
        categories = sorted({r["category"] for r in rows})
        summaries = []
        for k, (r, label) in enumerate(zip(runs, labels)):
            means = [_number(pd.to_numeric(tables[k].loc[order, m], errors="coerce").mean()) for m in metrics]
            diff = None
            if k:
                diff = [None if a is None or b is None else a - b for a, b in zip(means, summaries[0]["means_raw"])]
            summaries.append({"label": label, "root": str(r.root), "method": r.name,
                              "means_raw": means, "means": [_fmt(v) for v in means],
                              "diffs": [_fmt(d, True) for d in diff] if diff is not None else None})
        env = jinja2.Environment(loader=jinja2.PackageLoader("bench.viewer", "templates"),
                                 autoescape=jinja2.select_autoescape(["html", "j2"]), keep_trailing_newline=True,
                                 undefined=jinja2.StrictUndefined)
        page = env.get_template("index.html.j2").render(
            runs=summaries, metrics=metrics, lower=[m in LOWER_IS_BETTER for m in metrics], rows=rows,
            categories=categories, protocol=protocol.name, dataset=runs[0].record.get("dataset"),
            stops=colour_stops(), box_colour=BOX_COLOUR, pred_colour=PRED_BOX_COLOUR, n=len(rows),
            any_pred=any(c["pred"] for r in rows for c in r["runs"]), any_points=any(r["points"] for r in rows),
            any_masks=any(by_id[r["id"]].gt_kind == "mask" for r in rows),
            point_radius=protocol.point_radius)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        for name in STATIC:
            (tmp / name).write_bytes(resources.files("bench.viewer").joinpath("templates", name).read_bytes())
        record = {"runs": [{"label": s["label"], "root": s["root"]} for s in summaries], "protocol": protocol.name,
                  "dataset_fingerprint": runs[0].record.get("dataset_fingerprint"), "samples": len(rows),
                  "metrics": metrics}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    build_folder(out, MARKER, fill)
    pruned = prune(cache, {f"{key}.jpg" for key in keys.values()}, limit)
    return ViewResult(out, labels, len(order), len(order) * len(runs), made, pruned)


def _has_map(run: RunDir, record: dict, sample_id: str) -> bool:
    """Whether `stored_heatmap` finds the sample's map (the run's heatmaps/, or the folder it scored), or a box
    run its boxes."""
    if record_output(record) == "boxes":
        return run.prediction_path(sample_id, "boxes").is_file()
    if run.heatmap_path(sample_id).is_file():
        return True
    scored = record.get("heatmaps")
    return isinstance(scored, str) and bool(scored) and any(
        (Path(scored) / f"{file_name(sample_id)}{suffix}").is_file() for suffix in integrity.MAP_SUFFIXES)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
