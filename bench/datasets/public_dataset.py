"""What the readers of the public localisation datasets share: their data root, their JSON and image headers,
and, for the pathology-only ones, the phrase made from `-O prompt`.

CheXlocalize, RSNA Pneumonia, SIIM-ACR, ChestX-Det and PadChest-GR are read from their official
files as distributed, in a folder given with `--data-root` (`PublicDataset`). The first four name
a finding but carry no sentence, so their phrase is a prompt template over the finding's name
(`PathologyDataset`, `prompts.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from ..core.errors import BenchError
from ..core.params import Param
from .base import Dataset
from .images import ImageTooLarge, open_image
from .prompts import check_prompt, phrase, prompt_param

#: most bytes of an annotation JSON read (ChestX-Det's are 2.2 MB and 0.4 MB)
MAX_JSON_BYTES = 200_000_000


def read_json(path: Path, what: str) -> object:
    """A JSON annotation file, its size bounded; BenchError naming it when missing or malformed."""
    if not path.is_file():
        raise BenchError(f"{what} {path} not found")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise BenchError(f"{path} is {path.stat().st_size:,} bytes, more than the {MAX_JSON_BYTES:,} an annotation "
                         "file may have")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BenchError(f"{path} is not readable JSON: {exc}") from None


def image_size(path: Path | None, where: str) -> tuple[int, int]:
    """(width, height) from an image's header; BenchError naming `where` when it is missing or unreadable."""
    if path is None or not path.is_file():
        raise BenchError(f"{where}: image not found below the data root")
    try:
        with open_image(path) as img:
            return img.size
    except ImageTooLarge as exc:
        raise BenchError(f"{where}: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise BenchError(f"{where}: cannot read image {path}: {exc}") from None


class PublicDataset(Dataset):
    """A dataset read from its official files under `--data-root`. Subclasses set `root_holds`."""

    #: what the data root holds, as the line for a missing --data-root says it ("the folder with ...")
    root_holds: str = ""

    def root(self) -> Path:
        """The data root; BenchError saying what it should hold when --data-root was not given."""
        if self.data_root is None:
            raise BenchError(f"{self.name} needs --data-root ({self.root_holds})")
        return self.data_root


class PathologyDataset(PublicDataset):
    """A public dataset that names findings but no sentence: each phrase is the `-O prompt` template over a finding.

    The `prompt` option comes first in `option_params()`, before the subclass's own `options_schema`;
    the template is checked when the dataset is made.
    """

    def __init__(self, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        super().__init__(data_root, options)
        self.prompt = check_prompt(self.name, self.settings["prompt"])

    @classmethod
    def option_params(cls) -> dict[str, Param]:
        """`prompt`, then the subclass's declared options."""
        return {"prompt": prompt_param(), **super().option_params()}

    def phrase(self, finding: str) -> str:
        """The phrase of a finding: its name in the prompt template."""
        return phrase(self.prompt, finding)
