"""A toy tokenizer with MAIRA-2's grounding vocabulary, for random-weight runs without downloads.

Characters are tokens (printable ASCII), and the grounding tokens (`<obj>`, `</obj>`, `<box>`,
`</box>`, `<x0>`..`<x99>`, `<y0>`..`<y99>`) and `<image>` are single added tokens, as in the
published tokenizer; a BOS token starts every encoding, as LLaMA's does. It is built in memory by
the `tokenizers` library, so nothing is read from disk.
"""

from __future__ import annotations

import string

from .maira2_text import GROUNDING_TOKENS, IMAGE_TOKEN

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


def tiny_vocab() -> dict[str, int]:
    """Token -> id: the four specials, printable ASCII, the grounding tokens, then `<image>` last."""
    chars = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    tokens = [*SPECIALS, *chars, *GROUNDING_TOKENS, IMAGE_TOKEN]
    return {t: i for i, t in enumerate(tokens)}


def tiny_tokenizer():
    """A transformers fast tokenizer over `tiny_vocab()`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = tiny_vocab()
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B",
                                                        special_tokens=[("<s>", vocab["<s>"])])
    core.add_special_tokens([AddedToken(t, normalized=False) for t in (*SPECIALS, IMAGE_TOKEN)])
    core.add_tokens([AddedToken(t, normalized=False) for t in GROUNDING_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>")


__all__ = ["SPECIALS", "tiny_tokenizer", "tiny_vocab"]
