"""A dataset that is a file: `--dataset samples.csv|.jsonl`, read, checked, fingerprinted and run like a named one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as cocomask

from bench.core.errors import BenchError
from bench.core.fingerprint import dataset_fingerprint, fingerprint_keys
from bench.core.ground_truth import MaskSource, load_mask, rle_text
from bench.core.samples import Sample
from bench.datasets import get_dataset
from bench.datasets.file_dataset import table_text

HEADER = "sample_id,image_path,width,height,category,phrase,boxes,split"


def _mask() -> np.ndarray:
    m = np.zeros((12, 10), dtype=bool)
    m[3:6, 2:7] = True
    return m


def _rle() -> dict:
    rle = cocomask.encode(np.asfortranarray(_mask().astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _images(root: Path, names=("a", "b", "c", "d")) -> None:
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(np.full((12, 10), 40 * i, dtype=np.uint8)).save(root / "img" / f"{name}.png")


def _rows() -> list[dict]:
    return [
        {"sample_id": "a", "image_path": "img/a.png", "width": 10, "height": 12, "category": "nodule",
         "phrase": "a small nodule", "boxes": [[2, 3, 5, 3]], "split": "train"},
        {"sample_id": "b", "image_path": "img/b.png", "width": 10, "height": 12, "category": "nodule",
         "phrase": "left nodule", "boxes": [[1, 1, 2, 2]], "split": "test"},
        {"sample_id": "c", "image_path": "img/c.png", "width": 10, "height": 12, "category": "effusion",
         "phrase": "effusion", "boxes": [], "mask": _rle(), "split": "test"},
        {"sample_id": "d", "image_path": "img/d.png", "width": 10, "height": 12, "category": "effusion",
         "phrase": "effusion here", "boxes": [], "points": [[4.5, 6], [1, 2]]},
    ]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path: Path, rows: list[dict]) -> Path:
    table = pd.DataFrame([{k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in r.items()} for r in rows])
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("writer", [_jsonl, _csv])
def test_file_dataset_reads_boxes_masks_points(tmp_path: Path, writer) -> None:
    _images(tmp_path)
    ds = get_dataset(str(writer(tmp_path / f"s.{'jsonl' if writer is _jsonl else 'csv'}", _rows())))
    samples = {s.sample_id: s for s in ds.samples()}
    assert list(samples) == ["a", "b", "c", "d"]
    a, c, d = samples["a"], samples["c"], samples["d"]
    assert (a.boxes, a.split, a.width, a.height, a.category) == (((2.0, 3.0, 5.0, 3.0),), "train", 10, 12, "nodule")
    assert Path(a.image_path) == tmp_path / "img" / "a.png"
    assert c.gt_kind == "mask" and np.array_equal(load_mask(c.mask, 12, 10), _mask())
    assert d.gt_kind == "points" and d.points == ((4.5, 6.0), (1.0, 2.0)) and d.split == "test"


def test_mask_file_relative_to_the_data_root(tmp_path: Path) -> None:
    _images(tmp_path / "data")
    Image.fromarray(_mask().astype(np.uint8) * 255).save(tmp_path / "data" / "m.png")
    rows = [dict(_rows()[0], mask="m.png", boxes=[])]
    ds = get_dataset(str(_jsonl(tmp_path / "s.jsonl", rows)), tmp_path / "data")
    (s,) = ds.samples()
    assert s.mask == MaskSource(path=str(tmp_path / "data" / "m.png"))
    assert Path(s.image_path) == tmp_path / "data" / "img" / "a.png"


def test_fingerprint_box_only_keys_unchanged_masks_and_points_hashed() -> None:
    box = Sample("a", "/x.png", 10, 12, "nodule", "p", ((2.0, 3.0, 5.0, 3.0),))
    # the six facts alone, as every fingerprint recorded before masks existed
    assert dataset_fingerprint("d", {}, [box]) == fingerprint_keys("d", {}, [["a", "nodule", "p", 10, 12, [[2, 3, 5, 3]]]])
    assert dataset_fingerprint("d", {}, [box]) == "817feade97ec32ab"  # the value the code before masks gave
    as_rle = Sample("a", "/x.png", 10, 12, "nodule", "p", (), mask=MaskSource(rle=rle_text(_rle())))
    other = _mask().copy()
    other[0, 0] = True
    changed = Sample("a", "/x.png", 10, 12, "nodule", "p", (), mask=MaskSource(
        rle=rle_text(cocomask.encode(np.asfortranarray(other.astype(np.uint8))))))
    fp = dataset_fingerprint("d", {}, [as_rle])
    assert fp not in (dataset_fingerprint("d", {}, [box]), dataset_fingerprint("d", {}, [changed]))
    pts = Sample("a", "/x.png", 10, 12, "nodule", "p", (), points=((1.0, 2.0),))
    pts2 = Sample("a", "/x.png", 10, 12, "nodule", "p", (), points=((1.0, 3.0),))
    assert dataset_fingerprint("d", {}, [pts]) != dataset_fingerprint("d", {}, [pts2])


def test_fingerprint_of_a_mask_is_its_pixels_not_its_encoding(tmp_path: Path) -> None:
    Image.fromarray(_mask().astype(np.uint8) * 255).save(tmp_path / "m.png")
    # column-major runs: 2 empty columns and 3 rows (27), then 3 ones and 9 zeros per column 2-6, 42 zeros after
    uncompressed = {"size": [12, 10], "counts": [27, 3, 9, 3, 9, 3, 9, 3, 9, 3, 42]}
    kinds = [MaskSource(path=str(tmp_path / "m.png")), MaskSource(rle=rle_text(_rle())),
             MaskSource(rle=json.dumps(uncompressed))]
    prints = {dataset_fingerprint("d", {}, [Sample("a", "/x.png", 10, 12, "n", "p", (), mask=m)]) for m in kinds}
    assert len(prints) == 1


def test_bench_dataset_writes_mask_and_points_columns_and_reads_back(tmp_path: Path, bench_cli) -> None:
    _images(tmp_path)
    src = _jsonl(tmp_path / "s.jsonl", _rows())
    res = bench_cli("dataset", src, "--out", tmp_path / "out.csv")
    assert res.code == 0, res.err
    table = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == HEADER.split(",") + ["mask", "points"]
    assert json.loads(table.loc[2, "mask"]) == _rle()
    assert table.loc[3, "points"] == "[[4.5, 6], [1, 2]]" and table.loc[0, "mask"] == ""
    again = get_dataset(str(tmp_path / "out.csv")).samples()
    assert again == get_dataset(str(src)).samples()
    res = bench_cli("dataset", tmp_path / "out.csv", "--out", tmp_path / "out.jsonl")
    assert res.code == 0, res.err
    assert get_dataset(str(tmp_path / "out.jsonl")).samples() == again
    assert json.loads((tmp_path / "out.jsonl").read_text().splitlines()[2])["mask"] == _rle()


def test_box_only_table_is_the_eight_columns() -> None:
    s = Sample("a", "img/a.png", 10, 12, "nodule", "p", ((2.0, 3.0, 5.0, 3.0),), "train")
    assert table_text([s]) == f"{HEADER}\na,img/a.png,10,12,nodule,p,\"[[2, 3, 5, 3]]\",train\n"


BAD_ROWS = [
    ({"image_path": "../outside.png"}, "row 1 \\(a\\): image_path '../outside.png' leads outside the data root"),
    ({"image_path": "/etc/passwd"}, "image_path '/etc/passwd' leads outside the data root"),
    ({"mask": "../m.png", "boxes": []}, "mask '../m.png' leads outside"),
    ({"width": "wide"}, "column 'width' is not a whole number"),
    ({"width": 0}, "image size 0x12 is not positive"),
    ({"width": 100000, "height": 100000}, "above the limit"),
    ({"boxes": [[1, 2, 3]]}, "boxes holds \\[1, 2, 3\\], not \\[x, y, w, h\\]"),
    ({"boxes": "[[1, 2"}, "boxes is not a JSON list"),
    ({"boxes": [[1, 2, 0, 3]]}, "has zero or negative area"),
    ({"boxes": [[50, 2, 3, 3]]}, "lies outside the 10x12 image"),
    ({"boxes": []}, "has no box, mask or point"),
    ({"boxes": [], "points": [[11, 2]]}, "point \\[11.0, 2.0\\] lies outside"),
    ({"boxes": [], "points": [[1, "x"]]}, "points holds \\[1, 'x'\\], not \\[x, y\\]"),
    ({"boxes": [], "mask": {"size": [12, 11], "counts": [132]}}, "mask rle is 11x12, the image is 10x12"),
    ({"boxes": [], "mask": {"size": [12, 10], "counts": [3, 4]}}, "counts do not add up"),
    ({"boxes": [], "mask": {"size": [12, 10], "counts": "@@@@@@"}}, "mask RLE"),
    ({"boxes": [], "mask": {"counts": "x"}}, "'size' \\[h, w\\] and 'counts'"),
    ({"boxes": [], "mask": "{not json"}, "mask is neither a file nor RLE JSON"),
    ({"boxes": [], "mask": "missing.png"}, "mask file .*missing.png does not exist"),
    ({"split": "dev"}, "split 'dev' is not train, val or test"),
    ({"category": ""}, "column 'category' is empty"),
]


@pytest.mark.parametrize("change, message", BAD_ROWS)
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_bad_row_one_line_nothing_written(tmp_path: Path, bench_cli, change, message, suffix) -> None:
    _images(tmp_path)
    row = dict(_rows()[0], **change)
    path = (_jsonl if suffix == "jsonl" else _csv)(tmp_path / f"s.{suffix}", [row])
    with pytest.raises(BenchError, match=message):
        get_dataset(str(path)).samples()
    res = bench_cli("dataset", path, "--out", tmp_path / "out.csv")
    assert res.code != 0 and len(res.err.strip().splitlines()) == 1 and "Traceback" not in res.err
    assert not (tmp_path / "out.csv").exists()
    res = bench_cli("run", "-m", "uniform", "-d", path, "--out", tmp_path / "run")
    assert res.code != 0 and len(res.err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_table_level_errors(tmp_path: Path) -> None:
    _images(tmp_path)
    rows = _rows()
    cases = {
        "dup.jsonl": ([rows[0], dict(rows[1], sample_id="a")], "row 2: sample id 'a' is also the id of row 1"),
        "nocol.csv": ([{k: v for k, v in rows[0].items() if k != "phrase"}], "missing column 'phrase'"),
        "nogt.csv": ([{k: v for k, v in rows[0].items() if k != "boxes"}], "no ground-truth column"),
    }
    for name, (table, message) in cases.items():
        path = (_jsonl if name.endswith("jsonl") else _csv)(tmp_path / name, table)
        with pytest.raises(BenchError, match=message):
            get_dataset(str(path)).samples()
    (tmp_path / "bad.jsonl").write_text('{"sample_id": "a"}\nnot json\n')
    with pytest.raises(BenchError, match="line 2 is not JSON"):
        get_dataset(str(tmp_path / "bad.jsonl")).samples()
    with pytest.raises(BenchError, match="dataset file .*gone.csv not found"):
        get_dataset(str(tmp_path / "gone.csv")).samples()


def test_run_and_score_on_a_file_dataset(tmp_path: Path, bench_cli, monkeypatch) -> None:
    """End to end with box ground truth: `bench run -m box_prior -d FILE`, then `bench score` of its maps."""
    _images(tmp_path, names=[f"i{k}" for k in range(6)])
    rows = [{"sample_id": f"s{k}", "image_path": f"img/i{k}.png", "width": 10, "height": 12, "category": "nodule",
             "phrase": "nodule", "boxes": [[k, 2, 3, 4]], "split": "train" if k < 3 else "test"} for k in range(6)]
    path = _jsonl(tmp_path / "mine.jsonl", rows)
    monkeypatch.chdir(tmp_path)
    res = bench_cli("run", "-m", "box_prior", "-d", "mine.jsonl")
    assert res.code == 0, res.err
    run = tmp_path / "runs" / "mine__box_prior__default"
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["dataset"]["name"] == str(path.resolve())
    assert record["dataset_samples"] == 3
    expected = dataset_fingerprint("file", {}, [s for s in get_dataset(str(path)).samples() if s.split == "test"])
    assert record["dataset_fingerprint"] == expected
    scores = pd.read_csv(run / "samples.csv")
    assert sorted(scores["sample_id"]) == ["s3", "s4", "s5"]
    res = bench_cli("score", "--heatmaps", run, "-d", path, "--out", tmp_path / "rescored")
    assert res.code == 0, res.err
    again = pd.read_csv(tmp_path / "rescored" / "samples.csv")
    assert np.allclose(again["miou"], scores["miou"])
    assert json.loads((tmp_path / "rescored" / "run.json").read_text())["dataset_fingerprint"] == expected


def test_a_file_dataset_takes_no_options(tmp_path: Path) -> None:
    _images(tmp_path)
    path = _jsonl(tmp_path / "s.jsonl", _rows())
    with pytest.raises(BenchError, match="prompt"):
        get_dataset(str(path), None, {"prompt": "{finding}"})


def test_score_a_file_dataset_with_mask_ground_truth(tmp_path: Path, bench_cli) -> None:
    """`bench score` of user maps against a `mask` column (RLE and a PNG file), values computed by hand."""
    _images(tmp_path, names=["m0", "m1"])
    Image.fromarray(_mask().astype(np.uint8) * 255).save(tmp_path / "m.png")
    rows = [{"sample_id": "r", "image_path": "img/m0.png", "width": 10, "height": 12, "category": "effusion",
             "phrase": "effusion", "mask": _rle(), "split": "test"},
            {"sample_id": "p", "image_path": "img/m1.png", "width": 10, "height": 12, "category": "effusion",
             "phrase": "effusion", "mask": "m.png", "split": "test"}]
    path = _jsonl(tmp_path / "masks.jsonl", rows)
    maps = tmp_path / "maps"
    maps.mkdir()
    v = np.zeros((12, 10), dtype=np.float32)
    v[3:6, 2:5] = 1.0  # 9 of the mask's 15 pixels, nothing outside
    for sid in ("r", "p"):
        np.save(maps / f"{sid}.npy", v)
    res = bench_cli("score", "--heatmaps", maps, "-d", path, "--out", tmp_path / "scored")
    assert res.code == 0, res.err
    got = pd.read_csv(tmp_path / "scored" / "samples.csv").set_index("sample_id")
    for sid in ("r", "p"):
        assert got.loc[sid, "miou"] == pytest.approx(9 / 15)  # every threshold: pred = the 9 pixels
        assert got.loc[sid, "pointing_game"] == 1
        # AUC: 9 positives at 1 beat all 105 negatives, 6 positives tie with them at 0
        assert got.loc[sid, "auc_roc"] == pytest.approx((9 * 105 + 6 * 105 * 0.5) / (15 * 105))
