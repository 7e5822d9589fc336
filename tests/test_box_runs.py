"""Box methods end to end on the phantom: run, store, score under heatmap and box protocols, re-score,
bring-your-own --boxes files, and one leaderboard page with heatmap and box methods."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_PHANTOM

from bench.core.geometry import Geometry, box_mask
from bench.core.heatmap import Heatmap
from bench.evaluation.protocols import load_protocol
from bench.methods.base import Method
from bench.methods.oracle_box import jitter_iou


def _run(bench_cli, method: str, protocol: str, out: Path, *extra: str) -> Path:
    r = bench_cli("run", "-m", method, "-d", "phantom", "-p", protocol, *SMALL_PHANTOM, "--out", out, *extra)
    assert r.code == 0, r.err
    return out


def _micro(run: Path, metric: str) -> float:
    summary = pd.read_csv(run / "summary.csv")
    return float(summary[(summary["group"] == "micro") & (summary["metric"] == metric)]["mean"].iloc[0])


def test_existing_protocol_fingerprints_unchanged() -> None:
    # the conversion fields are hashed only when set away from their defaults: no stored run moves
    want = {"default": "a0de84694101cc82", "dombrowski2024": "f02449fcba0420f4",
            "dombrowski2024_filtered": "914c13fc267fab5b", "nutzel2025": "decb8a2b7d56eba9",
            "vilouras2024": "523a463eab49a363", "vilouras2025": "eafee03be7f2f3b3"}
    assert {name: load_protocol(name).fingerprint() for name in want} == want


def test_jitter_iou_by_hand() -> None:
    assert jitter_iou(0.1) == pytest.approx(0.81 / 1.19)
    assert jitter_iou(0.25) == pytest.approx(0.5625 / 1.4375)
    assert jitter_iou(0.0) == 1.0


@pytest.mark.parametrize("jitter,acc", [(0.1, 1.0), (0.25, 0.0)])
def test_oracle_box_acc_at_half_is_known_by_hand(bench_cli, tmp_path: Path, jitter: float, acc: float) -> None:
    run = _run(bench_cli, "oracle_box", "boxes", tmp_path / "r", "--set", f"jitter={jitter}")
    table = pd.read_csv(run / "samples.csv")
    assert len(table) == 16
    # the phantom's boxes lie inside their images after the move: no clipping, the IoU is exact
    assert table["top1_iou_best"].to_numpy() == pytest.approx(jitter_iou(jitter))
    assert (table["acc@0.5"] == acc).all()
    assert _micro(run, "acc@0.5") == acc
    # AP over 0.5:0.95 counts the thresholds the IoU passes: 0.681 passes 0.50 ... 0.65
    if jitter == 0.1:
        single = table[table["boxes"].map(lambda b: len(json.loads(b)) == 1)]
        assert single["ap@[.5:.95]"].to_numpy() == pytest.approx(0.4)


def test_box_run_stores_its_boxes_losslessly_and_digests_them(bench_cli, tmp_path: Path) -> None:
    run = _run(bench_cli, "oracle_box", "default", tmp_path / "r")
    files = sorted((run / "boxes").glob("*.json"))
    assert len(files) == 16 and not (run / "heatmaps").exists()
    record = json.loads(files[0].read_text())
    assert set(record) == {"sample_id", "boxes", "scores", "failure"}
    from bench.datasets import get_dataset
    from bench.methods import RunContext, backend_class
    from bench.methods.specs import load_method_spec

    ds = get_dataset("phantom", None, {"n_test": "16", "n_train": "16"})
    sample = next(s for s in ds.samples() if s.sample_id == record["sample_id"])
    pred = backend_class("oracle_box")(load_method_spec("oracle_box"), RunContext()).boxes([sample], ds)[0]
    assert [tuple(b) for b in record["boxes"]] == list(pred.boxes)  # floats round-trip exactly
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["digests"]["box_files"] == 16 and len(run_json["digests"]["boxes"]) == 64
    # a resumed run changes nothing
    before = {p.name: p.read_bytes() for p in files}
    _run(bench_cli, "oracle_box", "default", run)
    assert {p.name: p.read_bytes() for p in sorted((run / "boxes").glob("*.json"))} == before
    # a heatmap run's digests keep their old fields only
    heat = _run(bench_cli, "uniform", "default", tmp_path / "u")
    assert "boxes" not in json.loads((heat / "run.json").read_text())["digests"]


def test_pooled_iou_summary_is_the_pooled_ratio(bench_cli, tmp_path: Path) -> None:
    run = _run(bench_cli, "box_prior", "boxes", tmp_path / "r")
    table = pd.read_csv(run / "samples.csv")
    assert _micro(run, "pooled_iou") == pytest.approx(table["pooled_inter"].sum() / table["pooled_union"].sum())
    assert _micro(run, "pooled_iou") != pytest.approx(table["pooled_iou"].mean())


def test_three_kinds_under_default_and_box_protocol_on_one_page(bench_cli, tmp_path: Path) -> None:
    results, boards = tmp_path / "results", tmp_path / "boards"
    for method in ("oracle_gaussian", "oracle_box", "box_prior"):
        for protocol in ("default", "boxes"):
            run = _run(bench_cli, method, protocol, tmp_path / f"{method}.{protocol}")
            r = bench_cli("leaderboard", "--add", run, "--results", results, "--out", boards)
            assert r.code == 0, r.err
    for protocol in ("default", "boxes"):
        page = (boards / f"phantom__n_test-16__n_train-16__{protocol}.md").read_text()
        for method in ("oracle_gaussian", "oracle_box", "box_prior"):
            assert f"| {method} |" in page
    default = (boards / "phantom__n_test-16__n_train-16__default.md").read_text()
    assert "| miou [boxes -> map: max_score] (rank) |" in default
    assert "rank together: the box methods' boxes (`oracle_box`) are scored through" in default
    assert "**oracle_box**: sample `phantom-test-00000`" in default and "predicted boxes dashed in blue" in default
    boxes = (boards / "phantom__n_test-16__n_train-16__boxes.md").read_text()
    assert "| acc@0.5 [maps -> boxes: otsu mask, components, max score] (rank) |" in boxes
    assert (boards / "phantom__n_test-16__n_train-16__default" / "example-oracle_box.png").is_file()
    from bench.leaderboard.results import read_example

    ex = read_example(results / "phantom__n_test-16__n_train-16" / "default" / "oracle_box" / "example.npz")
    assert ex["pred_boxes"] is not None and len(ex["pred_boxes"]) == len(ex["boxes"])
    heat = read_example(results / "phantom__n_test-16__n_train-16" / "default" / "oracle_gaussian" / "example.npz")
    assert heat["pred_boxes"] is None  # a heatmap method under a heatmap protocol: its example as before
    assert _micro(tmp_path / "oracle_gaussian.boxes", "acc@0.5") == 1.0
    assert _micro(tmp_path / "oracle_box.default", "miou") > 0.6


def test_score_boxes_of_a_run_and_of_a_jsonl_file_agree_with_the_run(bench_cli, tmp_path: Path) -> None:
    run = _run(bench_cli, "oracle_box", "boxes", tmp_path / "r")
    lines = [p.read_text().strip() for p in sorted((run / "boxes").glob("*.json"))]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    r = bench_cli("score", "--boxes", jsonl, "-d", "phantom", *SMALL_PHANTOM, "-p", "boxes", "--out", tmp_path / "s")
    assert r.code == 0, r.err
    ours = pd.read_csv(tmp_path / "s" / "samples.csv")
    theirs = pd.read_csv(run / "samples.csv")
    pd.testing.assert_frame_equal(ours, theirs)
    assert json.loads((tmp_path / "s" / "run.json").read_text())["method"] == "external"
    # the run's own folder keeps the run's name; under default, its boxes become maps
    r = bench_cli("score", "--boxes", run, "-d", "phantom", *SMALL_PHANTOM, "-p", "default", "--out", tmp_path / "d")
    assert r.code == 0, r.err
    assert json.loads((tmp_path / "d" / "run.json").read_text())["method"] == "oracle_box"
    direct = _run(bench_cli, "oracle_box", "default", tmp_path / "direct")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "d" / "samples.csv"), pd.read_csv(direct / "samples.csv"))


@pytest.fixture
def good_lines(bench_cli, tmp_path: Path) -> list[dict]:
    run = _run(bench_cli, "oracle_box", "boxes", tmp_path / "src")
    return [json.loads(p.read_text()) for p in sorted((run / "boxes").glob("*.json"))]


@pytest.mark.parametrize("case,expect", [
    ("malformed", "line 3: not valid JSON"),
    ("not_a_box", "line 3: sample phantom-test-"),
    ("negative_width", "has zero or negative width or height"),
    ("outside", "lies outside the"),
    ("unknown_id", "line 3: unknown sample id 'no-such-sample'"),
    ("twice", "is given a second time"),
    ("missing", "no line for sample"),
])
def test_bad_boxes_file_is_one_line_and_nothing_written(bench_cli, tmp_path: Path, good_lines: list[dict],
                                                        case: str, expect: str) -> None:
    lines = [json.dumps(d) for d in good_lines]
    bad = dict(good_lines[2])
    if case == "malformed":
        lines[2] = lines[2][:25]
    elif case == "not_a_box":
        lines[2] = json.dumps({**bad, "boxes": [[1, 2, 3]]})
    elif case == "negative_width":
        lines[2] = json.dumps({**bad, "boxes": [[10, 10, -4, 10]]})
    elif case == "outside":
        lines[2] = json.dumps({**bad, "boxes": [[10, 10, 5000, 10]]})
    elif case == "unknown_id":
        lines[2] = json.dumps({**bad, "sample_id": "no-such-sample"})
    elif case == "twice":
        lines.append(lines[2])
    elif case == "missing":
        del lines[2]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    r = bench_cli("score", "--boxes", path, "-d", "phantom", *SMALL_PHANTOM, "-p", "boxes", "--out", out)
    assert r.code != 0
    assert r.err.count("\n") == 1 and r.err.startswith("error: ") and expect in r.err, r.err
    assert "Traceback" not in r.err
    assert not out.exists()


def test_score_needs_one_of_heatmaps_and_boxes(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("score", "-d", "phantom", "--out", tmp_path / "o")
    assert r.code != 0 and "give one of --heatmaps DIR and --boxes FILE" in r.err


def test_edited_boxes_are_refused_when_rescored(bench_cli, tmp_path: Path) -> None:
    run = _run(bench_cli, "oracle_box", "default", tmp_path / "r")
    victim = sorted((run / "boxes").glob("*.json"))[0]
    record = json.loads(victim.read_text())
    record["boxes"][0][0] += 1.0
    victim.write_text(json.dumps(record))
    r = bench_cli("compare", "--protocols", "default,boxes", run, "--out", tmp_path / "c")
    assert r.code != 0 and "boxes' digest differs" in r.err
    r = bench_cli("score", "--boxes", run, "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "s")
    assert r.code != 0 and "--name NAME" in r.err


def test_compare_protocols_ranks_box_and_heatmap_methods(bench_cli, tmp_path: Path) -> None:
    runs = [_run(bench_cli, m, "default", tmp_path / m) for m in ("oracle_box", "box_prior")]
    r = bench_cli("compare", "--protocols", "default,boxes", *runs, "--out", tmp_path / "c")
    assert r.code == 0, r.err
    table = pd.read_csv(tmp_path / "c" / "sensitivity.csv")
    acc = table[(table["metric"] == "acc@0.5") & (table["group"] == "macro")].set_index("run")
    assert acc.loc["oracle_box", "mean"] == 1.0 and acc.loc["oracle_box", "rank"] == 1


def test_output_kinds_checked_in_one_line(bench_cli, tmp_path: Path) -> None:
    spec = tmp_path / "adapters" / "gauss_boxes.toml"
    spec.parent.mkdir()
    spec.write_text('name = "gauss_boxes"\nbackend = "oracle_gaussian"\ndescription = "x"\noutput = "boxes"\n')
    r = bench_cli("run", "-m", spec, "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "o")
    assert r.code != 0 and "output = 'boxes', but backend OracleGaussian implements no boxes()" in r.err
    spec.write_text('name = "gauss_boxes"\nbackend = "oracle_gaussian"\ndescription = "x"\noutput = "polygons"\n')
    r = bench_cli("run", "-m", spec, "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "o")
    assert r.code != 0 and "output = 'polygons' is not one of heatmap, boxes, mask" in r.err
    assert not (tmp_path / "o").exists()


def test_view_draws_predicted_boxes_beside_maps(bench_cli, tmp_path: Path) -> None:
    box_run = _run(bench_cli, "oracle_box", "default", tmp_path / "b")
    heat_run = _run(bench_cli, "oracle_gaussian", "default", tmp_path / "h")
    r = bench_cli("view", box_run, heat_run, "--out", tmp_path / "v")
    assert r.code == 0, r.err
    page = (tmp_path / "v" / "index.html").read_text()
    n_boxes = sum(len(json.loads(p.read_text())["boxes"]) for p in (box_run / "boxes").glob("*.json"))
    assert page.count('stroke-dasharray="4 2"') == n_boxes  # the box run's boxes; the heatmap run draws none
    assert "predicted boxes (a box method's own" in page
    assert len(list((tmp_path / "v" / "img" / "0").glob("*.jpg"))) == 16
    # under the box protocol the heatmap method's cells draw the boxes its map was converted to
    boxes_run = _run(bench_cli, "oracle_gaussian", "boxes", tmp_path / "hb")
    r = bench_cli("view", boxes_run, "--out", tmp_path / "v2")
    assert r.code == 0, r.err
    assert (tmp_path / "v2" / "index.html").read_text().count('stroke-dasharray="4 2"') >= 16
    victim = sorted((box_run / "boxes").glob("*.json"))[0]
    victim.write_text(victim.read_text().replace('"failure": null', '"failure": null '))
    r = bench_cli("view", box_run, "--out", tmp_path / "v3")
    assert r.code != 0 and "boxes' digest differs" in r.err and not (tmp_path / "v3").exists()


class OracleMask(Method):
    """A test mask method: the phrase's GT box mask on the whole image."""

    known_params: dict = {}

    def masks(self, samples, dataset):
        return [Heatmap(box_mask(s.boxes, s.height, s.width).astype(np.float32), Geometry.whole(s.height, s.width))
                for s in samples]


class BadMask(OracleMask):
    def masks(self, samples, dataset):
        return [Heatmap(np.full((4, 4), 0.5, np.float32), Geometry.whole(s.height, s.width)) for s in samples]


def test_a_mask_method_is_stored_as_a_map_and_scored_under_both_families(bench_cli, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.methods import BACKENDS

    monkeypatch.setitem(BACKENDS, "test_mask", "test_box_runs:OracleMask")
    monkeypatch.setitem(BACKENDS, "test_bad_mask", "test_box_runs:BadMask")
    spec = tmp_path / "oracle_mask.toml"
    spec.write_text('name = "oracle_mask"\nbackend = "test_mask"\ndescription = "x"\noutput = "mask"\n')
    heat = _run(bench_cli, spec, "default", tmp_path / "d")
    assert len(list((heat / "heatmaps").glob("*.npz"))) == 16
    assert json.loads((heat / "run.json").read_text())["output"] == "mask"
    table = pd.read_csv(heat / "samples.csv")
    assert (table["miou"] == 1.0).all() and (table["pointing_game"] == 1.0).all()
    boxes = _run(bench_cli, spec, "boxes", tmp_path / "b")
    table = pd.read_csv(boxes / "samples.csv")
    assert (table["box_recall"] == 1.0).all() and (table["acc@0.5"] == 1.0).all()
    spec.write_text('name = "oracle_mask"\nbackend = "test_bad_mask"\ndescription = "x"\noutput = "mask"\n')
    r = bench_cli("run", "-m", spec, "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "bad")
    assert r.code != 0 and "mask holds the value 0.5; a mask method's values are 0 or 1" in r.err


def test_a_sharded_box_run_merges_to_the_whole_run(bench_cli, tmp_path: Path) -> None:
    whole = _run(bench_cli, "oracle_box", "boxes", tmp_path / "whole")
    for shard in ("0/2", "1/2"):
        _run(bench_cli, "oracle_box", "boxes", tmp_path / "sh", "--shard", shard)
    merged = _run(bench_cli, "oracle_box", "boxes", tmp_path / "sh")
    assert (merged / "samples.csv").read_bytes() == (whole / "samples.csv").read_bytes()
    digests = [json.loads((r / "run.json").read_text())["digests"]["boxes"] for r in (whole, merged)]
    assert digests[0] == digests[1]


class HalfFailing(Method):
    """A test box method whose generation cannot be parsed for every other sample."""

    known_params: dict = {}

    def boxes(self, samples, dataset):
        from bench.core.predictions import BoxPrediction

        return [BoxPrediction(tuple(s.boxes)) if int(s.sample_id[-1]) % 2 == 0 else
                BoxPrediction((), failure="no <box> in the generated text") for s in samples]


def test_failed_samples_are_recorded_and_scored_as_samples_without_boxes(bench_cli, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.methods import BACKENDS

    monkeypatch.setitem(BACKENDS, "test_half_failing", "test_box_runs:HalfFailing")
    spec = tmp_path / "half.toml"
    spec.write_text('name = "half"\nbackend = "test_half_failing"\ndescription = "x"\noutput = "boxes"\n')
    run = _run(bench_cli, spec, "boxes", tmp_path / "b")
    table = pd.read_csv(run / "samples.csv").set_index("sample_id")
    failed = [sid for sid in table.index if int(sid[-1]) % 2]
    record = json.loads((run / "run.json").read_text())
    assert [f["sample_id"] for f in record["box_failures"]] == failed
    assert record["box_failures"][0]["reason"] == "no <box> in the generated text"
    assert (table.loc[failed, "acc@0.5"] == 0).all() and (table.loc[failed, "ap@0.5"] == 0).all()
    assert table.loc[failed, "box_precision"].isna().all() and (table.loc[failed, "box_recall"] == 0).all()
    kept = [sid for sid in table.index if sid not in failed]
    assert (table.loc[kept, "acc@0.5"] == 1).all()
    assert _micro(run, "acc@0.5") == pytest.approx(len(kept) / len(table))
    heat = _run(bench_cli, spec, "default", tmp_path / "d")
    table = pd.read_csv(heat / "samples.csv").set_index("sample_id")
    assert (table.loc[failed, "miou"] == 0).all() and (table.loc[failed, "auc_roc"] == 0.5).all()
    # the same failures from a --boxes file are listed too
    jsonl = tmp_path / "half.jsonl"
    jsonl.write_text("".join(p.read_text() for p in sorted((run / "boxes").glob("*.json"))))
    r = bench_cli("score", "--boxes", jsonl, "-d", "phantom", *SMALL_PHANTOM, "-p", "boxes", "--out", tmp_path / "s")
    assert r.code == 0, r.err
    scored = json.loads((tmp_path / "s" / "run.json").read_text())
    assert scored["box_failures"] == record["box_failures"]
