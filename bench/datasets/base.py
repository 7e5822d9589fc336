"""What every dataset provides: its samples and a way to read a sample's image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..core.errors import BenchError, SampleError
from ..core.params import Param, check_params
from ..core.samples import Sample
from .images import check_images, read_grayscale
from .paths import inside


class Dataset(ABC):
    """A named source of samples. Subclasses set `name` and `description`."""

    name: str = ""
    description: str = ""
    #: the options (`-O key=value`) the dataset understands: name -> bench.Param (type, default, range, help)
    options_schema: Mapping[str, Param] | None = None
    #: the older form: name -> one-line help, for string options (used when `options_schema` is None)
    options_help: Mapping[str, str] = {}
    #: options that only say where files are (not what the samples are): left out of the fingerprint
    path_options: frozenset[str] = frozenset()
    #: whether the table may name images outside the data root (`--allow-outside-root`)
    allow_outside_root: bool = False

    def __init__(self, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        self.data_root = Path(data_root) if data_root is not None else None
        self.options = dict(options or {})
        #: lines about the data that changed nothing wrong but should be said (e.g. merged duplicate rows)
        self.notes: list[str] = []
        #: the options checked against the schema and parsed to their types, defaults filled in
        self.settings = check_params(self.options, self.option_params(), f"dataset {self.name}", where="",
                                     text=True, noun="option")

    @classmethod
    def option_params(cls) -> dict[str, Param]:
        """The declared options: `options_schema`, else each `options_help` entry as a string option."""
        if cls.options_schema is not None:
            return dict(cls.options_schema)
        return {key: Param(str, help=text) for key, text in cls.options_help.items()}

    @abstractmethod
    def samples(self) -> list[Sample]:
        """Every sample of every split, in a fixed order."""

    def fingerprint_options(self) -> dict[str, str]:
        """The options that shape the sample list, as hashed into the dataset fingerprint.

        An option given at its declared default is left out, so `-O negatives=drop` (the default)
        names the same samples, and the same fingerprint, as no option.
        """
        params = self.option_params()
        return {k: v for k, v in sorted(self.options.items())
                if k not in self.path_options and not (k in params and self.settings.get(k) == params[k].default)}

    def load_image(self, sample: Sample) -> np.ndarray:
        """The sample's radiograph as a 2-D grey-value array of shape (height, width).

        SampleError naming the file and both sizes when the image is not the size the dataset records.
        """
        pixels = read_grayscale(sample.image_path, sample.sample_id)
        if pixels.shape != (sample.height, sample.width):
            raise SampleError(sample.sample_id, f"image {sample.image_path} is {pixels.shape[1]}x{pixels.shape[0]}, "
                                                f"but the dataset records {sample.width}x{sample.height} for it")
        return pixels

    def check_images(self, samples: Sequence[Sample]) -> dict[str, str]:
        """Sample id -> reason for each sample whose image does not decode or differs in size from its record.

        Images read from their files are checked once per file (cached); a dataset that reads its
        images its own way (its own `load_image`) is checked through it.
        """
        if type(self).load_image is Dataset.load_image:
            return check_images(samples, self.name)
        problems = {}
        for s in samples:
            try:
                shape = np.shape(self.load_image(s))
            except SampleError as exc:
                problems[s.sample_id] = exc.reason
                continue
            if shape != (s.height, s.width):
                problems[s.sample_id] = (f"image is {shape[-1]}x{shape[0]}, but the dataset records "
                                         f"{s.width}x{s.height} for it")
        return problems

    def merge_duplicates(self, groups: dict, source: str) -> None:
        """Drop repeated boxes within each sample's box list (in place), noting how many rows were merged."""
        merged = 0
        for key, boxes in groups.items():
            unique = list(dict.fromkeys(boxes))
            merged += len(boxes) - len(unique)
            groups[key] = unique
        if merged:
            self.notes.append(f"{source}: {merged} duplicate row(s) (same sample, same box) merged")

    def image_path(self, root: Path, name: str, what: str, found: Path | None = None) -> Path:
        """`found` (default `root / name`) for an image a table names as `name`; BenchError when it leads
        outside `root` (absolute, `..`, or a link elsewhere) unless the dataset allows it."""
        return inside(root, name, what, self.allow_outside_root, found)

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)

    def int_option(self, key: str, default: int) -> int:
        raw = self.options.get(key)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise BenchError(f"dataset {self.name}: option {key}={raw!r} is not an integer") from None
