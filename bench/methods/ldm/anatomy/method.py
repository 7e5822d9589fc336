"""The `anatomy_ldm` backend (Vilouras et al. 2025): the `ldm` backend with "{location} {pathology}"
prompts whose location words take their input embeddings from a learned codebook.

Location of a sample: `params.location` when set (e.g. `--set location=right_apical_zone`), else
`sample.extra["location"]`, else parsed from the phrase. `params.location_tokens` = "codebook"
injects the codebook rows of the location words (the method), "words" leaves the text encoder as
it is (the same prompt with the encoder's own embeddings). `params.read_tokens` picks the prompt
part whose attention makes the map: "location", "pathology" or "both" (the whole phrase). The
codebook file is `weights.codebook` (relative to --weights, else to `weights.local_dir`, else to
`weights.package_dir`); with --random-weights a seeded random codebook of the right shape.
`bench tune anatomy` writes such a file.
"""

from __future__ import annotations

from pathlib import Path

from ....core.errors import BenchError, SampleError
from ....core.params import Param
from ....core.samples import Sample
from ....datasets.base import Dataset
from ...base import RunContext
from ..method import LdmMethod
from ..settings import PARAMS
from .codebook import (
    anatomy_prompt,
    build_prompt,
    explicit_locations,
    inject_codebook,
    load_codebook,
    load_rules,
    location_vocabulary,
    parse_phrase,
    random_codebook,
)

LOCATION_TOKENS = ("codebook", "words")
READ_TOKENS = ("location", "pathology", "both")


class AnatomyLdmMethod(LdmMethod):
    """Frozen LDM grounding with anatomy-grounded prompts and learned location tokens."""

    known_params = {**PARAMS,
                    "location": Param(str, "", help="explicit location key(s) for every sample, \"a+b\" for several"),
                    "location_tokens": Param(str, "codebook", choices=LOCATION_TOKENS),
                    "read_tokens": Param(str, "both", choices=READ_TOKENS)}

    def __init__(self, spec: dict, context: RunContext) -> None:
        super().__init__(spec, context)
        self.location = self.params["location"]
        self.location_tokens = self.params["location_tokens"]
        self.read_tokens = self.params["read_tokens"]
        self.rules = load_rules()
        if self.location:
            explicit_locations(self.location, self.rules)
        self.codebook_file = str(spec.get("weights", {}).get("codebook", ""))

    def codebook_path(self) -> Path:
        """Where the codebook file is looked for."""
        path = Path(self.codebook_file or "location_codebook.safetensors").expanduser()
        if path.is_absolute():
            return path
        base = self.context.weights or self.settings.local_dir or self.settings.package_dir or Path.cwd()
        return Path(base) / path

    def prepare(self, dataset: Dataset | None = None) -> None:
        """Check the codebook file first (one line when missing), then build the model and inject it."""
        if self.models is not None:
            return
        use_codebook = self.location_tokens == "codebook"
        if use_codebook and not self.context.random_weights and not self.codebook_path().is_file():
            load_codebook(self.codebook_path())
        super().prepare(dataset)
        if not use_codebook:
            return
        text = self.models.text
        dim = int(text.model.get_input_embeddings().embedding_dim)
        if self.context.random_weights:
            codebook = random_codebook(location_vocabulary(text.tokenizer, self.rules), dim, seed=self.context.seed)
        else:
            codebook = load_codebook(self.codebook_path(), dim)
        inject_codebook(text.tokenizer, text.model, codebook, self.rules, source=str(self.codebook_path()))
        text._cache.clear()

    def finding(self, sample: Sample) -> tuple[tuple[str, ...], str]:
        """(location keys, pathology) of a sample: explicit location if given, pathology parsed."""
        try:
            parsed = parse_phrase(sample.phrase, self.rules)
            explicit = self.location or sample.extra.get("location")
            keys = explicit_locations(explicit, self.rules) if explicit else parsed.locations
        except BenchError as exc:
            raise SampleError(sample.sample_id, str(exc)) from None
        return keys, parsed.pathology

    def prompt_for(self, sample: Sample) -> str:
        keys, pathology = self.finding(sample)
        return self.settings.prompt.format(phrase=build_prompt(keys, pathology, self.rules)[0])

    def tokens_for(self, sample: Sample, prompt: str) -> list[int]:
        keys, pathology = self.finding(sample)
        _, positions = anatomy_prompt(self.settings.prompt, keys, pathology, self.models.text.tokenizer,
                                      self.settings.text_max_length, self.rules)
        positions = positions[self.read_tokens]
        if not positions:
            raise SampleError(sample.sample_id, f"no {self.read_tokens} token left in {prompt!r}")
        return positions

    def provenance(self) -> dict:
        record = super().provenance()
        record.update({
            "backend": "anatomy_ldm", "location_tokens": self.location_tokens, "read_tokens": self.read_tokens,
            "explicit_location": self.location or None,
            "codebook": ("random (seeded)" if self.context.random_weights else str(self.codebook_path()))
            if self.location_tokens == "codebook" else None,
            "locations": list(self.rules.keys),
        })
        return record


__all__ = ["AnatomyLdmMethod"]
