"""Small files in the official formats of the public localisation datasets, with the masks and boxes they hold.

Each writer lays out a data root as the dataset is distributed (file names, headers, JSON layout,
encodings) with a few tiny images, and returns what a reader must yield, computed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as cocomask


def write_dicom(path: Path, pixels: np.ndarray, monochrome1: bool = False) -> Path:
    """An uncompressed single-frame DICOM file of `pixels` (uint8 or uint16)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def rle(mask: np.ndarray) -> dict:
    """The compressed COCO RLE object of a mask, as CheXlocalize's `encode_segmentation` writes it."""
    obj = cocomask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in obj["size"]], "counts": obj["counts"].decode()}


def rect(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[rows, cols] = True
    return m


# --- CheXlocalize ---------------------------------------------------------------------------------

CHEX_TEST = ("patient64541_study1_view1_frontal", "patient64542_study1_view1_frontal")
CHEX_VAL = "patient64600_study2_view1_frontal"


def chexlocalize(root: Path) -> dict:
    """CheXlocalize/ JSONs and CheXpert/ JPGs: two test CXRs (20 x 16 and 18 x 12), one validation CXR."""
    from bench.datasets.chexlocalize import TASKS

    sizes = {CHEX_TEST[0]: (16, 20), CHEX_TEST[1]: (12, 18), CHEX_VAL: (10, 10)}
    gt = {CHEX_TEST[0]: {"Airspace Opacity": rect(16, 20, slice(2, 5), slice(3, 9)),
                         "Cardiomegaly": rect(16, 20, slice(8, 12), slice(6, 14))},
          CHEX_TEST[1]: {"Pleural Effusion": rect(12, 18, slice(9, 12), slice(0, 4))},
          CHEX_VAL: {"Edema": rect(10, 10, slice(0, 10), slice(0, 1))}}
    hb = {CHEX_TEST[0]: {"Airspace Opacity": rect(16, 20, slice(3, 6), slice(3, 9))}}
    points = {CHEX_TEST[0]: {"Airspace Opacity": [[4.0, 3.5]], "Cardiomegaly": [[1, 1], [10.2, 9.9]]}}

    def files(masks: dict, ids) -> dict:
        return {cxr: {t: rle(masks.get(cxr, {}).get(t, np.zeros(sizes[cxr], dtype=bool))) for t in TASKS}
                for cxr in ids}

    folder = root / "CheXlocalize"
    folder.mkdir(parents=True)
    (folder / "gt_segmentations_test.json").write_text(json.dumps(files(gt, CHEX_TEST)))
    (folder / "gt_segmentations_val.json").write_text(json.dumps(files(gt, [CHEX_VAL])))
    (folder / "hb_segmentations_test.json").write_text(json.dumps(files(hb, CHEX_TEST[:1])))
    (folder / "hb_salient_pt_test.json").write_text(json.dumps(points))
    for cxr, (h, w) in sizes.items():
        patient, study, view = cxr.split("_", 2)
        split = "val" if cxr == CHEX_VAL else "test"
        path = root / "CheXpert" / split / patient / study / f"{view}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((h, w), 100, dtype=np.uint8)).save(path)
    return {"gt": gt, "hb": hb, "points": points, "sizes": sizes}


# --- RSNA Pneumonia -------------------------------------------------------------------------------

RSNA_POSITIVE = "00436515-870c-4b36-a041-de91049b9ab4"


def rsna(root: Path) -> dict:
    """stage_2_train_labels.csv with the first public rows (four negatives, one patient with two boxes), plus one
    more positive, and their 1024 x 1024 DICOM images."""
    rows = ["patientId,x,y,width,height,Target",
            "0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0",
            "00313ee0-9eaa-42f4-b0ab-c148ed3241cd,,,,,0",
            "00322d4d-1c29-4943-afc9-b6754be640eb,,,,,0",
            "003d8fa0-6bf1-40ed-b54c-ac657f8495c5,,,,,0",
            f"{RSNA_POSITIVE},264.0,152.0,213.0,379.0,1",
            f"{RSNA_POSITIVE},562.0,152.0,256.0,453.0,1",
            "00704310-78a8-4b38-8475-49f4573b2dbb,323.0,577.0,160.0,104.0,1"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    pixels = np.zeros((1024, 1024), dtype=np.uint8)
    pixels[100:200, 100:300] = 200
    for pid in (RSNA_POSITIVE, "00704310-78a8-4b38-8475-49f4573b2dbb"):
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", pixels)
    return {RSNA_POSITIVE: ((264.0, 152.0, 213.0, 379.0), (562.0, 152.0, 256.0, 453.0)),
            "00704310-78a8-4b38-8475-49f4573b2dbb": ((323.0, 577.0, 160.0, 104.0),)}


# --- SIIM-ACR --------------------------------------------------------------------------------------

SIIM_IDS = ("1.2.276.0.7230010.3.1.4.8323329.14508.1517875252.443873",
            "1.2.276.0.7230010.3.1.4.8323329.1314.1517875167.222290",
            "1.2.276.0.7230010.3.1.4.8323329.5597.1517875188.959090")


def siim(root: Path, header: str = "ImageId, EncodedPixels", name: str = "train-rle.csv") -> dict:
    """The stage-1 run-length CSV (header with its leading space) and nested DICOMs.

    Image 0 has two instances: rows 100-109 x columns 200-202 plus pixel (row 500, column 700),
    written `204900 10 1014 10 1014 10 510342 1` (the example decoded by hand from the official
    `mask2rle`), and rows 0-1 of column 0, `0 2`. Image 1 is negative (`-1`); image 2 has rows
    1021-1023 of the last column, a run that ends at the image's last pixel.
    """
    expected = np.zeros((1024, 1024), dtype=bool)
    expected[100:110, 200:203] = True
    expected[500, 700] = True
    expected[0:2, 0] = True
    last = np.zeros((1024, 1024), dtype=bool)
    last[1021:1024, 1023] = True
    rows = [header,
            f"{SIIM_IDS[0]}, 204900 10 1014 10 1014 10 510342 1",
            f"{SIIM_IDS[1]}, -1",
            f"{SIIM_IDS[0]}, 0 2",
            f"{SIIM_IDS[2]}, {1023 * 1024 + 1021} 3"]
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("\n".join(rows) + "\n")
    for k, uid in enumerate(SIIM_IDS):
        write_dicom(root / "dicom-images-train" / f"1.2.{k}" / f"1.3.{k}" / f"{uid}.dcm",
                    np.full((1024, 1024), 7, dtype=np.uint8), monochrome1=k == 2)
    return {SIIM_IDS[0]: expected, SIIM_IDS[2]: last}


# --- ChestX-Det -----------------------------------------------------------------------------------

def chestx_det(root: Path) -> dict:
    """ChestX_Det_{train,test}.json in Deepwise's layout, with 12 x 10 PNGs under train_data/ and test_data/.

    36302.png: two Nodule instances (an L-shaped polygon and a one-pixel-wide column) and one
    Effusion; 36303.png has no finding; 40001.png (test) one Mass.
    """
    train = [{"file_name": "36302.png", "syms": ["Nodule", "Effusion", "Nodule"],
              "boxes": [[1, 1, 4, 4], [5, 6, 8, 9], [9, 0, 9, 3]],
              "polygons": [[[1, 1], [4, 1], [4, 2], [2, 2], [2, 4], [1, 4]],
                           [[5, 6], [8, 6], [8, 9], [5, 9]],
                           [[9, 0], [9, 3], [9, 3], [9, 0]]]},
             {"file_name": "36303.png", "syms": [], "boxes": [], "polygons": []}]
    test = [{"file_name": "40001.png", "syms": ["Mass"], "boxes": [[0, 0, 2, 1]],
             "polygons": [[[0, 0], [2, 0], [2, 1], [0, 1]]]}]
    root.mkdir(parents=True, exist_ok=True)
    (root / "ChestX_Det_train.json").write_text(json.dumps(train))
    (root / "ChestX_Det_test.json").write_text(json.dumps(test))
    for folder, names in (("train_data", ("36302.png", "36303.png")), ("test_data", ("40001.png",))):
        (root / folder).mkdir(exist_ok=True)
        for name in names:
            Image.fromarray(np.full((12, 10), 50, dtype=np.uint8)).save(root / folder / name)
    nodule = np.zeros((12, 10), dtype=bool)
    nodule[1:3, 1:5] = True   # the L's top bar, rows 1-2, columns 1-4
    nodule[3:5, 1:3] = True   # its leg, rows 3-4, columns 1-2
    nodule[0:4, 9] = True     # the one-pixel column
    return {"36302-Nodule": (nodule, ((1.0, 1.0, 4.0, 4.0), (9.0, 0.0, 1.0, 4.0))),
            "36302-Effusion": (rect(12, 10, slice(6, 10), slice(5, 9)), ((5.0, 6.0, 4.0, 4.0),)),
            "40001-Mass": (rect(12, 10, slice(0, 2), slice(0, 3)), ((0.0, 0.0, 3.0, 2.0),))}


# --- PadChest-GR ----------------------------------------------------------------------------------

def padchest_gr(root: Path) -> dict:
    """grounded_reports_20240819.json and master_table.csv in the third-party-described layout, 40 x 20 PNGs."""
    studies = [
        {"StudyID": "st1", "ImageID": "img1.png", "findings": [
            {"sentence_en": "Cardiomegaly.", "sentence_es": "Cardiomegalia.", "abnormal": True,
             "boxes": [[0.25, 0.5, 0.75, 1.0]], "extra_boxes": [[0.2, 0.5, 0.7, 0.9]], "labels": ["cardiomegaly"]},
            {"sentence_en": "Right pleural effusion.", "abnormal": True, "boxes": [[0.0, 0.0, 0.5, 0.25]],
             "labels": ["pleural effusion"]},
            {"sentence_en": "No pneumothorax.", "abnormal": False}]},
        {"StudyID": "st2", "ImageID": "img2.png", "findings": [
            {"sentence_en": "Nodule.", "abnormal": True, "boxes": [[0.5, 0.5, 1.0, 1.0]], "labels": []}]},
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "grounded_reports_20240819.json").write_text(json.dumps(studies))
    (root / "master_table.csv").write_text("StudyID,ImageID,PatientID,split,label_group\n"
                                           "st1,img1.png,p1,test,cardiomegaly\nst2,img2.png,p2,validation,nodule\n")
    (root / "images").mkdir()
    for name in ("img1.png", "img2.png"):
        Image.fromarray(np.full((20, 40), 80, dtype=np.uint8)).save(root / "images" / name)
    return {"Cardiomegaly.": ((10.0, 10.0, 20.0, 10.0),), "Right pleural effusion.": ((0.0, 0.0, 20.0, 5.0),),
            "Nodule.": ((20.0, 10.0, 20.0, 10.0),), "reader2": [[8.0, 10.0, 20.0, 8.0]]}
