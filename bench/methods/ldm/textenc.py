"""Text conditioning of a latent diffusion U-Net: token-level hidden states of a frozen text encoder.

- `clip`: a Hugging Face `CLIPTextModel` (SD-2's is OpenCLIP-H's penultimate layer with the final
  LayerNorm), `last_hidden_state`, no attention mask (as diffusers' SD pipelines).
- `cxr_bert` / `bert`: `last_hidden_state` of the BERT (= hidden_states[-1]); the phrase may be
  encoded with its attention mask, the empty prompt never is (Nützel et al.). The U-Net sees all
  `max_length` positions either way.
Prompts are padded to `max_length` with the tokenizer's pad token and truncated there.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class TextEncoder:
    """Prompts -> (n, max_length, hidden) contexts; embeddings of repeated prompts are cached."""

    def __init__(self, kind: str, model: nn.Module, tokenizer, max_length: int, phrase_mask: bool) -> None:
        self.kind = kind
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.phrase_mask = phrase_mask
        self._cache: dict[tuple[str, bool], torch.Tensor] = {}

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "clip":
            return self.model(input_ids=ids).last_hidden_state
        bert = getattr(self.model, "bert", self.model)  # CXRBertModel wraps a BertModel
        return bert(input_ids=ids, attention_mask=mask).last_hidden_state

    @torch.no_grad()
    def encode(self, prompts: Sequence[str], use_mask: bool) -> torch.Tensor:
        """(len(prompts), max_length, hidden) float32 contexts."""
        todo = [p for p in dict.fromkeys(prompts) if (p, use_mask) not in self._cache]
        if todo:
            enc = self.tokenizer(list(todo), padding="max_length", max_length=self.max_length, truncation=True,
                                 return_tensors="pt")
            ids = enc["input_ids"].to(self.device)
            mask = enc["attention_mask"].to(self.device) if use_mask else None
            out = self._forward(ids, mask).float()
            for p, row in zip(todo, out):
                self._cache[(p, use_mask)] = row
        return torch.stack([self._cache[(p, use_mask)] for p in prompts])

    def phrases(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.encode(prompts, self.phrase_mask and self.kind != "clip")

    def empty(self) -> torch.Tensor:
        """(1, max_length, hidden): the unconditional context of the empty prompt, unmasked."""
        return self.encode([""], False)


__all__ = ["TextEncoder"]
