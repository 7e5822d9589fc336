"""The shipped phantom codebook: anatomy_phantom_ldm reads it, and its location tokens steer the map."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from bench.datasets.phantom import PhantomDataset, flip_side
from bench.methods import RunContext, backend_class
from bench.methods.ldm.anatomy.codebook import codebook_provenance, load_codebook, location_vocabulary
from bench.methods.ldm.settings import METHODS_DIR
from bench.methods.specs import apply_overrides, load_method_spec

CODEBOOK = METHODS_DIR / "phantom_anatomy" / "anatomy_codebook.safetensors"


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


def test_shipped_codebook_fits_the_phantom_model_and_records_its_training():
    from transformers import BertTokenizer

    book = load_codebook(CODEBOOK, 64)
    tokenizer = BertTokenizer.from_pretrained(str(METHODS_DIR / "phantom_ldm" / "tokenizer"))
    assert book.tokens == location_vocabulary(tokenizer) and book.embeddings.shape == (24, 64)
    record = codebook_provenance(CODEBOOK)
    assert record["method"] == "anatomy_phantom_ldm" and record["spec"]["name"] == "anatomy_phantom"
    assert record["data"]["dataset"] == "phantom" and record["data"]["split"] == "train"
    assert record["random_weights"] is False


def _left_share(values: np.ndarray) -> float:
    v = np.nan_to_num(np.asarray(values, dtype=np.float64)) - np.nanmin(values)
    half = v.shape[1] // 2
    return float(v[:, :half].sum() / max(v.sum(), 1e-12))


def _method(tokens: str):
    spec = apply_overrides(load_method_spec("anatomy_phantom_ldm"), [f"location_tokens={tokens}"])
    return backend_class(spec["backend"])(spec, RunContext(batch_size=8))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> PhantomDataset:
    return PhantomDataset(tmp_path_factory.mktemp("phantom"), {"n_test": "32", "n_train": "0"})


@pytest.fixture(scope="module")
def tuned(phantom):
    method = _method("codebook")
    method.prepare(phantom)
    return method


def test_swapping_the_location_moves_the_map_across(phantom, tuned):
    tests = [s for s in phantom.samples() if s.split == "test" and s.extra["side"] in ("right", "left")]
    maps = tuned.heatmaps(tests, phantom)
    flipped = tuned.heatmaps([dataclasses.replace(s, phrase=flip_side(s.phrase)) for s in tests], phantom)
    assert all(f.meta["prompt"].startswith(("left ", "right ")) for f in flipped)
    moved = 0
    for s, h, f in zip(tests, maps, flipped):
        toward_left = s.extra["side"] == "left"  # the prompt now names the patient's right: the image's left
        moved += (_left_share(f.values) > _left_share(h.values)) == toward_left
    assert len(tests) >= 15 and moved == len(tests)


def test_tuned_codebook_beats_the_plain_location_words(phantom, tuned):
    from bench.evaluation.protocols import load_protocol
    from bench.evaluation.scoring import score

    tests = [s for s in phantom.samples() if s.split == "test"]
    words = _method("words")
    words.prepare(phantom)
    protocol = load_protocol("default")
    means = {}
    for name, method in (("codebook", tuned), ("words", words)):
        rows = [score(h, s, protocol, "anatomy_ldm") for h, s in zip(method.heatmaps(tests, phantom), tests)]
        means[name] = {k: float(np.mean([r[k] for r in rows])) for k in ("cnr", "miou")}
    # the same prompts: only the location words' embeddings differ (200 test samples: +0.58 CNR, +0.047 miou)
    assert means["codebook"]["cnr"] > means["words"]["cnr"] + 0.3
    assert means["codebook"]["miou"] > means["words"]["miou"] + 0.02
