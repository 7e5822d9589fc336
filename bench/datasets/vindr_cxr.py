"""`vindr-cxr`: the VinDr-CXR test set with synthetic "{location} {pathology}" prompts
(Vilouras et al. 2025, appendix E).

`annotations_test.csv` (image_id, class_name, x_min, y_min, x_max, y_max; one row per box) gives
one sample per (image, class) of the classes shared with MS-CXR, with that class's boxes. Each
box becomes a Gaussian (mu = centre, sigma = side / 6, normalised to the image) and takes the
location of the prior table whose Gaussian is nearest in squared 2-Wasserstein distance; the
distinct locations of a sample, in box order, make its prompt ("right lower lung zone and left
lower lung zone pleural effusion"; keys in `extra["location"]`). VinDr-CXR has no pneumonia box
class, so its pneumonia rows of the paper have no counterpart here.

Images: `<image_id>.png|.jpg|.jpeg` (sizes from the file header) or `.dicom|.dcm` (needs pydicom)
in the images folder (default: `test/` under the data root).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import BenchError, SampleError
from ..core.limits import image_too_large
from ..core.params import Param
from ..core.samples import Sample
from .anatomy import build_prompt, load_rules
from .anatomy_lut import box_gaussian, load_lut
from .base import Dataset
from .images import ImageTooLarge, open_image, read_grayscale
from .tables import read_csv, require_columns

COLUMNS = ("image_id", "class_name", "x_min", "y_min", "x_max", "y_max")
CLASSES = {"atelectasis": "atelectasis", "cardiomegaly": "cardiomegaly", "consolidation": "consolidation",
           "edema": "edema", "lung opacity": "lung opacity", "pleural effusion": "pleural effusion",
           "pneumothorax": "pneumothorax"}
EXTENSIONS = (".png", ".jpg", ".jpeg", ".dicom", ".dcm")


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header."""
    if path.suffix.lower() in (".dicom", ".dcm"):
        try:
            import pydicom
        except ImportError:
            raise BenchError(f"{path}: reading DICOM needs pydicom (pip install pydicom), or convert to PNG") from None
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return int(ds.Columns), int(ds.Rows)
    try:
        with open_image(path) as im:
            return im.size
    except ImageTooLarge as exc:
        raise BenchError(str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BenchError(f"cannot read image {path}: {exc}") from None


class VindrCxrDataset(Dataset):
    """VinDr-CXR test boxes of the MS-CXR classes, with nearest-LUT location prompts."""

    name = "vindr-cxr"
    description = ("VinDr-CXR test set with synthetic \"{location} {pathology}\" prompts (Vilouras et al. 2025, "
                   "appendix E): annotations_test.csv and test/ images under --data-root or BENCH_VINDR_ROOT; "
                   "-O lut=PATH from `bench tune lut`")
    options_schema = {"csv": Param(str, help="path of annotations_test.csv (default: annotations/annotations_test.csv "
                                             "or annotations_test.csv under the data root)"),
                      "images": Param(str, help="folder of the test images (default: test/ under the data root)"),
                      "lut": Param(str, help="anatomical prior table (TOML from `bench tune lut`); required")}

    def root(self) -> Path:
        if self.data_root is not None:
            return self.data_root
        env = os.environ.get("BENCH_VINDR_ROOT")
        if not env:
            raise BenchError("vindr-cxr needs --data-root (the VinDr-CXR folder holding annotations/ and test/) "
                             "or BENCH_VINDR_ROOT")
        return Path(env)

    def csv_path(self) -> Path:
        if "csv" in self.options:
            path = Path(self.options["csv"]).expanduser()
            if not path.is_file():
                raise BenchError(f"VinDr-CXR CSV {path} not found (option csv)")
            return path
        root = self.root()
        if not root.is_dir():
            raise BenchError(f"vindr-cxr data root {root} is not a folder")
        for candidate in (root / "annotations" / "annotations_test.csv", root / "annotations_test.csv"):
            if candidate.is_file():
                return candidate
        raise BenchError(f"no annotations/annotations_test.csv in {root}; give it with -O csv=PATH")

    def image_folder(self) -> Path:
        images = self.options.get("images")
        return Path(images).expanduser() if images else self.root() / "test"

    def _image(self, folder: Path, image_id: str) -> Path:
        for ext in EXTENSIONS:
            path = self.image_path(folder, f"{image_id}{ext}", "vindr-cxr: image_id")
            if path.is_file():
                return path
        raise BenchError(f"vindr-cxr: no image {image_id}.png/.jpg/.dicom in {folder}")

    def samples(self) -> list[Sample]:
        """One sample per (image, class), in the order of their first box in the CSV."""
        import pandas as pd

        if "lut" not in self.options:
            raise BenchError("vindr-cxr needs the anatomical prior table: -O lut=PATH (built by `bench tune lut`)")
        lut = load_lut(Path(self.options["lut"]).expanduser())
        rules = load_rules()
        csv = self.csv_path()
        table = read_csv(csv)
        table.columns = [c.strip() for c in table.columns]
        require_columns(table, csv, COLUMNS)
        table = table[table["class_name"].str.strip().str.lower().isin(CLASSES)]
        for col in COLUMNS[2:]:
            values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
            bad = ~np.isfinite(values)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise BenchError(f"{csv}: column {col!r} is not a number in data row {int(table.index[i]) + 1}: "
                                 f"{table[col].iloc[i]!r}")
            table[col] = values
        folder = self.image_folder()
        groups: dict[tuple[str, str], list] = {}
        for row in table.itertuples(index=False):
            groups.setdefault((row.image_id.strip(), CLASSES[row.class_name.strip().lower()]), []).append(row)
        sizes: dict[str, tuple[Path, int, int]] = {}
        out = []
        for (image_id, category), rows in groups.items():
            if image_id not in sizes:
                path = self._image(folder, image_id)
                sizes[image_id] = (path, *_image_size(path))
            path, width, height = sizes[image_id]
            boxes, keys = [], []
            for r in rows:
                boxes.append((r.x_min, r.y_min, r.x_max - r.x_min, r.y_max - r.y_min))
                try:
                    key = lut.nearest(box_gaussian(r.x_min, r.y_min, r.x_max, r.y_max, width, height))
                except ValueError:
                    continue  # an empty box: left for validate_sample to report
                if key not in keys:
                    keys.append(key)
            if not keys:
                keys = [lut.nearest(box_gaussian(0, 0, width, height, width, height))]
            phrase, _ = build_prompt(keys, category, rules)
            sid = f"{image_id}-{category.replace(' ', '_')}"
            out.append(Sample(sid, str(path), width, height, category, phrase, tuple(boxes), "test",
                              {"image_id": image_id, "location": "+".join(keys)}))
        return out

    def load_image(self, sample: Sample) -> np.ndarray:
        if sample.image_path.lower().endswith((".dicom", ".dcm")):
            import pydicom

            ds = pydicom.dcmread(sample.image_path)
            too_large = image_too_large(int(ds.Columns), int(ds.Rows))
            if too_large:
                raise SampleError(sample.sample_id, f"image {sample.image_path} is {too_large}")
            pixels = ds.pixel_array.astype(np.float32)
            if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
                pixels = pixels.max() - pixels
            lo, hi = float(pixels.min()), float(pixels.max())
            return ((pixels - lo) / max(hi - lo, 1e-6) * 255 + 0.5).astype(np.uint8)
        return read_grayscale(sample.image_path, sample.sample_id)
