"""Learned location tokens of anatomy-grounded prompts (Vilouras et al. 2025).

The locations and phrase rules live in `bench.datasets.anatomy` (re-exported here). As in the
paper, the codebook holds one input embedding per (sub-)token of the location names, not one per
location: "right lower lung zone" is the tokenizer's tokens of "right", "lower", "lung" and
"zone", each a row shared by every location that uses it, and the prompt is the plain
"{location} {pathology}" text. Pathology, binding ("and") and special tokens keep their embeddings.
The rows start as the text encoder's own embeddings of those tokens, so an untuned codebook gives
exactly the plain-word prompt. A location word the tokenizer knows only as its unknown token
becomes a token of its own, starting at the unknown token's row.

Codebook file: safetensors with one tensor `embeddings` (R, D) and the metadata entry `tokens`, a
JSON list of the R tokenizer tokens in row order (`location_vocabulary` of the text encoder's
tokenizer); further metadata entries (a tuned codebook's `provenance`, JSON) are kept and ignored
by the reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ....core.errors import BenchError
from ....datasets.anatomy import (  # noqa: F401  (re-exported: the method's public names)
    FILLER,
    JOINER,
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
    """Learned input embeddings of the location vocabulary: row i belongs to tokenizer token tokens[i]."""

    tokens: tuple[str, ...]
    embeddings: torch.Tensor

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


def location_vocabulary(tokenizer: Any, rules: AnatomyRules | None = None) -> tuple[str, ...]:
    """The tokenizer's tokens of the location names, in order of first use, one codebook row each;
    a word the tokenizer reads only as its unknown token stands as itself (a token to add)."""
    rules = rules or load_rules()
    unk = getattr(tokenizer, "unk_token", None)
    out: dict[str, None] = {}
    for loc in rules.locations:
        for word in loc.name.split():
            pieces = tokenizer.tokenize(word)
            for piece in ([word] if unk is not None and unk in pieces else pieces):
                out.setdefault(piece, None)
    return tuple(out)


def _token_ids(tokenizer: Any, tokens: Sequence[str]) -> list[int]:
    """Ids of `tokens`, adding those the vocabulary lacks as whole-word tokens first."""
    from transformers import AddedToken

    unk = getattr(tokenizer, "unk_token_id", None)
    ids = tokenizer.convert_tokens_to_ids(list(tokens))
    new = [t for t, i in zip(tokens, ids) if i is None or (i == unk and t != tokenizer.unk_token)]
    if new:
        tokenizer.add_tokens([AddedToken(t, single_word=True) for t in new])
        ids = tokenizer.convert_tokens_to_ids(list(tokens))
    return ids


def initial_codebook(tokenizer: Any, text_encoder: torch.nn.Module, rules: AnatomyRules | None = None) -> Codebook:
    """The untuned codebook: each location token's own row of the input-embedding table (the
    unknown token's row for a word the tokenizer lacks), so it gives exactly the plain-word prompt."""
    tokens = location_vocabulary(tokenizer, rules)
    table = text_encoder.get_input_embeddings().weight.detach().cpu().float()
    unk = getattr(tokenizer, "unk_token_id", None)
    ids = [unk if i is None else i for i in tokenizer.convert_tokens_to_ids(list(tokens))]
    return Codebook(tokens, table[torch.tensor(ids)].clone())


def random_codebook(tokens: Sequence[str], dim: int, seed: int = 0, std: float = 0.02) -> Codebook:
    """A codebook of the right shape with N(0, std^2) rows (CLIP's initializer range), for smoke runs."""
    g = torch.Generator().manual_seed(seed)
    return Codebook(tuple(tokens), torch.randn(len(tokens), dim, generator=g) * std)


def _check(codebook: Codebook, dim: int, source: str) -> Codebook:
    if codebook.embeddings.ndim != 2 or codebook.embeddings.shape[0] != len(codebook.tokens):
        raise BenchError(f"{source}: embeddings of shape {tuple(codebook.embeddings.shape)} do not hold one row "
                         f"per token ({len(codebook.tokens)})")
    if dim and codebook.dim != dim:
        raise BenchError(f"{source}: embeddings are {codebook.dim}-d, the text encoder's tokens are {dim}-d")
    return codebook


def load_codebook(path: Path, dim: int = 0) -> Codebook:
    """The codebook file at `path` (rows `dim`-d when `dim` is given); BenchError in one line when
    it is missing or does not fit."""
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"anatomy_ldm: location-token codebook {path} not found (safetensors: 'embeddings' "
                         f"R x {dim or 'D'}, metadata 'tokens'); the published one is not public: train yours with "
                         "`bench tune anatomy` and give it with --weights or weights.codebook, or run with "
                         "--random-weights")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            raw = metadata.get("tokens")
            embeddings = f.get_tensor("embeddings")
        tokens = tuple(json.loads(raw)) if raw is not None else None
    except (SafetensorError, KeyError, ValueError, OSError) as exc:
        raise BenchError(f"{path}: not a location-token codebook ({exc})") from None
    if tokens is None:
        raise BenchError(f"{path}: not a location-token codebook (no 'tokens' metadata: a codebook holds one row per "
                         "location token of the tokenizer; tune one with `bench tune anatomy`)")
    return _check(Codebook(tokens, embeddings.float()), dim, str(path))


def save_codebook(codebook: Codebook, path: Path, provenance: dict | None = None) -> None:
    """Write a codebook atomically in the format `load_codebook` reads (with `provenance`, JSON, inside)."""
    from safetensors.torch import save

    from ....core import atomic

    metadata = {"tokens": json.dumps(list(codebook.tokens))}
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


def inject_codebook(tokenizer: Any, text_encoder: torch.nn.Module, codebook: Codebook,
                    rules: AnatomyRules | None = None, source: str = "codebook") -> dict[str, int]:
    """Write the codebook rows into the text encoder's input-embedding table (adding the location
    words the tokenizer lacks); returns token -> id. Every other row is left as it was."""
    expected = location_vocabulary(tokenizer, rules)
    if set(codebook.tokens) != set(expected):
        odd = sorted(set(codebook.tokens) - set(expected)) or sorted(set(expected) - set(codebook.tokens))
        raise BenchError(f"{source}: its {len(codebook.tokens)} tokens are not the {len(expected)} location tokens "
                         f"of this text encoder's tokenizer (first differing: {odd[0]!r}); was it tuned for another "
                         "model?")
    table = text_encoder.get_input_embeddings()
    if codebook.dim != table.embedding_dim:
        raise BenchError(f"{source}: rows are {codebook.dim}-d, the text encoder's tokens are {table.embedding_dim}-d")
    ids = _token_ids(tokenizer, codebook.tokens)
    if max(ids) >= table.num_embeddings:
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        table = text_encoder.get_input_embeddings()
    with torch.no_grad():
        table.weight[torch.tensor(ids)] = codebook.embeddings.to(table.weight.dtype).to(table.weight.device)
    return dict(zip(codebook.tokens, ids))


def prompt_positions(tokenizer: Any, names: Sequence[str], pathology: str, max_length: int) -> dict[str, list[int]]:
    """Context positions (start token at 0) of the prompt "{name} and {name} ... {pathology}":
    `location` and `pathology` tokens (the binding "and" belongs to neither) and `both`, every
    token of the phrase (the binding words too), as the maps of the ldm backend read a phrase."""
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    last, position, location = max_length - 1, 1, []
    for k, name in enumerate(names):
        position += count(JOINER) if k else 0
        location += range(position, position + count(name))
        position += count(name)
    path = list(range(position, position + count(pathology)))
    location = [p for p in location if p < last]
    path = [p for p in path if p < last]
    return {"location": location, "pathology": path, "both": [p for p in range(1, position + count(pathology)) if p < last]}


def anatomy_prompt(template: str, locations: Sequence[str], pathology: str, tokenizer: Any, max_length: int,
                   rules: AnatomyRules | None = None) -> tuple[str, dict[str, list[int]]]:
    """The prompt of `template` ("...{phrase}...") for (locations, pathology), and the context
    positions of its location and pathology tokens (`prompt_positions`, shifted past any text the
    template puts before the phrase)."""
    phrase, names = build_prompt(locations, pathology, rules)
    prompt = template.format(phrase=phrase)
    prefix = prompt[:prompt.index(phrase)].strip()
    shift = len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else 0
    positions = prompt_positions(tokenizer, names, pathology, max_length - shift)
    return prompt, {part: [p + shift for p in found] for part, found in positions.items()}
