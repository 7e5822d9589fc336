"""The public localisation datasets read from small files in their official formats (tests/public_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import public_fixtures as fx
import pytest

from bench.core.errors import BenchError
from bench.core.fingerprint import dataset_fingerprint
from bench.core.ground_truth import MaskSource, load_mask
from bench.core.params import ABSENT
from bench.datasets import get_dataset, mask_formats
from bench.datasets.images import read_grayscale


def _by_id(samples) -> dict:
    return {s.sample_id: s for s in samples}


def _mask(sample) -> np.ndarray:
    return load_mask(sample.mask, sample.height, sample.width, sample.sample_id)


# --- encodings -------------------------------------------------------------------------------------

def test_siim_run_length_is_relative_and_column_major() -> None:
    # 4 x 3 image (w=4, h=3): column-major index = col * 3 + row
    tokens = mask_formats.siim_tokens(" 1 2 4 1")  # pixels 1, 2 then (after 4 gaps) pixel 7
    assert tokens == [1, 2, 4, 1]
    expected = np.zeros((3, 4), dtype=bool)
    expected[1, 0] = expected[2, 0] = True   # indices 1, 2: column 0, rows 1-2
    expected[1, 2] = True                    # index 7: column 2, row 1
    assert np.array_equal(mask_formats.siim_mask(tokens, 4, 3), expected)
    assert mask_formats.siim_tokens(" -1") is None


@pytest.mark.parametrize("text, message", [("1 2 3", "pairs"), ("a b", "whole numbers"), ("-2 3", "negative"),
                                           ("1 0", "run of no pixels"), ("", "pairs")])
def test_siim_malformed_run_length(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mask_formats.siim_tokens(text)


def test_siim_run_past_the_image_is_refused() -> None:
    with pytest.raises(ValueError, match="more than the 4x3 image"):
        mask_formats.siim_counts([10, 3], 4, 3)


def test_polygons_fill_with_their_boundary() -> None:
    square = mask_formats.polygon_points([[1, 1], [3, 1], [3, 2], [1, 2]])
    got = mask_formats.polygons_mask([square], 5, 4)
    assert np.array_equal(got, fx.rect(4, 5, slice(1, 3), slice(1, 4)))


@pytest.mark.parametrize("polygon, message", [([[1, 1], [2, 2]], "at least three"), ([[1, 1], [2, 2], [1]], "not \\[x, y\\]"),
                                              ([[1, 1], [2, "a"], [3, 3]], "not \\[x, y\\]"), ("x", "at least three")])
def test_malformed_polygons(polygon, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mask_formats.polygon_points(polygon)


def test_dicom_images_read_with_pydicom(tmp_path: Path) -> None:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    fx.write_dicom(tmp_path / "a.dcm", pixels)
    assert np.array_equal(read_grayscale(tmp_path / "a.dcm"), pixels)
    fx.write_dicom(tmp_path / "b.dcm", np.arange(12, dtype=np.uint8).reshape(3, 4), monochrome1=True)
    assert np.array_equal(read_grayscale(tmp_path / "b.dcm"), 255 - np.arange(12).reshape(3, 4))
    (tmp_path / "c.dcm").write_bytes(b"not a dicom")
    with pytest.raises(BenchError, match="cannot read DICOM"):
        read_grayscale(tmp_path / "c.dcm", "s")


# --- CheXlocalize ----------------------------------------------------------------------------------

def test_chexlocalize_masks_splits_and_second_reading(tmp_path: Path) -> None:
    facts = fx.chexlocalize(tmp_path)
    samples = _by_id(get_dataset("chexlocalize", tmp_path).samples())
    t0, t1 = fx.CHEX_TEST
    assert list(samples) == [f"{fx.CHEX_VAL}-Edema", f"{t0}-Cardiomegaly", f"{t0}-Airspace_Opacity",
                             f"{t1}-Pleural_Effusion"]  # val first, tasks in the published order
    opacity = samples[f"{t0}-Airspace_Opacity"]
    assert (opacity.width, opacity.height, opacity.split, opacity.category, opacity.phrase) == \
        (20, 16, "test", "airspace opacity", "airspace opacity")
    assert opacity.image_path == str(tmp_path / "CheXpert/test/patient64541/study1/view1_frontal.jpg")
    for sid, s in samples.items():
        cxr, task = sid.split("-", 1)
        assert np.array_equal(_mask(s), facts["gt"][cxr][task.replace("_", " ")]), sid
        assert s.boxes == () and s.gt_kind == "mask"
    reader2 = opacity.extra["reader2"]
    assert set(reader2) == {"mask", "points", "boxes"}
    assert np.array_equal(load_mask(MaskSource(rle=reader2["mask"]), 16, 20), facts["hb"][t0]["Airspace Opacity"])
    assert reader2["points"] == [[4.0, 3.5]] and reader2["boxes"] == []
    cardio = samples[f"{t0}-Cardiomegaly"].extra["reader2"]
    assert not load_mask(MaskSource(rle=cardio["mask"]), 16, 20).any()  # drawn by nobody: an empty mask
    assert cardio["points"] == [[1.0, 1.0], [10.2, 9.9]]
    effusion = samples[f"{t1}-Pleural_Effusion"].extra["reader2"]
    assert effusion == {"mask": None, "points": [], "boxes": []}  # a CXR not in the benchmark files
    assert "reader2" not in samples[f"{fx.CHEX_VAL}-Edema"].extra
    assert samples[f"{fx.CHEX_VAL}-Edema"].split == "val"


def test_chexlocalize_negatives_and_prompt(tmp_path: Path) -> None:
    fx.chexlocalize(tmp_path)
    every = get_dataset("chexlocalize", tmp_path, {"negatives": "keep", "prompt": "Findings suggesting {finding}"})
    samples = every.samples()
    assert len(samples) == 30  # 3 CXRs x 10 tasks
    assert samples[0].phrase == "Findings suggesting enlarged cardiomediastinum"
    assert sum(bool(_mask(s).any()) for s in samples) == 4
    with pytest.raises(BenchError, match="does not contain \\{finding\\}"):
        get_dataset("chexlocalize", tmp_path, {"prompt": "a finding"})


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update({"not_an_id": d.pop(fx.CHEX_TEST[1])}), "CXR id 'not_an_id' is not patient"),
    (lambda d: d[fx.CHEX_TEST[0]].update({"Lung Opacity": d[fx.CHEX_TEST[0]]["Cardiomegaly"]}),
     "unknown task 'Lung Opacity'"),
    (lambda d: d[fx.CHEX_TEST[0]].update({"Cardiomegaly": {"size": [16, 20]}}), "Cardiomegaly: not an RLE object"),
    (lambda d: d[fx.CHEX_TEST[0]].update({"Cardiomegaly": {"size": [16, 0], "counts": "0"}}), "not a positive"),
])
def test_chexlocalize_malformed_files_one_line(tmp_path: Path, bench_cli, edit, message: str) -> None:
    fx.chexlocalize(tmp_path)
    path = tmp_path / "CheXlocalize" / "gt_segmentations_test.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=message):
        get_dataset("chexlocalize", tmp_path).samples()
    res = bench_cli("dataset", "chexlocalize", "--data-root", tmp_path, "--out", tmp_path / "s.csv")
    assert res.code != 0 and len(res.err.strip().splitlines()) == 1 and not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("counts, message", [("zzzz", "character 'z' is not a COCO RLE character"),
                                              ("1", "do not add up to its 16x20 size"),
                                              ("PVWX6", "do not add up to its 16x20 size")])
def test_chexlocalize_corrupt_rle_is_one_line_and_nothing_written(tmp_path: Path, bench_cli, counts, message) -> None:
    fx.chexlocalize(tmp_path)
    path = tmp_path / "CheXlocalize" / "gt_segmentations_test.json"
    data = json.loads(path.read_text())
    data[fx.CHEX_TEST[0]]["Cardiomegaly"]["counts"] = counts  # pycocotools would decode these into garbage
    path.write_text(json.dumps(data))
    res = bench_cli("dataset", "chexlocalize", "--data-root", tmp_path, "--out", tmp_path / "s.csv")
    assert res.code != 0 and len(res.err.strip().splitlines()) == 1, res.err
    assert f"{fx.CHEX_TEST[0]}: Cardiomegaly: RLE counts" in res.err and message in res.err
    assert not (tmp_path / "s.csv").exists()


def test_chexlocalize_benchmark_points_malformed(tmp_path: Path) -> None:
    fx.chexlocalize(tmp_path)
    path = tmp_path / "CheXlocalize" / "hb_salient_pt_test.json"
    path.write_text(json.dumps({fx.CHEX_TEST[0]: {"Cardiomegaly": [[1, "x"]]}}))
    with pytest.raises(BenchError, match="hb_salient_pt_test.json: .*Cardiomegaly: point \\[1, 'x'\\]"):
        get_dataset("chexlocalize", tmp_path).samples()


# --- RSNA Pneumonia --------------------------------------------------------------------------------

def test_rsna_boxes_and_dicom(tmp_path: Path) -> None:
    expected = fx.rsna(tmp_path)
    ds = get_dataset("rsna-pneumonia", tmp_path)
    samples = _by_id(ds.samples())
    assert list(samples) == list(expected)  # the four negative patients have nothing to score
    for pid, boxes in expected.items():
        s = samples[pid]
        assert (s.boxes, s.width, s.height, s.category, s.phrase, s.split) == (boxes, 1024, 1024, "pneumonia",
                                                                              "pneumonia", "test")
        assert s.image_path == str(tmp_path / "stage_2_train_images" / f"{pid}.dcm")
    image = ds.load_image(samples[fx.RSNA_POSITIVE])
    assert image.shape == (1024, 1024) and image[150, 200] == 200 and image[0, 0] == 0
    assert ds.check_images(list(samples.values())) == {}


@pytest.mark.parametrize("row, message", [("abc,1,2,3,4,1", ""), ("abc,1,2,3,4,2", "Target is '2'"),
                                          ("abc,,,,,1", "Target 1 without a numeric box")])
def test_rsna_bad_rows(tmp_path: Path, row: str, message: str) -> None:
    fx.rsna(tmp_path)
    csv = tmp_path / "stage_2_train_labels.csv"
    csv.write_text(csv.read_text() + row + "\n")
    if not message:
        assert "abc" in _by_id(get_dataset("rsna-pneumonia", tmp_path).samples())
        return
    with pytest.raises(BenchError, match=message):
        get_dataset("rsna-pneumonia", tmp_path).samples()


def test_rsna_end_to_end_run_and_score(tmp_path: Path, bench_cli) -> None:
    fx.rsna(tmp_path / "data")
    res = bench_cli("run", "-m", "oracle_gaussian", "-d", "rsna-pneumonia", "--data-root", tmp_path / "data",
                    "--out", tmp_path / "run")
    assert res.code == 0, res.err
    table = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert sorted(table["sample_id"]) == sorted(fx.rsna(tmp_path / "again"))
    assert (table["pointing_game"] == 1).all()
    res = bench_cli("score", "--heatmaps", tmp_path / "run", "-d", "rsna-pneumonia", "--data-root",
                    tmp_path / "data", "--out", tmp_path / "scored")
    assert res.code == 0, res.err
    assert np.allclose(pd.read_csv(tmp_path / "scored" / "samples.csv")["miou"], table["miou"])


# --- SIIM-ACR --------------------------------------------------------------------------------------

@pytest.mark.parametrize("header, name", [("ImageId, EncodedPixels", "train-rle.csv"),
                                          ("ImageId,EncodedPixels", "stage_2_train.csv")])
def test_siim_masks_united_per_image(tmp_path: Path, header: str, name: str) -> None:
    expected = fx.siim(tmp_path, header, name)
    ds = get_dataset("siim-acr-pneumothorax", tmp_path)
    samples = _by_id(ds.samples())
    assert list(samples) == [fx.SIIM_IDS[0], fx.SIIM_IDS[2]]  # the -1 image is left out
    for uid, mask in expected.items():
        s = samples[uid]
        assert (s.width, s.height, s.category, s.phrase, s.boxes) == (1024, 1024, "pneumothorax", "pneumothorax", ())
        assert np.array_equal(_mask(s), mask)
        assert Path(s.image_path).name == f"{uid}.dcm" and Path(s.image_path).is_file()
    assert samples[fx.SIIM_IDS[0]].extra["instances"] == 2
    assert ds.load_image(samples[fx.SIIM_IDS[2]])[0, 0] == 248  # MONOCHROME1 inverted: 7 becomes 255 - 7
    kept = _by_id(get_dataset("siim-acr-pneumothorax", tmp_path, {"negatives": "keep"}).samples())
    assert not _mask(kept[fx.SIIM_IDS[1]]).any() and len(kept) == 3


@pytest.mark.parametrize("cell, message", [("1 2 3", "data row 5 .*: EncodedPixels has 3 numbers"),
                                           ("1048570 10", "covers 1048580 pixels"),
                                           ("x y", "not whitespace-separated whole numbers")])
def test_siim_malformed_rows_one_line_nothing_written(tmp_path: Path, bench_cli, cell: str, message: str) -> None:
    fx.siim(tmp_path)
    csv = tmp_path / "train-rle.csv"
    csv.write_text(csv.read_text() + f"1.2.3, {cell}\n")
    with pytest.raises(BenchError, match=message):
        get_dataset("siim-acr-pneumothorax", tmp_path).samples()
    res = bench_cli("dataset", "siim-acr-pneumothorax", "--data-root", tmp_path, "--out", tmp_path / "s.csv")
    assert res.code != 0 and len(res.err.strip().splitlines()) == 1 and not (tmp_path / "s.csv").exists()


# --- ChestX-Det ------------------------------------------------------------------------------------

def test_chestx_det_polygons_to_masks_and_inclusive_boxes(tmp_path: Path) -> None:
    expected = fx.chestx_det(tmp_path)
    samples = _by_id(get_dataset("chestx-det", tmp_path).samples())
    assert list(samples) == list(expected)  # the image without findings has no sample
    for sid, (mask, boxes) in expected.items():
        s = samples[sid]
        assert np.array_equal(_mask(s), mask), sid
        assert s.boxes == boxes and (s.width, s.height) == (10, 12)
    assert samples["40001-Mass"].split == "test" and samples["36302-Nodule"].split == "train"
    assert samples["36302-Effusion"].category == "effusion"
    boxes_only = _by_id(get_dataset("chestx-det", tmp_path, {"gt": "boxes", "prompt": "{finding} here"}).samples())
    assert boxes_only["36302-Nodule"].mask is None and boxes_only["36302-Nodule"].gt_kind == "boxes"
    assert boxes_only["36302-Nodule"].phrase == "nodule here"


@pytest.mark.parametrize("edit, message", [
    (lambda e: e.update(polygons=e["polygons"][:2]), "polygons not one per finding"),
    (lambda e: e.pop("polygons"), "polygons missing .*-O gt=boxes"),
    (lambda e: e["polygons"].__setitem__(1, [[5, 6], [8, 6]]), "polygon of Effusion: a polygon needs at least three"),
    (lambda e: e["polygons"].__setitem__(1, [[50, 60], [80, 60], [80, 90]]), "polygons of Effusion lie outside"),
    (lambda e: e["boxes"].__setitem__(1, [5, 6, 4, 9]), "x2 < x1"),
    (lambda e: e["boxes"].__setitem__(1, [5, 6, 8]), "not \\[x1, y1, x2, y2\\]"),
    (lambda e: e.update(file_name="../x.png"), "leads outside the data root"),
    (lambda e: e.update(file_name="99999.png"), "image not found"),
])
def test_chestx_det_malformed_one_line_nothing_written(tmp_path: Path, bench_cli, edit, message: str) -> None:
    fx.chestx_det(tmp_path)
    path = tmp_path / "ChestX_Det_train.json"
    data = json.loads(path.read_text())
    edit(data[0])
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match=message):
        get_dataset("chestx-det", tmp_path).samples()
    res = bench_cli("dataset", "chestx-det", "--data-root", tmp_path, "--out", tmp_path / "s.csv")
    assert res.code != 0 and len(res.err.strip().splitlines()) == 1 and not (tmp_path / "s.csv").exists()


def test_chestx_det_boxes_end_to_end_and_mask_table(tmp_path: Path, bench_cli) -> None:
    fx.chestx_det(tmp_path / "data")
    res = bench_cli("run", "-m", "oracle_gaussian", "-d", "chestx-det", "-O", "gt=boxes", "--data-root",
                    tmp_path / "data", "--out", tmp_path / "run")
    assert res.code == 0, res.err
    assert list(pd.read_csv(tmp_path / "run" / "samples.csv")["sample_id"]) == ["40001-Mass"]
    res = bench_cli("dataset", "chestx-det", "--data-root", tmp_path / "data", "--out", tmp_path / "s.csv")
    assert res.code == 0, res.err
    table = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    assert list(table.columns)[-1] == "mask"
    again = _by_id(get_dataset(str(tmp_path / "s.csv"), tmp_path / "data").samples())
    assert np.array_equal(_mask(again["36302-Nodule"]), fx.chestx_det(tmp_path / "again")["36302-Nodule"][0])


# --- PadChest-GR -----------------------------------------------------------------------------------

def test_padchest_gr_sentences_boxes_and_second_reader(tmp_path: Path) -> None:
    expected = fx.padchest_gr(tmp_path)
    ds = get_dataset("padchest-gr", tmp_path)
    samples = ds.samples()
    assert [s.phrase for s in samples] == ["Cardiomegaly.", "Right pleural effusion.", "Nodule."]
    for s in samples:
        assert s.boxes == expected[s.phrase] and (s.width, s.height) == (40, 20)
    cardio, effusion, nodule = samples
    assert cardio.sample_id.startswith("img1-") and len(cardio.sample_id) == len("img1-") + 8
    assert (cardio.category, cardio.split, nodule.category, nodule.split) == ("cardiomegaly", "test", "finding", "val")
    assert cardio.extra["reader2"]["mask"] is None and cardio.extra["reader2"]["points"] == []
    assert cardio.extra["reader2"]["boxes"] == [pytest.approx(b) for b in expected["reader2"]]
    assert "reader2" not in effusion.extra
    assert any("1 sentence(s) without boxes" in n for n in ds.notes)


def test_padchest_gr_refuses_boxes_that_are_not_normalised(tmp_path: Path) -> None:
    fx.padchest_gr(tmp_path)
    path = tmp_path / "grounded_reports_20240819.json"
    data = json.loads(path.read_text())
    data[0]["findings"][0]["boxes"] = [[10, 20, 30, 40]]
    path.write_text(json.dumps(data))
    with pytest.raises(BenchError, match="finding 1: boxes: box \\[10, 20, 30, 40\\] is not normalised"):
        get_dataset("padchest-gr", tmp_path).samples()


def test_padchest_gr_end_to_end(tmp_path: Path, bench_cli) -> None:
    fx.padchest_gr(tmp_path / "data")
    res = bench_cli("run", "-m", "oracle_gaussian", "-d", "padchest-gr", "--data-root", tmp_path / "data",
                    "--out", tmp_path / "run")
    assert res.code == 0, res.err
    assert len(pd.read_csv(tmp_path / "run" / "samples.csv")) == 2  # the test split: image 1's two sentences


def test_chexlocalize_published_sample_files(tmp_path: Path) -> None:
    """The two-CXR sample of the CheXlocalize repository: masks at the radiographs' sizes (2828 x 2320 and
    2021 x 2022, as the published JPGs are), equal pixel for pixel, and byte for byte as RLE, to its
    radiologists' polygons filled as `mask_formats.polygons_mask` fills them."""
    sample = Path(__file__).parent / "data" / "chexlocalize_sample"
    (tmp_path / "CheXlocalize").mkdir()
    (tmp_path / "CheXlocalize" / "gt_segmentations_val.json").write_bytes((sample / "gt_segmentations_val.json").read_bytes())
    samples = get_dataset("chexlocalize", tmp_path).samples()
    assert [(s.sample_id, s.width, s.height) for s in samples] == [
        ("patient64541_study1_view1_frontal-Enlarged_Cardiomediastinum", 2828, 2320),
        ("patient64541_study1_view1_frontal-Cardiomegaly", 2828, 2320),
        ("patient64541_study1_view1_frontal-Airspace_Opacity", 2828, 2320),
        ("patient64542_study1_view1_frontal-Support_Devices", 2021, 2022)]
    polygons = json.loads((sample / "gt_annotations_val.json").read_text())
    for s in samples:
        drawn = mask_formats.polygons_mask(polygons[s.extra["cxr_id"]][s.extra["task"]], s.width, s.height)
        assert np.array_equal(_mask(s), drawn) and mask_formats.encode(drawn) == s.mask.rle
    assert len(get_dataset("chexlocalize", tmp_path, {"negatives": "keep"}).samples()) == 20


def test_rsna_images_found_below_the_root_and_missing_ones_reported(tmp_path: Path) -> None:
    fx.rsna(tmp_path)
    moved = tmp_path / "elsewhere" / f"{fx.RSNA_POSITIVE}.dcm"
    moved.parent.mkdir()
    (tmp_path / "stage_2_train_images" / f"{fx.RSNA_POSITIVE}.dcm").rename(moved)
    (tmp_path / "stage_2_train_images" / "00704310-78a8-4b38-8475-49f4573b2dbb.dcm").unlink()
    ds = get_dataset("rsna-pneumonia", tmp_path)
    samples = _by_id(ds.samples())
    assert samples[fx.RSNA_POSITIVE].image_path == str(moved)
    problems = ds.check_images(list(samples.values()))
    assert list(problems) == ["00704310-78a8-4b38-8475-49f4573b2dbb"] and "image not found" in problems[
        "00704310-78a8-4b38-8475-49f4573b2dbb"]


def test_chexlocalize_to_a_jsonl_file_keeps_masks_and_the_second_reading(tmp_path: Path, bench_cli) -> None:
    fx.chexlocalize(tmp_path)
    res = bench_cli("dataset", "chexlocalize", "--data-root", tmp_path, "--out", tmp_path / "chex.jsonl")
    assert res.code == 0, res.err
    original = get_dataset("chexlocalize", tmp_path).samples()
    again = get_dataset(str(tmp_path / "chex.jsonl")).samples()
    assert again == original
    assert [s.extra for s in again] == [s.extra for s in original]


# --- what a refactoring of the readers must keep ---------------------------------------------------

PROMPT_HELP = "phrase template over {finding} (default '{finding}'), e.g. 'Findings suggesting {finding}'"


@pytest.mark.parametrize("name, write, options, count, fingerprint", [
    ("chexlocalize", fx.chexlocalize, {}, 4, "76c01fdfd393fa1f"),
    ("chexlocalize", fx.chexlocalize, {"negatives": "drop", "prompt": "{finding}"}, 4, "76c01fdfd393fa1f"),
    ("chexlocalize", fx.chexlocalize, {"negatives": "keep", "prompt": "Findings suggesting {finding}"}, 30,
     "655b3dde04a4686e"),
    ("rsna-pneumonia", fx.rsna, {}, 2, "a972e2cd600c3982"),
    ("rsna-pneumonia", fx.rsna, {"prompt": "{finding} here"}, 2, "eb74c738a0b0cae0"),
    ("siim-acr-pneumothorax", fx.siim, {}, 2, "64d459698e425172"),
    ("siim-acr-pneumothorax", fx.siim, {"negatives": "keep"}, 3, "da570233689e4eaa"),
    ("chestx-det", fx.chestx_det, {}, 3, "6214f2ae27157f3a"),
    ("chestx-det", fx.chestx_det, {"gt": "mask"}, 3, "6214f2ae27157f3a"),
    ("chestx-det", fx.chestx_det, {"gt": "boxes", "prompt": "{finding} here"}, 3, "0def0a8ea8071649"),
    ("padchest-gr", fx.padchest_gr, {}, 3, "c052c0e8b2cab724"),
])
def test_public_dataset_fingerprints_are_pinned(tmp_path: Path, name: str, write, options: dict, count: int,
                                                fingerprint: str) -> None:
    """Fingerprints are part of a run's identity: each reader's, on its fixture, is the value it has always had;
    an option given at its default is the same dataset as no option."""
    write(tmp_path)
    ds = get_dataset(name, tmp_path, options)
    samples = ds.samples()
    assert len(samples) == count
    assert dataset_fingerprint(name, ds.fingerprint_options(), samples) == fingerprint


@pytest.mark.parametrize("name, holds, options", [
    ("chexlocalize", "the folder holding CheXlocalize/ and CheXpert/",
     {"prompt": ("{finding}", ()), "negatives": ("drop", ("drop", "keep"))}),
    ("rsna-pneumonia", "the folder with stage_2_train_labels.csv and stage_2_train_images/",
     {"prompt": ("{finding}", ()), "csv": (ABSENT, ())}),
    ("siim-acr-pneumothorax", "the folder with stage_2_train.csv and the DICOM images",
     {"prompt": ("{finding}", ()), "negatives": ("drop", ("drop", "keep")), "csv": (ABSENT, ())}),
    ("chestx-det", "the folder with ChestX_Det_train.json, ChestX_Det_test.json and the PNG images",
     {"prompt": ("{finding}", ()), "gt": ("mask", ("mask", "boxes")), "train": ("ChestX_Det_train.json", ()),
      "test": ("ChestX_Det_test.json", ())}),
    ("padchest-gr", "the folder with grounded_reports_20240819.json and the PNG images",
     {"json": ("grounded_reports_20240819.json", ())}),
])
def test_public_dataset_options_and_root_line(name: str, holds: str, options: dict) -> None:
    ds = get_dataset(name, None)
    params = ds.option_params()
    assert {k: (p.default, p.choices) for k, p in params.items()} == options
    assert list(params) == list(options) and all(p.kind is str for p in params.values())
    with pytest.raises(BenchError) as err:
        ds.root()
    assert str(err.value) == f"{name} needs --data-root ({holds})"
    if "prompt" in params:
        assert params["prompt"].help == PROMPT_HELP
        assert ds.prompt == "{finding}"
        with pytest.raises(BenchError) as err:
            get_dataset(name, None, {"prompt": "{finding} of {site}"})
        assert str(err.value) == (f"dataset {name}: prompt '{{finding}} of {{site}}' is not valid: use {{finding}} "
                                  "as its only field ('site')")
        with pytest.raises(BenchError) as err:
            get_dataset(name, None, {"prompt": "a finding"})
        assert str(err.value) == f"dataset {name}: prompt 'a finding' does not contain {{finding}}"
