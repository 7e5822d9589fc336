"""Files a user can place are data: sizes checked before allocating, never unpickled, paths kept in the root."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.core.errors import BenchError, SampleError
from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.datasets.phantom import PhantomDataset
from bench.running.byo import write_native_map

PHANTOM = ["--dataset", "phantom", "-O", "n_test=8", "-O", "n_train=0"]


def _one_line_error(r, *words: str) -> str:
    assert r.code == 2, (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _skipped(run: Path) -> dict[str, str]:
    return {k["sample_id"]: k["reason"] for k in json.loads((run / "run.json").read_text())["skipped"]}


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height grey pixels; its data is a few bytes (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npy_declaring(shape: tuple[int, int], dtype: str = "<f8") -> bytes:
    """A .npy header declaring `shape` followed by only 1,000 bytes of data."""
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + b"\0" * 1000


# ---- oversized images and grids: one-line sample errors, nothing allocated ----------------------------


def _nih(root: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    (root / "images").mkdir(parents=True)
    rows = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
    rows += [f"{name},Mass,100,100,200,200" for name in sizes]
    (root / "BBox_List_2017.csv").write_text("\n".join(rows) + "\n")
    for name, size in sizes.items():
        Image.new("L", size, 60).save(root / "images" / name)
    return root


def test_a_decompression_bomb_is_a_sample_error_that_skip_bad_records(bench_cli, tmp_path: Path) -> None:
    root = _nih(tmp_path / "nih", {"bomb.png": (8, 8), "ok.png": (1024, 1024)})
    _png_header_only(root / "images" / "bomb.png", 20000, 20000)
    assert (root / "images" / "bomb.png").stat().st_size < 1000
    for method in ("uniform", "oracle_gaussian"):
        out = tmp_path / method
        r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", root, "--out", out)
        line = _one_line_error(r, "bomb-mass", "bomb.png is 400,000,000 pixels", "limit of 64,000,000 pixels", "BENCH_MAX_IMAGE_PIXELS",
                               "--skip-bad")
        assert "Traceback" not in r.err and "DecompressionBomb" not in line and not out.exists()
        r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", root, "--out", out,
                      "--skip-bad")
        assert r.code == 0, r.err
        assert list(_skipped(out)) == ["bomb-mass"] and "above the limit" in _skipped(out)["bomb-mass"]
        assert list(pd.read_csv(out / "samples.csv")["sample_id"]) == ["ok-mass"]


def test_the_pixel_limit_is_documented_and_can_be_moved(bench_cli, tmp_path: Path, monkeypatch) -> None:
    from bench.core.limits import DEFAULT_MAX_PIXELS, max_image_pixels
    from bench.datasets.images import read_grayscale

    assert max_image_pixels() == DEFAULT_MAX_PIXELS == 64_000_000
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "BENCH_MAX_IMAGE_PIXELS" in readme and "64 million" in readme
    image = tmp_path / "a.png"
    Image.new("L", (40, 30), 7).save(image)
    monkeypatch.setenv("BENCH_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(SampleError, match=r"40x30 = 1,200 pixels is above the limit of 1,000 pixels"):
        read_grayscale(image, "s")
    monkeypatch.setenv("BENCH_MAX_IMAGE_PIXELS", "1200")
    assert read_grayscale(image, "s").shape == (30, 40)
    monkeypatch.setenv("BENCH_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(BenchError, match="BENCH_MAX_IMAGE_PIXELS='lots' is not a positive whole number"):
        read_grayscale(image, "s")


def test_a_sample_declaring_a_huge_image_is_refused_before_any_mask(tmp_path: Path) -> None:
    from bench.core.samples import Sample, validate_sample

    s = Sample("big", "x.png", 1_000_000, 1_000_000, "mass", "mass", ((1.0, 1.0, 5.0, 5.0),), "test")
    with pytest.raises(SampleError, match=r"image size 1000000x1000000 = 1,000,000,000,000 pixels is above the limit"):
        validate_sample(s)


def _native_maps(folder: Path, big: tuple[int, int] | None = None) -> list:
    samples = PhantomDataset(options={"n_test": "8", "n_train": "0"}).samples()
    for s in samples:
        write_native_map(folder, s.sample_id, np.random.default_rng(1).random((16, 16)), Geometry.whole(s.height, s.width))
    if big:
        s = samples[0]
        write_native_map(folder, s.sample_id, np.zeros(big, np.float32), Geometry.whole(s.height, s.width))
    return samples


def test_a_native_grid_larger_than_its_field_of_view_is_a_sample_error(bench_cli, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    samples = _native_maps(maps, big=(2000, 2000))
    first = samples[0]
    assert max(first.height, first.width) < 2000
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s")
    _one_line_error(r, first.sample_id, "native grid 2000x2000 is larger than its",
                    f"{first.height}x{first.width} field of view", "--skip-bad")
    assert not (tmp_path / "s").exists()
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s", "--skip-bad")
    assert r.code == 0, r.err
    assert list(_skipped(tmp_path / "s")) == [first.sample_id]
    assert len(pd.read_csv(tmp_path / "s" / "samples.csv")) == 7


def test_a_declared_40000_grid_is_refused_from_its_header(tmp_path: Path) -> None:
    """The 1.5 MB .npz of 40000 x 40000 over a 601 x 677 image: its values are never read."""
    from bench.core.heatmap import read_original_map

    record = json.dumps({"geometry": Geometry.whole(677, 601).to_dict(), "meta": {}})
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("record.npy", _npy_bytes(np.array(record)))
        z.writestr("values.npy", _npy_declaring((40000, 40000)))
    with pytest.raises(ValueError, match=r"native grid 40000x40000 is larger than its 677x601 field of view"):
        Heatmap.load(path)
    npy = tmp_path / "bomb.npy"
    npy.write_bytes(_npy_declaring((40000, 40000)))
    with pytest.raises(ValueError, match=r"has shape \(40000, 40000\), expected \(677, 601\)"):
        read_original_map(npy, 677, 601)
    with pytest.raises(ValueError, match="is a map of 40000x40000 = 1,600,000,000 pixels is above the limit"):
        read_original_map(npy)
    npy.write_bytes(_npy_declaring((677, 601), "|O"))
    with pytest.raises(ValueError, match="holds Python objects.*never objects"):
        read_original_map(npy, 677, 601)


def test_a_model_grid_over_a_small_image_is_still_read(tmp_path: Path) -> None:
    """A 512 x 512 map of a model's input crop over a 384-pixel field of view is a legitimate native map."""
    geometry = Geometry.whole(384, 400)
    Heatmap(np.ones((512, 512)), geometry).save(tmp_path / "m.npz")
    assert Heatmap.load(tmp_path / "m.npz", (384, 400)).values.shape == (512, 512)
    with pytest.raises(ValueError, match="is for a 400x384 image, sample is 500x384"):
        Heatmap.load(tmp_path / "m.npz", (384, 500))


# ---- files that are not what their name says -------------------------------------------------------


def test_a_text_file_named_npy_is_not_called_pickled_data(bench_cli, tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    for s in PhantomDataset(options={"n_test": "8", "n_train": "0"}).samples():
        np.save(maps / f"{s.sample_id}.npy", np.zeros((s.height, s.width), np.float32))
    (maps / "phantom-test-00003.npy").write_text("0.1,0.2\n0.3,0.4\n")
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s")
    line = _one_line_error(r, "phantom-test-00003", "is not a NumPy .npy file")
    assert "pickle" not in line.lower() and "allow_pickle" not in line
    (maps / "phantom-test-00003.npy").unlink()
    (maps / "phantom-test-00003.npz").write_text("not a zip")
    r = bench_cli("score", "--heatmaps", maps, *PHANTOM, "--out", tmp_path / "s")
    line = _one_line_error(r, "phantom-test-00003", "is not a NumPy .npz file")
    assert "pickle" not in line.lower()


# ---- the phantom under --data-root: checked like every dataset's, nothing written there ----------------


def test_phantom_images_under_a_data_root_are_checked_and_never_written(bench_cli, tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    ds = PhantomDataset(options={"n_test": "8", "n_train": "0"})
    cases = ds.samples()
    Image.fromarray(ds.render(cases[0])).save(root / f"{cases[0].sample_id}.png")  # a good copy
    Image.effect_noise((cases[1].width, cases[1].height), 40).save(root / "cut.png")
    whole = (root / "cut.png").read_bytes()
    (root / f"{cases[1].sample_id}.png").write_bytes(whole[: len(whole) // 2])
    (root / "cut.png").unlink()
    Image.new("L", (50, 50), 9).save(root / f"{cases[2].sample_id}.png")
    before = sorted(p.name for p in root.iterdir())
    sets = {}
    for method in ("uniform", "oracle_gaussian"):
        out = tmp_path / method
        r = bench_cli("run", "--method", method, *PHANTOM, "--data-root", root, "--out", out)
        _one_line_error(r, cases[1].sample_id, "cannot read image", "--skip-bad")
        r = bench_cli("run", "--method", method, *PHANTOM, "--data-root", root, "--out", out, "--skip-bad")
        assert r.code == 0, r.err
        skipped = _skipped(out)
        assert sorted(skipped) == [cases[1].sample_id, cases[2].sample_id]
        assert "is 50x50, but the dataset records" in skipped[cases[2].sample_id]
        sets[method] = list(pd.read_csv(out / "samples.csv")["sample_id"])
    assert sets["uniform"] == sets["oracle_gaussian"] and len(sets["uniform"]) == 6
    r = bench_cli("dataset", "phantom", "-O", "n_test=8", "-O", "n_train=0", "--data-root", root,
                  "--out", tmp_path / "list.csv")
    assert r.code == 0, r.err
    assert sorted(p.name for p in root.iterdir()) == before  # nothing written into the user's folder
    paths = pd.read_csv(tmp_path / "list.csv").set_index("sample_id")["image_path"]
    assert Path(paths[cases[0].sample_id]) == root / f"{cases[0].sample_id}.png"
    drawn = Path(paths[cases[3].sample_id])
    assert drawn.parent == PhantomDataset(options={"n_test": "8", "n_train": "0"}).folder and drawn.is_file()
    assert str(drawn).startswith(str(tmp_path / "cache"))


# ---- paths outside the data root -----------------------------------------------------------------------


def test_chestxray14_image_index_outside_the_root_is_refused(bench_cli, tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    Image.new("L", (1024, 1024), 1).save(secret)
    root = _nih(tmp_path / "nih", {"ok.png": (1024, 1024)})
    for entry in ("../../secret.png", str(secret), "..\\..\\secret.png"):
        (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                                 f"ok.png,Mass,100,100,200,200\n{entry},Nodule,10,10,50,50\n")
        out = tmp_path / "r"
        r = bench_cli("run", "--method", "uniform", "--dataset", "chestx-ray14", "--data-root", root, "--out", out)
        _one_line_error(r, "Image Index", repr(entry), "leads outside the data root", "--allow-outside-root")
        assert not out.exists()
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                                             "ok.png,Mass,100,100,200,200\n../../secret.png,Nodule,10,10,50,50\n")
    r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "chestx-ray14", "--data-root", root, "--out", out,
                  "--allow-outside-root")
    assert r.code == 0, r.err
    assert len(pd.read_csv(out / "samples.csv")) == 2
    assert json.loads((out / "run.json").read_text())["config"]["dataset"]["allow_outside_root"] is True


def test_a_link_leaving_the_root_is_refused(bench_cli, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "d1.jpg"
    secret.parent.mkdir()
    Image.new("L", (300, 360), 5).save(secret)
    root = tmp_path / "mimic"
    (root / "files").mkdir(parents=True)
    (root / "files" / "d1.jpg").symlink_to(secret)
    Image.new("L", (300, 360), 5).save(root / "files" / "d2.jpg")
    header = "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height\n"
    (root / "MS_CXR_Local_Alignment_v1.0.0.csv").write_text(
        header + "d1,Pneumonia,right lower lobe pneumonia,files/d1.jpg,40,120,60,50,300,360\n"
        "d2,Pneumonia,left lower lobe pneumonia,files/d2.jpg,40,120,60,50,300,360\n")
    for name in ("ms-cxr", "ms-cxr-loc"):
        r = bench_cli("dataset", name, "--data-root", root, "--out", tmp_path / "list.csv")
        _one_line_error(r, "path 'files/d1.jpg' is a link to", str(secret), "outside the data root",
                        "--allow-outside-root")
        r = bench_cli("dataset", name, "--data-root", root, "--out", tmp_path / "list.csv", "--allow-outside-root")
        assert r.code == 0, r.err
    (root / "MS_CXR_Local_Alignment_v1.0.0.csv").write_text(
        header + f"d1,Pneumonia,right lower lobe pneumonia,{secret},40,120,60,50,300,360\n")
    r = bench_cli("score", "--heatmaps", tmp_path, "--dataset", "ms-cxr", "--data-root", root, "--out", tmp_path / "s")
    _one_line_error(r, f"path {str(secret)!r} leads outside the data root")


def test_vindr_image_ids_stay_in_the_image_folder(tmp_path: Path) -> None:
    from bench.datasets import get_dataset
    from bench.datasets.anatomy_lut import PHANTOM_LUT_FILE

    (tmp_path / "annotations").mkdir()
    (tmp_path / "test").mkdir()
    Image.new("L", (100, 100), 5).save(tmp_path / "outside.png")
    (tmp_path / "annotations" / "annotations_test.csv").write_text(
        "image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n../outside,R1,Cardiomegaly,10,10,60,60\n")
    lut = {"lut": str(PHANTOM_LUT_FILE)}
    with pytest.raises(BenchError, match=r"image_id '../outside.png' leads outside the data root .*test"):
        get_dataset("vindr-cxr", tmp_path, lut).samples()
    (s,) = get_dataset("vindr-cxr", tmp_path, lut, allow_outside_root=True).samples()
    assert Path(s.image_path).resolve() == (tmp_path / "outside.png").resolve()


def test_the_python_api_takes_the_same_choice() -> None:
    import inspect

    import bench

    assert inspect.signature(bench.load_dataset).parameters["allow_outside_root"].default is False
