"""Bad input: one readable line, a non-zero exit, nothing half-written; --skip-bad records and goes on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height"]


def _tree(root: Path, rows: list[list], drop: str | None = None) -> Path:
    """A small MS-CXR tree in the official schema (v1.0.0 CSV + JPEGs under files/)."""
    for r in rows:
        p = root / r[3]
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (r[8], r[9]), 90).save(p)
    table = pd.DataFrame(rows, columns=HEADER)
    if drop:
        table = table.drop(columns=[drop])
    table.to_csv(root / "MS_CXR_Local_Alignment_v1.0.0.csv", index=False)
    return root


def _rows(bad_box: tuple[int, int, int, int] | None = None) -> list[list]:
    rows = [
        ["d1", "Pneumonia", "right lower lobe pneumonia", "files/p10/p1/s1/d1.jpg", 40, 120, 60, 50, 300, 360],
        ["d1", "Pneumonia", "right lower lobe pneumonia", "files/p10/p1/s1/d1.jpg", 200, 100, 40, 30, 300, 360],
        ["d1", "Pleural Effusion", "small left effusion", "files/p10/p1/s1/d1.jpg", 190, 250, 70, 40, 300, 360],
        ["d2", "Cardiomegaly", "cardiomegaly", "files/p10/p2/s2/d2.jpg", 100, 150, 150, 100, 320, 300],
    ]
    if bad_box:
        rows.append(["d3", "Edema", "mild edema", "files/p10/p3/s3/d3.jpg", *bad_box, 300, 300])
    return rows


def test_ms_cxr_grouping_on_fake_tree(bench_cli, tmp_path: Path) -> None:
    root = _tree(tmp_path / "mimic", _rows())
    r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", root, "--out", tmp_path / "r")
    assert r.code == 0, r.err
    s = pd.read_csv(tmp_path / "r" / "samples.csv")
    assert len(s) == 3  # (d1, pneumonia phrase) has two boxes united
    two = s[s["phrase"] == "right lower lobe pneumonia"].iloc[0]
    assert json.loads(two["boxes"]) == [[40, 120, 60, 50], [200, 100, 40, 30]]
    assert set(s["category"]) == {"pneumonia", "pleural effusion", "cardiomegaly"}


def _one_line_error(r, *words: str) -> None:
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert "Traceback" not in r.err
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_column(bench_cli, tmp_path: Path) -> None:
    root = _tree(tmp_path / "mimic", _rows(), drop="label_text")
    r = bench_cli("run", "--method", "uniform", "--dataset", "ms-cxr", "--data-root", root, "--out", tmp_path / "r")
    _one_line_error(r, "MS_CXR_Local_Alignment_v1.0.0.csv", "label_text")
    assert not (tmp_path / "r").exists()


def test_zero_area_and_outside_boxes(bench_cli, tmp_path: Path) -> None:
    for box, words in (((10, 10, 0, 20), "zero or negative area"), ((400, 10, 20, 20), "outside the 300x300 image")):
        root = _tree(tmp_path / f"m{box[2]}{box[0]}", _rows(box))
        out = tmp_path / f"r{box[2]}{box[0]}"
        r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", root, "--out", out)
        _one_line_error(r, "d3-", words, "--skip-bad")
        assert not out.exists()
        r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", root, "--out", out,
                      "--skip-bad")
        assert r.code == 0, r.err
        run = json.loads((out / "run.json").read_text())
        assert len(run["skipped"]) == 1 and run["skipped"][0]["sample_id"].startswith("d3-")
        assert words in run["skipped"][0]["reason"]
        assert len(pd.read_csv(out / "samples.csv")) == 3


def test_missing_data_root(bench_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BENCH_MS_CXR_ROOT", raising=False)
    r = bench_cli("run", "--method", "uniform", "--dataset", "ms-cxr", "--out", tmp_path / "r")
    _one_line_error(r, "--data-root")
    r = bench_cli("run", "--method", "uniform", "--dataset", "ms-cxr", "--data-root", tmp_path, "--out", tmp_path / "r")
    _one_line_error(r, "MS_CXR_Local_Alignment")


def test_unreadable_image_is_a_sample_error(tmp_path: Path) -> None:
    from bench.core.errors import SampleError
    from bench.datasets.images import read_grayscale

    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    for path, words in ((bad, "cannot read image"), (tmp_path / "none.png", "image not found")):
        try:
            read_grayscale(path, "s1")
        except SampleError as exc:
            assert exc.sample_id == "s1" and words in exc.reason
        else:
            raise AssertionError("no error")
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (5, 4), (200, 100, 50, 10)).save(rgba)
    arr = read_grayscale(rgba)
    assert arr.shape == (4, 5) and arr.dtype.name == "uint8" and int(arr[0, 0]) == 124  # ITU-R 601 luma


# ---- the catalogue: each bad input gives one line, exit 2, and writes nothing ----------------------

PHANTOM = ["--dataset", "phantom", "-O", "n_test=8", "-O", "n_train=8"]


def _nih(root: Path, rows: list[str], sizes: dict[str, tuple[int, int]] | None = None,
         header: str = "Image Index,Finding Label,Bbox [x,y,w,h],,,", image_col: int = 0) -> Path:
    """A ChestX-ray14 box folder: BBox_List_2017.csv and 1024 x 1024 PNGs (or the sizes given)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "BBox_List_2017.csv").write_text("\n".join([header, *rows]) + "\n")
    for image in {r.split(",")[image_col] for r in rows}:
        Image.new("L", (sizes or {}).get(image, (1024, 1024)), 60).save(root / "images" / image)
    return root


def test_batch_size_out_of_range(bench_cli, tmp_path: Path) -> None:
    for size in ("0", "-3"):
        out = tmp_path / f"r{size}"
        r = bench_cli("run", "--method", "uniform", *PHANTOM, "--batch-size", size, "--out", out)
        _one_line_error(r, f"--batch-size {size}", "at least 1")
        assert not out.exists()


def test_set_on_a_table(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("run", "--method", "oracle_gaussian", *PHANTOM, "--set", "params=3", "--out", tmp_path / "r")
    _one_line_error(r, "--set params:", "table of fields", "params.sigma_fraction")
    assert not (tmp_path / "r").exists()


def test_out_is_a_file_or_a_folder(bench_cli, tmp_path: Path) -> None:
    afile = tmp_path / "taken.txt"
    afile.write_text("mine\n")
    r = bench_cli("run", "--method", "uniform", *PHANTOM, "--out", afile)
    _one_line_error(r, str(afile), "is a file")
    run = tmp_path / "run"
    assert bench_cli("run", "--method", "uniform", *PHANTOM, "--out", run).code == 0
    r = bench_cli("score", "--heatmaps", run, *PHANTOM, "--out", afile)
    _one_line_error(r, str(afile), "is a file")
    other = tmp_path / "run2"
    assert bench_cli("run", "--method", "oracle_gaussian", *PHANTOM, "--out", other).code == 0
    r = bench_cli("compare", run, other, "--out", afile)
    _one_line_error(r, str(afile), "is a file")
    r = bench_cli("dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0", "--out", tmp_path)
    _one_line_error(r, str(tmp_path), "is a folder")
    assert afile.read_text() == "mine\n"


def test_compare_the_same_run_twice_and_an_empty_table(bench_cli, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert bench_cli("run", "--method", "uniform", *PHANTOM, "--out", run).code == 0
    _one_line_error(bench_cli("compare", run, run), "given twice")
    _one_line_error(bench_cli("compare", run, tmp_path / "." / "run"), "given twice")
    empty = tmp_path / "empty"
    assert bench_cli("run", "--method", "oracle_gaussian", *PHANTOM, "--out", empty).code == 0
    (empty / "samples.csv").write_text("")
    _one_line_error(bench_cli("compare", run, empty), str(empty / "samples.csv"))


def test_protocol_value_types_checked_before_any_work(bench_cli, tmp_path: Path, monkeypatch) -> None:
    from bench.core import specs

    real = specs.spec_dir
    folder = tmp_path / "protocols"
    folder.mkdir()
    monkeypatch.setattr(specs, "spec_dir", lambda kind: folder if kind == "protocols" else real(kind))
    text = (real("protocols") / "default.toml").read_text()
    for line, bad, words in (("seed = 0", 'seed = "zero"', "seed = 'zero'"),
                             ("bootstrap_resamples = 10000", "bootstrap_resamples = 2.5", "bootstrap_resamples = 2.5")):
        assert line in text
        (folder / "default.toml").write_text(text.replace(line, bad, 1))
        out = tmp_path / "r"
        r = bench_cli("run", "--method", "uniform", *PHANTOM, "--out", out)
        _one_line_error(r, "protocols/default.toml", words, "whole number")
        assert not out.exists()


def test_dataset_options_bounded(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("run", "--method", "uniform", "--dataset", "phantom", "-O", "n_test=99999999999999999999",
                  "--out", tmp_path / "r")
    _one_line_error(r, "n_test=99999999999999999999", "in 0..100000")
    assert not (tmp_path / "r").exists()


def _scored_run(bench_cli, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    assert bench_cli("run", "--method", "uniform", *PHANTOM, "--out", run).code == 0
    return run


def test_score_npz_without_its_arrays_or_next_to_an_npy(bench_cli, tmp_path: Path) -> None:
    import numpy as np

    maps = tmp_path / "maps"
    maps.mkdir()
    for i in range(8):
        np.save(maps / f"phantom-test-{i:05d}.npy", np.zeros((4, 4)))  # shapes are checked after the names
    np.savez(maps / "phantom-test-00000.npz", heat=np.zeros((3, 3)))
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s")
    _one_line_error(r, "phantom-test-00000.npy and phantom-test-00000.npz", "keep one")
    (maps / "phantom-test-00000.npy").unlink()
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s")
    _one_line_error(r, "phantom-test-00000.npz", "'values'", "found: heat")
    assert not (tmp_path / "s").exists()


def test_score_says_which_files_it_did_not_score(bench_cli, tmp_path: Path) -> None:
    import numpy as np

    from bench.datasets.phantom import PhantomDataset

    maps = tmp_path / "maps"
    maps.mkdir()
    for s in PhantomDataset(options={"n_test": "8", "n_train": "8"}).samples():
        np.save(maps / f"{s.sample_id}.npy", np.random.default_rng(0).random((s.height, s.width)))
    np.save(maps / "stranger.npy", np.zeros((4, 4)))
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s")
    assert r.code == 0, r.err
    assert "9 heatmap file(s) not scored: 1 matching no sample of the dataset; 8 not in split 'test'" in r.err
    record = json.loads((tmp_path / "s" / "run.json").read_text())
    assert record["unscored_files"] == {"matching no sample of the dataset": 1, "not in split 'test'": 8}
    assert len(pd.read_csv(tmp_path / "s" / "samples.csv")) == 8


def test_complex_heatmap_rejected(bench_cli, tmp_path: Path) -> None:
    import numpy as np

    from bench.datasets.phantom import PhantomDataset

    maps = tmp_path / "maps"
    maps.mkdir()
    for s in PhantomDataset(options={"n_test": "8", "n_train": "8"}).samples()[:8]:
        np.save(maps / f"{s.sample_id}.npy", np.ones((s.height, s.width)) * (1 + 2j))
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s")
    _one_line_error(r, "phantom-test-00000", "complex")
    assert "Warning" not in r.err and not (tmp_path / "s").exists()


def test_sample_ids_that_share_a_file_name(bench_cli, tmp_path: Path) -> None:
    """`x y.png` and `x_y.png`: two ids, two heatmap files, each sample scored with its own map."""
    root = _nih(tmp_path / "nih", ["x y.png,Mass,100,100,200,200", "x_y.png,Mass,600,600,200,200",
                                   "z.png,Nodule,300,300,50,50"])
    out = tmp_path / "r"
    r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "chestx-ray14", "--data-root", root, "--out", out)
    assert r.code == 0, r.err
    assert len(list((out / "heatmaps").glob("*.npz"))) == 3
    s = pd.read_csv(out / "samples.csv").set_index("sample_id")
    assert sorted(s.index) == ["x y-mass", "x_y-mass", "z-nodule"]
    assert s.at["x y-mass", "miou"] == pytest.approx(s.at["x_y-mass", "miou"]) and s.at["x y-mass", "miou"] > 0.5
    from bench.running.rundir import file_name

    assert file_name("x_y-mass") == "x_y-mass"
    assert file_name("x y-mass") == "x_y-mass~" + hashlib.sha1(b"x y-mass").hexdigest()[:8]


def test_sample_ids_differing_only_in_case(bench_cli, tmp_path: Path) -> None:
    root = _nih(tmp_path / "nih", ["A.png,Mass,100,100,200,200", "a.png,Mass,600,600,200,200"])
    r = bench_cli("run", "--method", "uniform", "--dataset", "chestx-ray14", "--data-root", root, "--out", tmp_path / "r")
    _one_line_error(r, "'A-mass'", "'a-mass'")
    assert not (tmp_path / "r").exists()


def test_chestxray14_header_read_by_name(tmp_path: Path) -> None:
    from bench.core.errors import BenchError
    from bench.datasets.chestxray14 import ChestXray14Dataset

    rows = ["Mass,a.png,200,210,20,25"]
    root = _nih(tmp_path / "nih", rows, header="Finding Label,Image Index,x,y,w,h", image_col=1)
    (s,) = ChestXray14Dataset(root).samples()
    assert (s.sample_id, s.category, s.boxes) == ("a-mass", "mass", ((200.0, 210.0, 20.0, 25.0),))
    (root / "BBox_List_2017.csv").write_text("Finding Label,Image Index,h,w,y,x\nMass,a.png,25,20,210,200\n")
    assert ChestXray14Dataset(root).samples()[0].boxes == ((200.0, 210.0, 20.0, 25.0),)
    (root / "BBox_List_2017.csv").write_text("Finding Label,Picture,x,y,w,h\nMass,a.png,200,210,20,25\n")
    with pytest.raises(BenchError, match="no Image Index column"):
        ChestXray14Dataset(root).samples()


def test_chestxray14_image_not_at_release_size(bench_cli, tmp_path: Path) -> None:
    rows = ["big.png,Mass,100,100,200,200", "small.png,Mass,100,100,200,200", "ok.png,Nodule,300,300,50,50"]
    root = _nih(tmp_path / "nih", rows, sizes={"big.png": (2048, 2048), "small.png": (512, 512)})
    for method in ("uniform", "oracle_gaussian"):
        out = tmp_path / method
        r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", root, "--out", out)
        _one_line_error(r, "big-mass", "big.png is 2048x2048", "1024x1024", "--skip-bad")
        assert not out.exists()
        r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", root, "--out", out,
                      "--skip-bad")
        assert r.code == 0, r.err
        skipped = {k["sample_id"]: k["reason"] for k in json.loads((out / "run.json").read_text())["skipped"]}
        assert sorted(skipped) == ["big-mass", "small-mass"] and "512x512" in skipped["small-mass"]
        assert list(pd.read_csv(out / "samples.csv")["sample_id"]) == ["ok-nodule"]


def test_truncated_image_is_the_same_skip_for_every_method(bench_cli, tmp_path: Path, monkeypatch) -> None:
    from bench.datasets import images

    root = _nih(tmp_path / "nih", ["cut.png,Mass,100,100,200,200", "ok.png,Nodule,300,300,50,50"])
    Image.effect_noise((1024, 1024), 40).save(root / "images" / "cut.png")
    whole = (root / "images" / "cut.png").read_bytes()
    (root / "images" / "cut.png").write_bytes(whole[: len(whole) // 2])
    decoded = []
    real = images.decoded_size
    monkeypatch.setattr(images, "decoded_size", lambda p: decoded.append(p) or real(p))
    sets = {}
    for method in ("uniform", "box_prior", "oracle_gaussian"):
        out = tmp_path / method
        r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", root, "--out", out)
        _one_line_error(r, "cut-mass", "cannot read image")
        r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", root, "--out", out,
                      "--skip-bad")
        assert r.code == 0, r.err
        sets[method] = list(pd.read_csv(out / "samples.csv")["sample_id"])
    assert sets == {m: ["ok-nodule"] for m in sets}
    assert len(decoded) == 2  # each image decoded once, whatever the number of runs


def test_chestxray14_labels(bench_cli, tmp_path: Path) -> None:
    from bench.core.errors import BenchError
    from bench.datasets.chestxray14 import ChestXray14Dataset

    root = _nih(tmp_path / "nih", ["a.png,Mass,10,10,20,20", "b.png,Cardiomegally,100,100,300,200"])
    with pytest.raises(BenchError, match=r"data row 2 \(b.png\) has Finding Label 'Cardiomegally', not one of "
                                         r"Atelectasis, Cardiomegaly, .*-O labels=any"):
        ChestXray14Dataset(root).samples()
    r = bench_cli("run", "--method", "uniform", "--dataset", "chestx-ray14", "--data-root", root, "--out", tmp_path / "r")
    _one_line_error(r, "Cardiomegally", "labels=any")
    assert [s.category for s in ChestXray14Dataset(root, {"labels": "any"}).samples()] == ["mass", "cardiomegally"]
    root = _nih(tmp_path / "nih2", ["a.png,Pleural Effusion,10,10,20,20", "a.png,Pleural_Effusion,50,50,20,20",
                                    "a.png,Mass,10,10,20,20"])
    samples = ChestXray14Dataset(root, {"labels": "any"}).samples()
    assert [s.sample_id for s in samples] == ["a-pleural_effusion", "a-mass"]
    assert samples[0].boxes == ((10.0, 10.0, 20.0, 20.0), (50.0, 50.0, 20.0, 20.0))


def test_ms_cxr_image_size_differs_from_the_csv(bench_cli, tmp_path: Path) -> None:
    root = _tree(tmp_path / "mimic", _rows())
    Image.new("L", (512, 512), 90).save(root / "files/p10/p2/s2/d2.jpg")
    for method in ("uniform", "biovil"):
        out = tmp_path / method
        r = bench_cli("run", "--method", method, "--dataset", "ms-cxr", "--data-root", root, "--random-weights",
                      "--out", out)
        _one_line_error(r, "files/p10/p2/s2/d2.jpg is 512x512", "records 320x300")
        assert not out.exists()


def test_ms_cxr_duplicate_rows_merged_and_counted(bench_cli, tmp_path: Path) -> None:
    rows = _rows()
    root = _tree(tmp_path / "mimic", rows + [rows[0], rows[3]])
    out = tmp_path / "r"
    r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", root, "--out", out)
    assert r.code == 0, r.err
    assert "2 duplicate row(s) (same sample, same box) merged" in r.err
    s = pd.read_csv(out / "samples.csv")
    assert [len(json.loads(b)) for b in s["boxes"]] == [2, 1, 1]
    assert json.loads((out / "run.json").read_text())["dataset_notes"][0].endswith("merged")
