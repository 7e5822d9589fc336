"""Phrases of pathology-only datasets: a prompt template over the finding's name, a dataset option.

Datasets that name a finding but carry no sentence (CheXlocalize, RSNA Pneumonia, SIIM-ACR,
ChestX-Det: the `PathologyDataset`s of `public_dataset.py`) make each sample's phrase from
`-O prompt="..."`, a template with one `{finding}` field, as the zero-shot grounding papers prompt
a model with a class name ("Findings suggesting {finding}"). The default of every such dataset is
"{finding}": the finding's readable name alone.
"""

from __future__ import annotations

from typing import Mapping

from ..core.errors import BenchError
from ..core.params import Param

DEFAULT = "{finding}"


def prompt_param(default: str = DEFAULT) -> Param:
    """The `prompt` option of a pathology-only dataset."""
    return Param(str, default, help=f"phrase template over {{finding}} (default {default!r}), e.g. "
                                    "'Findings suggesting {finding}'")


def check_prompt(dataset: str, template: str) -> str:
    """The template, checked to hold `{finding}` as its only field; BenchError naming the dataset otherwise."""
    try:
        probe = template.format(finding="\0")
    except (KeyError, IndexError, ValueError) as exc:
        raise BenchError(f"dataset {dataset}: prompt {template!r} is not valid: use {{finding}} as its only "
                         f"field ({exc})") from None
    if "\0" not in probe:
        raise BenchError(f"dataset {dataset}: prompt {template!r} does not contain {{finding}}")
    return template


def phrase(template: str, finding: str, readable: Mapping[str, str] | None = None) -> str:
    """The phrase of a finding: its readable name (from `readable`, else the name itself) in the template."""
    return template.format(finding=(readable or {}).get(finding, finding))
