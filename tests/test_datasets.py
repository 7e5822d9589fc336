"""The three dataset loaders: phantom (built in), ChestX-ray14 (NIH box subset), MS-CXR (official CSV)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.core.errors import BenchError, SampleError
from bench.core.geometry import box_mask
from bench.core.samples import validate_sample
from bench.datasets import get_dataset
from bench.datasets.chestxray14 import ChestXray14Dataset
from bench.datasets.ms_cxr import MsCxrDataset
from bench.datasets.phantom import CATEGORIES, PhantomDataset, flip_side, phrase_for

NIH_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-cxr14-bbox"

# ---- phantom ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> PhantomDataset:
    return PhantomDataset(tmp_path_factory.mktemp("phantom"))


@pytest.fixture(scope="module")
def phantom_samples(phantom: PhantomDataset) -> list:
    return phantom.samples()


def test_phantom_counts_ids_and_categories(phantom: PhantomDataset, phantom_samples: list) -> None:
    test = [s for s in phantom_samples if s.split == "test"]
    train = [s for s in phantom_samples if s.split == "train"]
    assert len(test) == 200 and len(train) == 400
    assert Counter(s.category for s in test) == {c: 25 for c in CATEGORIES}
    assert Counter(s.category for s in train) == {c: 50 for c in CATEGORIES}
    assert set(CATEGORIES) == {"atelectasis", "cardiomegaly", "consolidation", "edema", "lung opacity",
                               "pleural effusion", "pneumonia", "pneumothorax"}
    assert test[17].sample_id == "phantom-test-00017" and train[3].sample_id == "phantom-train-00003"
    assert len({s.sample_id for s in phantom_samples}) == 600
    small = PhantomDataset(phantom.folder, {"n_test": "16", "n_train": "8"}).samples()
    assert [s.sample_id for s in small] == [s.sample_id for s in test[:16] + train[:8]]
    assert small == test[:16] + train[:8]


def test_phantom_is_deterministic(phantom_samples: list, tmp_path: Path) -> None:
    again = get_dataset("phantom", tmp_path, {"seed": "0"})
    listed = again.samples()
    # a data root without the images: every one is drawn into the cache, as without a data root
    assert [(s, s.extra) for s in listed] == [(s, s.extra) for s in phantom_samples]
    other = PhantomDataset(options={"seed": "1", "n_test": "8", "n_train": "0"}).samples()
    assert [s.boxes for s in other] != [s.boxes for s in phantom_samples[:8]]
    first = PhantomDataset(tmp_path / "a")
    for s in listed[:3]:
        cached = again.load_image(s)  # rendered now and written as a PNG
        assert cached.dtype == np.uint8 and cached.shape == (s.height, s.width)
        assert Path(s.image_path).is_file()
        assert np.array_equal(again.load_image(s), cached)  # read back from the PNG
        assert np.array_equal(first.render(s), cached)  # another instance draws the same pixels
    assert not any(tmp_path.iterdir())  # nothing written into the data root


def test_phantom_sizes_and_boxes(phantom_samples: list) -> None:
    sizes = {(s.width, s.height) for s in phantom_samples}
    assert all(384 <= v <= 1024 for wh in sizes for v in wh)
    assert sum(w > h for w, h in sizes) >= 20 and sum(w < h for w, h in sizes) >= 20
    assert sum(w == h for w, h in sizes) >= 20
    assert len(sizes) > 100
    nboxes = Counter(len(s.boxes) for s in phantom_samples)
    assert set(nboxes) == {1, 2} and nboxes[2] >= 75  # every edema, some pneumonia and atelectasis
    for s in phantom_samples:
        validate_sample(s)
        for x, y, w, h in s.boxes:
            assert all(float(v).is_integer() for v in (x, y, w, h))
            assert 0 <= x and 0 <= y and x + w <= s.width and y + h <= s.height and w >= 2 and h >= 2
        if s.category == "edema":
            assert len(s.boxes) == 2


def test_phantom_mimic_size_lists_fast_without_rendering(tmp_path: Path, monkeypatch, phantom_samples) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    ds = PhantomDataset(options={"size": "mimic", "n_test": "400", "n_train": "800"})
    start = time.perf_counter()
    samples = ds.samples()
    elapsed = time.perf_counter() - start
    assert len(samples) == 1200 and elapsed < 1.5, elapsed
    assert {(s.width, s.height) for s in samples} == {(2544, 3056)}
    assert not any(tmp_path.rglob("*.png"))
    assert Path(samples[0].image_path).parent == tmp_path / "phantom" / "v2-seed0-mimic"
    for s in samples:
        validate_sample(s)
    # the size option changes pixels and boxes, not the findings
    default = {s.sample_id: s for s in phantom_samples}
    assert all((s.category, s.phrase, s.extra["side"]) == (default[s.sample_id].category, default[s.sample_id].phrase,
                                                           default[s.sample_id].extra["side"])
               for s in samples if s.sample_id in default)


def test_radiological_convention(phantom_samples: list) -> None:
    seen = Counter()
    for s in phantom_samples:
        side = s.extra["side"]
        centres = [x + w / 2 for x, y, w, h in s.boxes]
        words = set(s.phrase.replace(",", " ").split())
        if side == "right":
            assert all(c < s.width / 2 for c in centres), s
            assert "right" in words and "left" not in words
        elif side == "left":
            assert all(c > s.width / 2 for c in centres), s
            assert "left" in words and "right" not in words
        elif side == "bilateral":
            assert len(centres) == 2 and min(centres) < s.width / 2 < max(centres)
        else:
            assert s.category == "cardiomegaly" and side == "none"
            assert centres[0] > s.width / 2  # the heart lies mostly on the image's right
        seen[side] += 1
    assert seen["right"] > 150 and seen["left"] > 150


def test_phrase_helpers(phantom_samples: list) -> None:
    assert phrase_for("pneumothorax", "right", "apical", "small", 0) == "small right apical pneumothorax"
    assert phrase_for("consolidation", "left", "lower", "large", 0) == "left lower lobe consolidation"
    assert phrase_for("edema", "bilateral", "perihilar", "mild", 0) == "bilateral perihilar edema"
    assert phrase_for("cardiomegaly", "none", "heart", "severe", 1) == "severe cardiomegaly"
    with pytest.raises(ValueError):
        phrase_for("mass", "right", "upper")
    with pytest.raises(ValueError):
        phrase_for("pleural effusion", "central", "lower")
    assert flip_side("small right apical pneumothorax") == "small left apical pneumothorax"
    assert flip_side("Right lower lobe and left base; RIGHT") == "Left lower lobe and right base; LEFT"
    assert flip_side("bright, leftover cardiomegaly") == "bright, leftover cardiomegaly"
    templates = Counter()
    for s in phantom_samples:
        e = s.extra
        assert s.phrase == phrase_for(s.category, e["side"], e["zone"], e["size"], e["variant"])
        assert flip_side(flip_side(s.phrase)) == s.phrase
        templates[(s.category, s.phrase.replace(e["size"], "#"))] += 1
    per_category = Counter(c for c, _ in templates)
    assert all(per_category[c] >= 3 for c in CATEGORIES), per_category


def _one_per_category(samples: list) -> list:
    firsts: dict = {}
    for s in samples:
        firsts.setdefault(s.category, s)
    return [firsts[c] for c in CATEGORIES]


def test_lesions_change_pixels_only_inside_their_boxes(phantom: PhantomDataset, phantom_samples: list) -> None:
    picks = _one_per_category(phantom_samples[:8]) + [s for s in phantom_samples[:40] if s.extra["side"] == "bilateral"
                                                       and s.category != "edema"][:1]
    for s in picks:
        sick = phantom.render(s).astype(np.int16)
        healthy = phantom.render(s, with_lesion=False).astype(np.int16)
        inside = box_mask(s.boxes, s.height, s.width)
        diff = sick - healthy
        assert not diff[~inside].any(), s.sample_id
        for box in s.boxes:
            m = box_mask([box], s.height, s.width)
            change = sick[m].mean() - healthy[m].mean()
            if s.category == "pneumothorax":
                assert change < -5, (s.sample_id, change)  # darker: air without lung markings
            else:
                assert change > 8, (s.sample_id, change)
            rows, cols = np.nonzero(diff * m)
            x, y, w, h = box
            assert cols.max() - cols.min() + 1 >= 0.7 * w and rows.max() - rows.min() + 1 >= 0.7 * h, s.sample_id


def test_unilateral_lesion_differs_from_its_mirror(phantom: PhantomDataset, phantom_samples: list) -> None:
    s = next(s for s in phantom_samples if s.category == "lung opacity")
    img = phantom.load_image(s).astype(float)
    x, y, w, h = (int(v) for v in s.boxes[0])
    mirror = (s.width - x - w, y, w, h)
    own = img[y:y + h, x:x + w].mean()
    other = img[mirror[1]:mirror[1] + h, mirror[0]:mirror[0] + w].mean()
    assert own > other + 10


def test_phantom_render_speed_and_materialise(tmp_path: Path, phantom: PhantomDataset, phantom_samples,
                                              monkeypatch) -> None:
    largest = max(phantom_samples, key=lambda s: s.width * s.height)
    assert largest.width * largest.height >= 1000 * 1000
    phantom.render(largest)
    start = time.perf_counter()
    phantom.render(largest)
    assert time.perf_counter() - start < 1.0
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    ds = PhantomDataset(tmp_path / "mine", {"n_test": "4", "n_train": "1"})  # no images there: all drawn
    samples = ds.samples()
    assert not (tmp_path / "cache").exists() and ds.folder.is_relative_to(tmp_path / "cache")
    advanced = []
    assert ds.materialise(samples, progress=advanced.append) == 5 and sum(advanced) == 5
    for s in samples:
        with Image.open(s.image_path) as img:
            assert img.mode == "L" and img.size == (s.width, s.height)
    assert ds.materialise(samples) == 0
    assert not list(ds.folder.glob(".*.tmp")) and not (tmp_path / "mine").exists()


def test_phantom_options(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    assert PhantomDataset(options={"seed": "3"}).folder == tmp_path / "phantom" / "v2-seed3-default"
    assert PhantomDataset(tmp_path / "mine").folder == tmp_path / "phantom" / "v2-seed0-default"  # read, never written
    monkeypatch.delenv("BENCH_CACHE")
    assert PhantomDataset().folder == Path.home() / ".cache" / "cxr-grounding-bench" / "phantom" / "v2-seed0-default"
    for options, words in (({"size": "huge"}, "size=huge is not one of"), ({"n_test": "-1"}, "n_test=-1"),
                           ({"seed": "x"}, "seed=x is not an integer"), ({"colour": "1"}, "unknown option 'colour'")):
        with pytest.raises(BenchError, match=words):
            PhantomDataset(options=options)


# ---- ChestX-ray14 -----------------------------------------------------------------------------------

ODD_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"


@pytest.fixture
def nih_root() -> Path:
    if not (NIH_ROOT / "BBox_List_2017.csv").is_file():
        pytest.skip(f"NIH box sample not at {NIH_ROOT}")
    return NIH_ROOT


def test_chestxray14_on_the_nih_sample(nih_root: Path) -> None:
    csv = nih_root / "BBox_List_2017.csv"
    raw = pd.read_csv(csv)
    assert len(raw) == 221
    rows = raw.iloc[:, :6].set_axis(["image", "finding", "x", "y", "w", "h"], axis=1)
    rows["category"] = rows["finding"].str.lower()
    expected = rows.groupby(["image", "category"], sort=False)
    samples = ChestXray14Dataset(nih_root).samples()
    assert len(samples) == expected.ngroups
    assert len({s.sample_id for s in samples}) == len(samples)
    assert {s.category for s in samples} == {"atelectasis", "cardiomegaly", "effusion", "infiltrate", "mass",
                                             "nodule", "pneumonia", "pneumothorax"}
    by_id = {s.sample_id: s for s in samples}
    for (image, category), group in expected:
        s = by_id[f"{image[:-4]}-{category}"]
        assert s.boxes == tuple(tuple(float(v) for v in r) for r in group[["x", "y", "w", "h"]].to_numpy())
        assert Path(s.image_path) == nih_root / "images" / image and (s.width, s.height) == (1024, 1024)
        assert s.split == "test"
    first = by_id["00030674_000-atelectasis"]
    assert first.boxes == ((632.949152542373, 251.968369306144, 227.796610169492, 210.440677966102),)
    assert first.phrase == "atelectasis"
    effusion = next(s for s in samples if s.category == "effusion")
    assert effusion.phrase == "pleural effusion"
    several = rows.groupby("image")["category"].nunique()
    multi = several[several > 1].index[0]
    assert sum(s.extra["image"] == multi for s in samples) == several[multi]
    pixels = ChestXray14Dataset(nih_root).load_image(first)
    assert pixels.shape == (1024, 1024) and pixels.dtype == np.uint8


def _nih_tree(root: Path, header: str | None = ODD_HEADER) -> Path:
    rows = [
        "a.png,Effusion,10.5,20.25,30.125,40.0",
        "b.png,Infiltrate,1.0,2.0,100.0,50.0",
        "a.png,Mass,200,210,20,25",
        "a.png,Effusion,150.75,160.5,30,20",
        "c.png,Nodule,5,5,10,10",
        "d.png,Pneumothorax,50,60,70,80",
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "BBox_List_2017.csv").write_text("\n".join(([header] if header else []) + rows) + "\n")
    (root / "images").mkdir(exist_ok=True)
    Image.new("L", (1024, 1024), 40).save(root / "images" / "a.png")
    Image.new("RGBA", (1024, 1024), (200, 100, 50, 10)).save(root / "b.png")
    (root / "images_002" / "images").mkdir(parents=True, exist_ok=True)
    Image.new("L", (64, 64), 7).save(root / "images_002" / "images" / "d.png")
    return root


@pytest.mark.parametrize("header", [ODD_HEADER, "Image Index,Finding Label,x,y,w,h", None])
def test_chestxray14_synthetic(tmp_path: Path, header: str | None) -> None:
    root = _nih_tree(tmp_path / "nih", header)
    samples = ChestXray14Dataset(root).samples()
    assert [s.sample_id for s in samples] == ["a-effusion", "b-infiltrate", "a-mass", "c-nodule", "d-pneumothorax"]
    a = samples[0]
    assert a.boxes == ((10.5, 20.25, 30.125, 40.0), (150.75, 160.5, 30.0, 20.0))
    assert (a.width, a.height, a.category, a.phrase) == (1024, 1024, "effusion", "pleural effusion")
    b = samples[1]
    assert (b.width, b.height, b.phrase, Path(b.image_path)) == (1024, 1024, "pulmonary infiltrate", root / "b.png")
    pixels = ChestXray14Dataset(root).load_image(b)
    assert pixels.shape == (1024, 1024) and pixels.dtype == np.uint8 and int(pixels[0, 0]) == 124
    c = samples[3]
    assert (c.width, c.height) == (1024, 1024)
    with pytest.raises(SampleError, match="c.png"):
        ChestXray14Dataset(root).load_image(c)
    d = samples[4]
    assert Path(d.image_path) == root / "images_002" / "images" / "d.png" and d.width == 1024
    with pytest.raises(SampleError, match=r"d.png is 64x64, but the dataset records 1024x1024"):
        ChestXray14Dataset(root).load_image(d)
    problems = ChestXray14Dataset(root).check_images(samples)
    assert sorted(problems) == ["c-nodule", "d-pneumothorax"]
    assert "image not found" in problems["c-nodule"] and "is 64x64" in problems["d-pneumothorax"]
    templated = ChestXray14Dataset(root, {"template": "findings of {finding}"}).samples()
    assert [s.phrase for s in templated][:3] == ["findings of pleural effusion", "findings of pulmonary infiltrate",
                                                 "findings of lung mass"]


def test_chestxray14_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BENCH_NIH_ROOT", raising=False)
    with pytest.raises(BenchError, match="--data-root"):
        ChestXray14Dataset().samples()
    with pytest.raises(BenchError, match="BBox_List_2017.csv not found"):
        ChestXray14Dataset(tmp_path).samples()
    root = _nih_tree(tmp_path / "env")
    monkeypatch.setenv("BENCH_NIH_ROOT", str(root))
    assert len(ChestXray14Dataset().samples()) == 5
    csv = root / "BBox_List_2017.csv"
    csv.write_text("Image Index,Finding Label,x,y\na.png,Mass,1,2\n")
    with pytest.raises(BenchError, match="expected 6 columns") as err:
        ChestXray14Dataset(root).samples()
    assert str(csv) in str(err.value) and "\n" not in str(err.value)
    csv.write_text(ODD_HEADER + "\na.png,Mass,1,2,wide,4\n")
    with pytest.raises(BenchError, match="box column w is not a number"):
        ChestXray14Dataset(root).samples()
    for template in ("{finding} {where}", "no field"):
        with pytest.raises(BenchError, match="template"):
            ChestXray14Dataset(root, {"template": template})


# ---- MS-CXR -----------------------------------------------------------------------------------------

MS_COLUMNS = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height"]
D1, D2, D3 = "d1a2b3c4-0000", "e5f6a7b8-1111", "c9d0e1f2-2222"
MS_ROWS = [
    [D1, "Pneumonia", "right lower lobe pneumonia", f"files/p10/p10000001/s50000001/{D1}.jpg",
     40, 120, 60, 50, 300, 360, "train"],
    [D1, "Pleural Effusion", "small left effusion", f"files/p10/p10000001/s50000001/{D1}.jpg",
     190, 250, 70, 40, 300, 360, "train"],
    [D2, "Lung Opacity", "patchy opacity in the right upper lung", f"files/p11/p11000002/s51000002/{D2}.jpg",
     30, 40, 80, 60, 320, 280, "val"],
    [D1, "Pneumonia", "right lower lobe pneumonia", f"files/p10/p10000001/s50000001/{D1}.jpg",
     200, 100, 40, 30, 300, 360, "train"],
    [D3, "Cardiomegaly", "cardiomegaly", f"files/p12/p12000003/s52000003/{D3}.jpg",
     100, 150, 150, 100, 400, 400, "test"],
]


def fake_ms_cxr(root: Path, version: str = "1.1.0", rows: list | None = None, csv_dir: str = "",
                drop: str | None = None) -> Path:
    """A small MS-CXR tree in the official schema: the CSV (v1.0.0 has no split) and JPEGs under files/."""
    rows = MS_ROWS if rows is None else rows
    for r in rows:
        image = root / r[3]
        if not image.exists():
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (int(r[8]), int(r[9])), 90).save(image)
    columns = MS_COLUMNS + (["split"] if version != "1.0.0" else [])
    table = pd.DataFrame([r[:len(columns)] for r in rows], columns=columns)
    if drop:
        table = table.drop(columns=[drop])
    (root / csv_dir).mkdir(parents=True, exist_ok=True)
    csv = root / csv_dir / f"MS_CXR_Local_Alignment_v{version}.csv"
    table.to_csv(csv, index=False)
    return csv


def _sha8(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def test_ms_cxr_v1_0_0_grouping(tmp_path: Path) -> None:
    root = tmp_path / "mimic"
    fake_ms_cxr(root, "1.0.0")
    ds = get_dataset("ms-cxr", root)
    samples = ds.samples()
    assert [s.sample_id for s in samples] == [f"{D1}-{_sha8('right lower lobe pneumonia')}",
                                              f"{D1}-{_sha8('small left effusion')}",
                                              f"{D2}-{_sha8('patchy opacity in the right upper lung')}",
                                              f"{D3}-{_sha8('cardiomegaly')}"]
    pneumonia, effusion, opacity, heart = samples
    assert pneumonia.boxes == ((40.0, 120.0, 60.0, 50.0), (200.0, 100.0, 40.0, 30.0))
    assert (pneumonia.category, pneumonia.phrase) == ("pneumonia", "right lower lobe pneumonia")
    assert (effusion.category, opacity.category, heart.category) == ("pleural effusion", "lung opacity", "cardiomegaly")
    assert (opacity.width, opacity.height) == (320, 280)
    assert Path(opacity.image_path) == root / MS_ROWS[2][3]
    assert all(s.split == "test" for s in samples)
    assert pneumonia.extra == {"dicom_id": D1}
    assert ds.load_image(opacity).shape == (280, 320)
    for s in samples:
        validate_sample(s)


def test_ms_cxr_v1_1_0_splits_and_newest_csv(tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "mimic"
    old = fake_ms_cxr(root, "1.0.0", csv_dir="ms-cxr")
    fake_ms_cxr(root, "1.1.0", csv_dir="ms-cxr/1.1.0")
    fake_ms_cxr(root, "9.9.9", csv_dir="files/p10")  # inside the image tree: never searched
    ds = MsCxrDataset(root)
    assert ds.csv_path().name == "MS_CXR_Local_Alignment_v1.1.0.csv"
    assert [s.split for s in ds.samples()] == ["train", "train", "val", "test"]
    assert [s.split for s in MsCxrDataset(root, {"csv": str(old)}).samples()] == ["test"] * 4
    monkeypatch.setenv("BENCH_MS_CXR_ROOT", str(root))
    assert MsCxrDataset().samples() == ds.samples()
    monkeypatch.delenv("BENCH_MS_CXR_ROOT")
    elsewhere = MsCxrDataset(options={"csv": str(old), "images": str(tmp_path / "jpg")}).samples()
    assert Path(elsewhere[0].image_path) == tmp_path / "jpg" / MS_ROWS[0][3]


def test_ms_cxr_keeps_bad_boxes_for_validation(tmp_path: Path) -> None:
    rows = MS_ROWS + [["d4", "Edema", "mild edema", "files/p13/p13/s13/d4.jpg", 10, 10, 0, 20, 300, 300, "test"],
                      ["d5", "Edema", "mild edema", "files/p13/p13/s13/d5.jpg", 400, 10, 20, 20, 300, 300, "test"]]
    fake_ms_cxr(tmp_path, "1.1.0", rows)
    samples = MsCxrDataset(tmp_path).samples()
    assert len(samples) == 6
    for s, words in zip(samples[4:], ("zero or negative area", "outside the 300x300 image")):
        with pytest.raises(SampleError, match=words):
            validate_sample(s)


@pytest.mark.parametrize("column", ["label_text", "x", "image_height", "dicom_id"])
def test_ms_cxr_missing_column(tmp_path: Path, column: str) -> None:
    csv = fake_ms_cxr(tmp_path, "1.0.0", drop=column)
    with pytest.raises(BenchError) as err:
        MsCxrDataset(tmp_path).samples()
    message = str(err.value)
    assert f"missing column '{column}'" in message and str(csv) in message and "\n" not in message


def test_ms_cxr_bad_values_and_missing_csv(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BENCH_MS_CXR_ROOT", raising=False)
    with pytest.raises(BenchError, match="--data-root"):
        MsCxrDataset().samples()
    with pytest.raises(BenchError, match="MS_CXR_Local_Alignment"):
        MsCxrDataset(tmp_path).samples()
    with pytest.raises(BenchError, match="not found"):
        MsCxrDataset(tmp_path, {"csv": str(tmp_path / "none.csv")}).samples()
    rows = [list(r) for r in MS_ROWS]
    rows[2][6] = "wide"
    fake_ms_cxr(tmp_path, "1.1.0", rows)
    with pytest.raises(BenchError, match="column 'w' is not a number in data row 3: 'wide'"):
        MsCxrDataset(tmp_path).samples()
    rows[2][6], rows[1][10] = 80, "holdout"
    fake_ms_cxr(tmp_path, "1.1.0", rows)
    with pytest.raises(BenchError, match="column 'split' has 'holdout'"):
        MsCxrDataset(tmp_path).samples()
