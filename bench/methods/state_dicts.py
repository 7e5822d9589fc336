"""Exact checkpoint loading: every tensor of a model comes from the file, every tensor of the file is used.

Library loaders start from random weights and only log what they could not fill (transformers'
"newly initialized" report, diffusers' "not initialized from the model checkpoint", MONAI's old
key conversion that never looks at what it left unused). A run on such a model looks normal and
measures noise. Here the key sets are compared by our code: any tensor missing from the file, left
over in it, or of another shape stops the run with one line naming the file and the first keys.
The few keys known to be harmless are listed in `HARMLESS`, and nowhere else.

Files are read as data: safetensors, or `torch.load(weights_only=True)` for pickled state dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from ..core.errors import BenchError

#: keys that may be missing from a file or left over in it without changing what the harness computes:
#: the position-id buffer (stored by transformers < 4.31, rebuilt from the config since) and the BERT
#: pooler (published BERT files carry it; the text encoders read hidden states and never the pooler)
HARMLESS = (
    re.compile(r"(^|\.)position_ids$"),
    re.compile(r"^(bert\.)?pooler\."),
)
#: how many keys a message names before "..."
SHOWN = 3
_SIZE = re.compile(r"size mismatch for ([^:]+): copying a param with shape (torch\.Size\(\[[^\]]*\]\)) from "
                   r"checkpoint, the shape in current model is (torch\.Size\(\[[^\]]*\]\))")


def harmless(key: str) -> bool:
    """True for a key of the allow-list (`HARMLESS`)."""
    return any(p.search(key) for p in HARMLESS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (", ..." if len(keys) > SHOWN else "")


@dataclass
class KeyReport:
    """What differs between the tensors a model expects and those a file holds (allow-list applied)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, file shape, model shape

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """The differences in one line, first keys named."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} tensor(s) of the model missing from the file ({_names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} tensor(s) of the file unused by the model "
                         f"({_names(self.unexpected)})")
        if self.mismatched:
            key, got, want = self.mismatched[0]
            more = f" and {len(self.mismatched) - 1} more" if len(self.mismatched) > 1 else ""
            parts.append(f"{len(self.mismatched)} tensor(s) of another shape ({key}: {list(got)} in the file, "
                         f"{list(want)} in the model{more})")
        return "; ".join(parts)


def compare_keys(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> KeyReport:
    """Missing, left-over and mis-shaped keys between a model's shapes and a file's, allow-list applied."""
    return KeyReport(
        missing=reportable(k for k in expected if k not in found),
        unexpected=reportable(k for k in found if k not in expected),
        mismatched=sorted((k, tuple(found[k]), tuple(expected[k])) for k in expected
                          if k in found and tuple(found[k]) != tuple(expected[k])),
    )


def mismatch_error(path: Path | str, what: str, detail: str, hint: str = "") -> BenchError:
    """The one-line error for a checkpoint that does not fit its model."""
    tail = f" ({hint})" if hint else ""
    return BenchError(f"the {what} checkpoint {path} does not match the model: {detail}{tail}")


def load_error_detail(exc: BaseException) -> str:
    """One line of a `load_state_dict` error: its first size mismatch, else its first line."""
    found = _SIZE.search(str(exc))
    if found:
        return f"{found.group(1)} has shape {found.group(2)} in the file, {found.group(3)} in the model"
    return _first_line(exc)


def check_report(report: KeyReport, path: Path | str, what: str, hint: str = "") -> None:
    """Raise the one-line BenchError of `report` unless the file and the model match exactly."""
    if not report.exact:
        raise mismatch_error(path, what, report.describe(), hint)


def check_loading_info(info: Mapping, path: Path | str, what: str) -> None:
    """Check the key lists a library loader returned (`output_loading_info=True`), allow-list applied."""
    report = KeyReport(
        missing=reportable(info.get("missing_keys", ())),
        unexpected=reportable(info.get("unexpected_keys", ())),
        mismatched=[(str(m[0]), tuple(m[1]), tuple(m[2])) if isinstance(m, (tuple, list)) and len(m) == 3
                    else (str(m), (), ()) for m in info.get("mismatched_keys", ())],
    )
    check_report(report, path, what)
    errors = [e for e in info.get("error_msgs", ()) if e]
    if errors:
        raise mismatch_error(path, what, str(errors[0]).strip().splitlines()[0])


def _torch_load(path: Path):
    """A pickled checkpoint as data; memory-mapped when it is in torch's zip format, so a large
    training checkpoint (EMA copies, optimizer states) is not read whole into memory."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (pre-zip) format cannot be mapped
        return torch.load(str(path), map_location="cpu", weights_only=True)


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (safetensors, or a pickled state dict read with weights_only);
    a top-level `state_dict` entry (PyTorch Lightning) is unwrapped."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = _torch_load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line: safetensors, zip, unpickler
        raise BenchError(f"cannot read the {what} checkpoint {path} as plain tensors: {_first_line(exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise BenchError(f"the {what} checkpoint {path} is not a state dict (a mapping of names to tensors)")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise BenchError(f"the {what} checkpoint {path} holds no tensor")
    return tensors


def shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    """Name -> shape of every tensor."""
    return {k: tuple(v.shape) for k, v in state.items()}


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path | str, what: str,
               hint: str = "") -> None:
    """Load `state` into `module` only if every tensor matches by name and shape (allow-list aside)."""
    check_report(compare_keys(shapes(module.state_dict()), shapes(state)), path, what, hint)
    own = module.state_dict()
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def reportable(keys: Iterable[str]) -> list[str]:
    """The keys of `keys` that are not on the allow-list, sorted."""
    return sorted(k for k in keys if not harmless(k))


__all__ = ["HARMLESS", "KeyReport", "check_loading_info", "check_report", "compare_keys", "harmless",
           "load_error_detail", "load_exact", "mismatch_error", "read_state_dict", "reportable", "shapes"]
