"""Learned location tokens of anatomy-grounded prompts (Vilouras et al. 2025).

The locations and phrase rules live in `bench.datasets.anatomy` (re-exported here). Each location
is one placeholder token `<key>` whose input embedding comes from a learned codebook (K x D, D =
the text encoder's token-embedding width): the placeholders are added to the tokenizer, the
embedding table grows by K rows and those rows take the codebook vectors; every other weight stays
as it was.

Codebook file: safetensors with one tensor `embeddings` (K, D) and the metadata entry `locations`,
a JSON list of the K location keys in row order; further metadata entries (a tuned codebook's
`provenance`, JSON) are kept and ignored by the reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...core.errors import BenchError
from ...datasets.anatomy import (  # noqa: F401  (re-exported: the method's public names)
    FILLER,
    LOCATIONS_FILE,
    SIDED_REGIONS,
    AnatomyRules,
    Finding,
    Location,
    build_prompt,
    explicit_locations,
    load_rules,
    parse_phrase,
)


@dataclass(frozen=True)
class Codebook:
    """Learned location-token embeddings: row i belongs to location keys[i]."""

    keys: tuple[str, ...]
    embeddings: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def _check(codebook: Codebook, rules: AnatomyRules, dim: int, source: str) -> Codebook:
    if codebook.embeddings.ndim != 2 or codebook.embeddings.shape[0] != len(codebook.keys):
        raise BenchError(f"{source}: embeddings of shape {tuple(codebook.embeddings.shape)} do not hold one row "
                         f"per location ({len(codebook.keys)})")
    if codebook.dim != dim:
        raise BenchError(f"{source}: embeddings are {codebook.dim}-d, the text encoder's tokens are {dim}-d")
    if set(codebook.keys) != set(rules.keys):
        missing = sorted(set(rules.keys) - set(codebook.keys)) or sorted(set(codebook.keys) - set(rules.keys))
        raise BenchError(f"{source}: its locations differ from the {len(rules.keys)} known ones (first: {missing[0]})")
    return codebook


def load_codebook(path: Path, dim: int, rules: AnatomyRules | None = None) -> Codebook:
    """The codebook file at `path`; BenchError in one line when it is missing or does not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    rules = rules or load_rules()
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"anatomy_ldm: location-token codebook {path} not found (safetensors: 'embeddings' "
                         f"{len(rules.keys)} x {dim or 'D'}, metadata 'locations'); the published one is not public: give "
                         "yours with --weights or weights.codebook, or run with --random-weights")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = tuple(json.loads((f.metadata() or {})["locations"]))
            embeddings = f.get_tensor("embeddings")
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise BenchError(f"{path}: not a location-token codebook ({exc})") from None
    return _check(Codebook(keys, embeddings.float()), rules, dim, str(path))


def save_codebook(codebook: Codebook, path: Path, provenance: dict | None = None) -> None:
    """Write a codebook atomically in the format `load_codebook` reads (with `provenance`, JSON, inside)."""
    from safetensors.torch import save

    from ...core import atomic

    metadata = {"locations": json.dumps(list(codebook.keys))}
    if provenance is not None:
        metadata["provenance"] = json.dumps(provenance, sort_keys=True, default=str)
    atomic.write_bytes(Path(path), save({"embeddings": codebook.embeddings.detach().cpu().contiguous().float()},
                                        metadata=metadata))


def codebook_provenance(path: Path) -> dict | None:
    """The training provenance stored in a codebook file, if any."""
    from safetensors.torch import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("provenance")
    return json.loads(raw) if raw else None


def random_codebook(dim: int, seed: int = 0, std: float = 0.02, rules: AnatomyRules | None = None) -> Codebook:
    """A codebook of the right shape with N(0, std^2) rows (CLIP's initializer range), for smoke runs."""
    rules = rules or load_rules()
    g = torch.Generator().manual_seed(seed)
    return Codebook(rules.keys, torch.randn(len(rules.keys), dim, generator=g) * std)


def inject_codebook(tokenizer: Any, text_encoder: torch.nn.Module, codebook: Codebook) -> dict[str, int]:
    """Add the placeholders to the tokenizer and write their rows of the input-embedding table.

    Returns key -> token id. Rows of every other token are left as they were.
    """
    tokens = [f"<{key}>" for key in codebook.keys]
    tokenizer.add_tokens(tokens)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    table = text_encoder.get_input_embeddings()
    if codebook.dim != table.embedding_dim:
        raise BenchError(f"codebook rows are {codebook.dim}-d, the text encoder's tokens are {table.embedding_dim}-d")
    if max(ids) >= table.num_embeddings:
        text_encoder.resize_token_embeddings(len(tokenizer))
        table = text_encoder.get_input_embeddings()
    with torch.no_grad():
        table.weight[torch.tensor(ids)] = codebook.embeddings.to(table.weight.dtype).to(table.weight.device)
    return dict(zip(codebook.keys, ids))


def prompt_positions(tokenizer: Any, location_part: str, pathology: str, max_length: int) -> dict[str, list[int]]:
    """Context positions of the location and pathology tokens of "{location} {pathology}" (start token at 0)."""
    n_location = len(tokenizer(location_part, add_special_tokens=False)["input_ids"])
    n_pathology = len(tokenizer(pathology, add_special_tokens=False)["input_ids"])
    last = max_length - 1
    location = [p for p in range(1, 1 + n_location) if p < last]
    path = [p for p in range(1 + n_location, 1 + n_location + n_pathology) if p < last]
    return {"location": location, "pathology": path, "both": location + path}
