"""Mask sources: COCO RLE (compressed and uncompressed), PNG and NPY files, each refused in one line when bad."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as cocomask

from bench.core.errors import SampleError
from bench.core.ground_truth import MaskSource, load_mask, rle_text
from bench.core.samples import Sample, validate_sample


def _mask() -> np.ndarray:
    m = np.zeros((7, 9), dtype=bool)
    m[2:5, 3:8] = True
    m[6, 0] = True
    return m


def test_compressed_rle_round_trip():
    rle = cocomask.encode(np.asfortranarray(_mask().astype(np.uint8)))
    assert np.array_equal(load_mask(MaskSource(rle=rle_text(rle)), 7, 9), _mask())


def test_uncompressed_rle_counts_column_major():
    # column-major runs: 6 zeros, the 1 at row 6 of column 0, 14 + 2 zeros to row 2 of column 3,
    # then 3 ones and 4 zeros per column 3-7, and the 2 + 7 zeros to the end
    counts = [6, 1, 16, 3, 4, 3, 4, 3, 4, 3, 4, 3, 9]
    assert sum(counts) == 63
    got = load_mask(MaskSource(rle=json.dumps({"size": [7, 9], "counts": counts})), 7, 9)
    assert np.array_equal(got, _mask())


@pytest.mark.parametrize("rle, message", [
    ('{"size": [7, 9]}', "'size' \\[h, w\\] and 'counts'"),
    ('{"size": [7, 9], "counts": [1, 2]}', "do not add up"),
    ('{"size": [0, 9], "counts": []}', "not a positive"),
    ('{"size": [7, 9], "counts": 5}', "neither a string"),
    ("not json", "'size' \\[h, w\\] and 'counts'"),
])
def test_bad_rle_one_line(rle, message):
    with pytest.raises(SampleError, match=message):
        load_mask(MaskSource(rle=rle), 7, 9, "s1")


def test_rle_of_another_size_is_refused():
    rle = rle_text(cocomask.encode(np.asfortranarray(_mask().astype(np.uint8))))
    with pytest.raises(SampleError, match="is 9x7, the image is 10x7"):
        load_mask(MaskSource(rle=rle), 7, 10, "s1")


def test_png_and_npy_files(tmp_path):
    Image.fromarray(_mask().astype(np.uint8) * 255).save(tmp_path / "m.png")
    np.save(tmp_path / "m.npy", _mask().astype(np.uint8))
    for name in ("m.png", "m.npy"):
        assert np.array_equal(load_mask(MaskSource(path=str(tmp_path / name)), 7, 9), _mask())


def test_bad_files_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "cube.npy", np.zeros((2, 7, 9)))
    with pytest.raises(SampleError, match="does not exist"):
        load_mask(MaskSource(path=str(tmp_path / "none.png")), 7, 9)
    with pytest.raises(SampleError, match="not a readable image"):
        load_mask(MaskSource(path=str(tmp_path / "bad.png")), 7, 9)
    with pytest.raises(SampleError, match="never objects"):
        load_mask(MaskSource(path=str(tmp_path / "obj.npy")), 7, 9)
    with pytest.raises(SampleError, match="not a 2-D array"):
        load_mask(MaskSource(path=str(tmp_path / "cube.npy")), 7, 9)


def test_digest_depends_on_the_bits_only(tmp_path):
    np.save(tmp_path / "m.npy", _mask())
    rle = rle_text(cocomask.encode(np.asfortranarray(_mask().astype(np.uint8))))
    assert MaskSource(path=str(tmp_path / "m.npy")).digest(7, 9) == MaskSource(rle=rle).digest(7, 9)
    other = _mask()
    other[0, 0] = True
    np.save(tmp_path / "o.npy", other)
    assert MaskSource(path=str(tmp_path / "o.npy")).digest(7, 9) != MaskSource(rle=rle).digest(7, 9)


def test_sample_gt_kind_and_points():
    base = dict(sample_id="s", image_path="x.png", width=9, height=7, category="c", phrase="p")
    assert Sample(boxes=((1, 1, 2, 2),), **base).gt_kind == "boxes"
    assert Sample(boxes=((1, 1, 2, 2),), mask=MaskSource(path="m.png"), **base).gt_kind == "mask"
    pts = Sample(boxes=(), points=((3.0, 4.0),), **base)
    assert pts.gt_kind == "points"
    validate_sample(pts)
    with pytest.raises(SampleError, match="has no box, mask or point"):
        validate_sample(Sample(boxes=(), **base))
    with pytest.raises(SampleError, match="outside the 9x7 image"):
        validate_sample(Sample(boxes=(), points=((9.0, 1.0),), **base))
    with pytest.raises(ValueError):
        MaskSource()


@pytest.mark.parametrize("counts, message", [
    ("zzzz", "character 'z' is not a COCO RLE character"),
    ("1", "do not add up"),       # one run of 1 pixel: pycocotools leaves the other 62 uninitialised
    ("PVWX6", "do not add up"),   # the empty mask of a 2320 x 2828 image: pycocotools writes past 7 x 9
    ("3", "do not add up"),
    ("c", "ends inside a run length"),
])
def test_compressed_rle_that_does_not_cover_the_size_is_refused(counts, message):
    with pytest.raises(SampleError, match=message):
        load_mask(MaskSource(rle=json.dumps({"size": [7, 9], "counts": counts})), 7, 9, "s1")


def test_compressed_counts_match_pycocotools():
    from bench.core.ground_truth import compressed_counts

    assert compressed_counts("326O") == [3, 2, 6, 1]  # the 3 x 4 COCO example
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = (rng.random((13, 17)) < rng.random()).astype(np.uint8)
        encoded = cocomask.encode(np.asfortranarray(m))
        counts = compressed_counts(encoded["counts"].decode())
        assert cocomask.frPyObjects({"size": [13, 17], "counts": counts}, 13, 17)["counts"] == encoded["counts"]
