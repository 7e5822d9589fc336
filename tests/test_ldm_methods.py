"""The `ldm` backend and its specs: token strategies, spec fields and overrides, offline checkpoints,
package and local model folders, and end-to-end runs of every diffusion method with random weights.

Real-size U-Nets are far too slow for a CPU test run, so models are built from the tiny
architectures shipped beside the real ones, selected with `--set` like any other spec field.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from published_formats import hf_snapshot, original_layout
from tiny_unets import NO_CONTENT, TINY, one_thread  # noqa: F401
from tiny_unets import tiny_method as _method

from bench.core.errors import BenchError
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.datasets.base import Dataset
from bench.methods.ldm import scheduler_timesteps, trailing_timesteps
from bench.methods.ldm.aggregate import TokenSelection
from bench.methods.ldm.lexicon import content_words
from bench.methods.ldm.loading import CONFIG_DIR, diffusers_scheduler
from bench.methods.ldm.method import LdmMethod, sample_seed
from bench.methods.ldm.precision import BATCH_ATOL
from bench.methods.ldm.settings import METHODS_DIR, parse_settings
from bench.methods.ldm.tokens import legacy_word_starts, select_tokens, word_weights
from bench.methods.specs import load_method_spec, method_names


@pytest.fixture(scope="module")
def bert_tokenizer():
    from health_multimodal.text.model import CXRBertTokenizer

    return CXRBertTokenizer.from_pretrained(str(METHODS_DIR / "biovil_config" / "tokenizer"), local_files_only=True)


@pytest.fixture(scope="module")
def clip_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(CONFIG_DIR / "clip_tokenizer"), local_files_only=True)


class ArrayDataset(Dataset):
    """Samples with in-memory grey images of different shapes."""

    name = "arrays"

    def __init__(self, samples: list[Sample], arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self._samples = samples
        self.arrays = arrays

    def samples(self) -> list[Sample]:
        return self._samples

    def load_image(self, sample: Sample) -> np.ndarray:
        return self.arrays[sample.sample_id]


def _dataset() -> ArrayDataset:
    rng = np.random.default_rng(3)
    rows = [("a", 80, 96, "pleural effusion", "small left pleural effusion"),
            ("b", 72, 64, "pneumothorax", "right apical pneumothorax"),
            ("c", 64, 64, "lung opacity", "patchy opacity in the left lower lobe")]
    samples = [Sample(i, f"{i}.png", w, h, c, p, ((4.0, 4.0, 20.0, 20.0),)) for i, h, w, c, p in rows]
    arrays = {s.sample_id: rng.integers(0, 256, (s.height, s.width), dtype=np.uint8) for s in samples}
    return ArrayDataset(samples, arrays)


# ------------------------------------------------------------------ token strategies

def test_lexical_rule_keeps_adjectives_nouns_verbs() -> None:
    words, kept = content_words("There is mildly increased opacity in the left-sided lung, 2 cm.")
    assert [w.text for w in words] == ["There", "is", "mildly", "increased", "opacity", "in", "the", "left", "sided",
                                       "lung", "2", "cm"]
    assert [words[i].text for i in kept] == ["increased", "opacity", "left", "sided", "lung", "cm"]
    words, kept = content_words("no cardiomegaly")
    assert [words[i].text for i in kept] == ["cardiomegaly"]


def test_token_strategies_on_bert_tokenizer(bert_tokenizer) -> None:
    phrase = "left-sided pleural effusion."
    # [CLS] left - sided pleural effusion . [SEP]
    assert bert_tokenizer.convert_ids_to_tokens(bert_tokenizer(phrase)["input_ids"]) == [
        "[CLS]", "left", "-", "sided", "pleural", "effusion", ".", "[SEP]"]
    assert select_tokens("all", bert_tokenizer, phrase) == [1, 2, 3, 4, 5, 6]
    assert select_tokens("lexical", bert_tokenizer, phrase, alignment="offsets") == [1, 3, 4, 5]
    # published indexing: word starts of "left-sided" (3 tokens), "pleural", "effusion." (2) are 1, 4, 5 and
    # 7 after the end; the 4 parsed words take the first four, so "sided" reads "pleural" and "effusion" [SEP]
    assert legacy_word_starts(bert_tokenizer, phrase) == [1, 4, 5, 7]
    assert select_tokens("lexical", bert_tokenizer, phrase, alignment="legacy") == [1, 4, 5, 7]
    assert select_tokens("keywords", bert_tokenizer, phrase, category="Pleural Effusion") == [4, 5, 6]
    assert select_tokens("keywords", bert_tokenizer, phrase, category="pneumothorax") == [1, 2, 3, 4, 5, 6]
    assert select_tokens("start", bert_tokenizer, phrase) == [0]
    assert select_tokens("indices", bert_tokenizer, phrase, indices=[3, 1, 99], max_length=10) == [1, 3]
    # without punctuation or hyphens both alignments agree
    assert (select_tokens("lexical", bert_tokenizer, "small left pleural effusion", alignment="legacy")
            == select_tokens("lexical", bert_tokenizer, "small left pleural effusion") == [1, 2, 3, 4])


class _FakeSpacy:
    """A stand-in for `spacy` whose pipeline tags by a word list: words split on spaces and hyphens,
    "." and "-" punctuation; each parse is recorded."""

    POS = {"left": "ADJ", "sided": "VERB", "pleural": "ADJ", "effusion": "NOUN", "small": "ADJ"}

    def __init__(self, **pos: str) -> None:
        self.pos = {**self.POS, **pos}
        self.parsed: list[str] = []

    def load(self, name: str):
        if name != "en_core_sci_scibert":
            raise OSError(f"[E050] Can't find model '{name}'")
        return self.parse

    def parse(self, text: str):
        import re
        from types import SimpleNamespace

        self.parsed.append(text)
        return [SimpleNamespace(text=m.group(), idx=m.start(), is_punct=m.group() in ".-",
                                pos_=self.pos.get(m.group(), "DET" if m.group() not in ".-" else "PUNCT"))
                for m in re.finditer(r"[a-z]+|[.-]", text)]


def test_spacy_tagger_runs_the_published_procedure(bert_tokenizer, monkeypatch) -> None:
    import sys

    from bench.methods.ldm.lexicon import make_tagger

    fake = _FakeSpacy()
    monkeypatch.setitem(sys.modules, "spacy", fake)
    tagger = make_tagger("spacy:en_core_sci_scibert")
    phrase = "the left-sided pleural effusion."
    words, kept = tagger(phrase)
    # parsed, punctuation dropped, re-joined with spaces and parsed again
    assert fake.parsed == [phrase, "the left sided pleural effusion"]
    assert [(w.text, w.start, w.end) for w in words] == [("the", 0, 3), ("left", 4, 8), ("sided", 9, 14),
                                                        ("pleural", 15, 22), ("effusion", 23, 31)]
    assert kept == [1, 2, 3, 4]
    # [CLS] the left - sided pleural effusion . [SEP]: first sub-token of each kept word
    assert select_tokens("lexical", bert_tokenizer, phrase, tagger=tagger) == [2, 4, 5, 6]
    with pytest.raises(BenchError, match="spaCy has no model 'en_core_sci_sm' installed"):
        make_tagger("spacy:en_core_sci_sm")
    monkeypatch.setitem(sys.modules, "spacy", None)  # not installed
    with pytest.raises(BenchError, match="needs spaCy: pip install scispacy"):
        make_tagger("spacy:en_core_sci_scibert")
    with pytest.raises(BenchError, match="params.lexical_tagger 'scispacy' is not one of builtin, spacy:<model>"):
        _method("cxrbert_ldm", ["lexical_tagger=scispacy"])


def test_the_method_reads_the_tokens_its_tagger_keeps(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "spacy", _FakeSpacy())
    ds = _dataset()
    method = _method("cxrbert_ldm", ["lexical_tagger=spacy:en_core_sci_scibert"], batch_size=3)
    maps = method.heatmaps(ds.samples()[:1], ds)
    # "small left pleural effusion" with the tiny BERT vocabulary: every word is kept by the fake tagger
    builtin = _method("cxrbert_ldm", batch_size=3).heatmaps(ds.samples()[:1], ds)
    assert maps[0].meta["tokens"] == builtin[0].meta["tokens"] == [1, 2, 3, 4]
    assert method.provenance()["lexical_tagger"] == "spacy:en_core_sci_scibert"
    monkeypatch.setitem(sys.modules, "spacy", _FakeSpacy(small="DET"))
    again = _method("cxrbert_ldm", ["lexical_tagger=spacy:en_core_sci_scibert"], batch_size=3)
    assert again.heatmaps(ds.samples()[:1], ds)[0].meta["tokens"] == [2, 3, 4]


def test_token_strategies_on_clip_tokenizer(clip_tokenizer) -> None:
    phrase = "left-sided pleural effusion."
    assert clip_tokenizer.convert_ids_to_tokens(clip_tokenizer(phrase)["input_ids"]) == [
        "<|startoftext|>", "left</w>", "-</w>", "si", "de", "d</w>", "p", "le", "u", "r", "a", "l</w>",
        "effusi", "on</w>", ".</w>", "<|endoftext|>"]
    assert select_tokens("all", clip_tokenizer, phrase) == list(range(1, 15))
    assert select_tokens("lexical", clip_tokenizer, phrase) == [1, 3, 6, 12]
    assert select_tokens("keywords", clip_tokenizer, phrase, category="pleural effusion") == list(range(6, 15))
    # truncation: positions at or past the context length are dropped
    assert select_tokens("all", clip_tokenizer, phrase, max_length=5) == [1, 2, 3]


def test_word_weighting_gives_each_word_the_same_weight(clip_tokenizer) -> None:
    phrase = "left-sided pleural effusion."
    tokens = select_tokens("keywords", clip_tokenizer, phrase, category="pleural effusion")
    weights = word_weights(clip_tokenizer, phrase, tokens)
    # "pleural" has 6 sub-tokens (6..11), "effusion." 3 (12..14): half the weight each
    assert weights == pytest.approx({**{p: 1 / 12 for p in range(6, 12)}, **{p: 1 / 6 for p in range(12, 15)}})
    assert word_weights(clip_tokenizer, phrase, [0, 1]) == {0: 0.5, 1: 0.5}
    selection = TokenSelection(2, [weights, tokens])
    w = selection.weights(77, torch.device("cpu"), torch.float64)
    assert w[0, 6].item() == pytest.approx(1 / 12) and w[1, 6].item() == pytest.approx(1 / 9)
    assert w.sum(1).tolist() == pytest.approx([1.0, 1.0])


def test_no_selected_token_is_a_sample_error() -> None:
    method = _method("cxrbert_ldm")
    method.prepare()
    sample = Sample("z", "z.png", 64, 64, "edema", "there is no", ((0, 0, 4, 4),))
    with pytest.raises(BenchError, match="^sample z: token strategy 'lexical' selects no token of 'there is no'$"):
        method.tokens_for(sample, method.prompt_for(sample))


# ------------------------------------------------------------------ specs

def test_specs_carry_the_published_choices() -> None:
    frozen = parse_settings(load_method_spec("ldm_frozen"))
    assert frozen.layers == ("down_blocks.2.attentions.1", "middle_block.attention", "up_blocks.0.attentions.1",
                             "up_blocks.0.attentions.2")
    assert frozen.step_selection().resolve(list(range(334))) == list(range(120, 180))
    assert (frozen.process, frozen.guidance_scale, frozen.sigma, frozen.otsu, frozen.per_map_minmax) == (
        "invert", 0.0, 2.5, True, True)
    assert (frozen.scale_factor, frozen.timestep_spacing, frozen.num_inference_steps) == (0.3, "trailing", 300)
    inversion = sorted(trailing_timesteps(1000, frozen.num_inference_steps))
    read = frozen.step_selection().resolve(inversion)
    assert len(inversion) == 334 and (inversion[read[0]], inversion[read[-1]]) == (360, 537)
    nutzel = parse_settings(load_method_spec("cxrbert_ldm"))
    scheduler = diffusers_scheduler(json.loads((CONFIG_DIR / "sd15" / "scheduler" / "scheduler_config.json").read_text()))
    timesteps = scheduler_timesteps(scheduler, nutzel.num_inference_steps)
    read = nutzel.step_selection().resolve(timesteps)
    assert read == list(range(10, 50)) and (timesteps[0], timesteps[read[0]], timesteps[-1]) == (981, 781, 1)
    assert (nutzel.tokens, nutzel.guidance_scale, nutzel.seed, nutzel.latent, nutzel.layers) == (
        "lexical", 16.0, 4200, "resample", ())
    assert nutzel.unet.subfolder == "unet_ema" and nutzel.text_encoder == "cxr_bert"
    clip = parse_settings(load_method_spec("clip_ldm"))
    assert (clip.tokens, clip.guidance_scale, clip.latent, clip.text_encoder) == ("keywords", 1.0, "sample", "clip")
    assert clip.token_weighting == "word" and nutzel.token_weighting == "token"


def test_bbm_suffix_switches_the_option_on() -> None:
    spec = load_method_spec("cxrbert_ldm+bbm")
    assert spec["name"] == "cxrbert_ldm+bbm" and spec["params"]["bbm"] is True
    assert load_method_spec("cxrbert_ldm")["params"]["bbm"] is False
    names = method_names()
    assert {"ldm_frozen+bbm", "clip_ldm+bbm", "cxrbert_ldm+bbm"} <= set(names) and "biovil+bbm" not in names
    with pytest.raises(BenchError, match="'biovil' has no Bimodal Bias Merging option"):
        load_method_spec("biovil+bbm")
    with pytest.raises(BenchError, match="unknown method 'nope'"):
        load_method_spec("nope+bbm")


@pytest.mark.parametrize(("override", "message"), [
    ("steps=5", "params.steps = 5"),
    ("tokens=nouns", "params.tokens = 'nouns' is not one of"),
    ("process=denoise", "params.process = 'denoise' is not one of"),
    ("crop=600", "params.crop = 600 is not in 1..resize"),
])
def test_bad_spec_values_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(BenchError, match=message) as info:
        _method("cxrbert_ldm", [override])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["cxrbert_ldm", "ldm_frozen"])
def test_every_attention_runs_fused_and_only_read_layers_are_swapped(name: str) -> None:
    """The fused SDPA path everywhere (diffusers AttnProcessor2_0, MONAI use_flash_attention); inside a
    capture only the hooked cross-attention layers leave it, and they return to it afterwards."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0
    from monai.networks.blocks.crossattention import CrossAttentionBlock
    from monai.networks.blocks.selfattention import SABlock

    from bench.methods.ldm.capture import CrossAttentionCapture

    method = _method(name)
    method.prepare()
    unet = method.models.unet
    hooked = {layer.name for layer in method.layers}

    def fused() -> dict[str, bool]:
        if name == "cxrbert_ldm":
            return {n: isinstance(m.processor, AttnProcessor2_0) for n, m in unet.named_modules()
                    if isinstance(m, Attention)}
        return {n: m.use_flash_attention and "forward" not in m.__dict__ for n, m in unet.named_modules()
                if isinstance(m, (CrossAttentionBlock, SABlock))}

    before = fused()
    assert len(before) > len(hooked) and all(before.values())
    with CrossAttentionCapture(unet, method.layers, []):
        inside = fused()
    assert {n for n, ok in inside.items() if not ok} == hooked
    assert fused() == before


def test_unknown_layer_name_is_reported_before_any_sample() -> None:
    with pytest.raises(BenchError, match="no cross-attention layer is named 'mid_block.attentions.9'"):
        _method("cxrbert_ldm", ['layers=["mid_block.attentions.9"]']).prepare()


# ------------------------------------------------------------------ maps

@pytest.fixture(scope="module")
def batched_maps() -> list[Heatmap]:
    return _method("cxrbert_ldm", batch_size=3).heatmaps(_dataset().samples(), _dataset())


def test_maps_live_on_the_latent_grid_with_the_crop_geometry(batched_maps) -> None:
    ds = _dataset()
    for sample, heatmap in zip(ds.samples(), batched_maps):
        assert heatmap.values.shape == (8, 8) and np.isfinite(heatmap.values).all()
        assert heatmap.values.min() == 0.0 and heatmap.values.max() == 1.0
        short = min(sample.width, sample.height)
        g = heatmap.geometry
        assert (g.height, g.width) == (short, short)
        assert (g.top, g.left) == ((sample.height - short) // 2, (sample.width - short) // 2)
        assert heatmap.meta["seed"] == sample_seed(4200, 0, sample.sample_id)
    assert not np.allclose(batched_maps[0].values, batched_maps[1].values)


def test_a_batch_equals_one_sample_at_a_time(batched_maps) -> None:
    ds = _dataset()
    single = _method("cxrbert_ldm", batch_size=1)
    atol = BATCH_ATOL[single.settings.precision.name]  # the published float16 autocast: tests/test_precision.py
    assert single.settings.precision.name == "fp16"
    for sample, heatmap in zip(ds.samples(), batched_maps):
        alone = single.heatmaps([sample], ds)[0]
        np.testing.assert_allclose(alone.values, heatmap.values, rtol=0, atol=atol)
        assert alone.meta["tokens"] == heatmap.meta["tokens"]


def test_seed_changes_the_noise_of_re_noising_methods(batched_maps) -> None:
    ds = _dataset()
    other = _method("cxrbert_ldm", ["seed=1"], batch_size=3).heatmaps(ds.samples(), ds)
    assert not np.allclose(other[0].values, batched_maps[0].values)


def test_steps_by_timestep_and_as_coded_runs_read_the_same_maps(batched_maps) -> None:
    ds = _dataset()
    by_t = _method("cxrbert_ldm", ["step_timesteps=[251, 1]"], batch_size=3)
    by_t.prepare()
    assert by_t.timesteps == [751, 501, 251, 1]
    coded = _method("cxrbert_ldm", ["as_coded=true"], batch_size=3)
    for method, evals in ((by_t, 2.0), (coded, 8.0)):
        maps = method.heatmaps(ds.samples(), ds)
        assert maps[0].meta["sample_evals"] == evals
        # the as-coded run pushes both guidance halves through the U-Net: other batches, so float32
        # sums may differ in the last bits, as between batch sizes
        for a, b in zip(maps, batched_maps):
            np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-5)


def test_inversion_reads_only_what_it_needs() -> None:
    ds = _dataset()
    method = _method("ldm_frozen", batch_size=3)
    maps = method.heatmaps(ds.samples(), ds)
    # 10 trailing steps, read loop steps 3 and 4: 5 unconditional calls and 2 conditional ones
    assert [m.meta["sample_evals"] for m in maps] == [7.0, 7.0, 7.0]
    assert maps[0].values.shape == (32, 32)
    # Otsu: everything below the threshold is 0, the rest keeps its min-max value up to 1
    assert (maps[0].values == 0).any() and maps[0].values.max() == pytest.approx(1.0)
    record = method.provenance()
    assert record["steps_read"] == [3, 4] and record["timesteps"] == 10
    assert record["timesteps_read"] == [399, 499]  # trailing stride 100: 99, 199, ..., 999 walked upwards
    assert record["layers"] == ["down_blocks.2.attentions.0.transformer_blocks.0.attn2",
                                "middle_block.attention.transformer_blocks.0.attn2"]


def test_bbm_on_a_method_without_guidance_adds_a_guided_sampling_pass() -> None:
    """clip_ldm reads one conditional pass (guidance 1); +bbm adds pass 2 at the BBM guidance (both halves)."""
    ds = _dataset()
    method = _method("clip_ldm+bbm", batch_size=3)
    maps = method.heatmaps(ds.samples(), ds)
    # pass 1: 4 conditional re-noised steps, all read; pass 2: 4 sampling steps with both halves
    assert [m.meta["sample_evals"] for m in maps] == [12.0, 12.0, 12.0]
    assert all(m.values.shape == (8, 8) and np.isfinite(m.values).all() for m in maps)
    plain = _method("clip_ldm", batch_size=3).heatmaps(ds.samples(), ds)
    assert all(np.abs(a.values - b.values).max() > 1e-3 for a, b in zip(maps, plain))


def test_bbm_on_an_inversion_method_pairs_steps_by_timestep() -> None:
    ds = _dataset()
    method = _method("ldm_frozen+bbm", ["resize=256", "crop=256"], batch_size=3)
    maps = method.heatmaps(ds.samples(), ds)
    # pass 1 reads all 10 inversion steps (unconditional drive + conditional read), pass 2 samples 10 steps
    # with guidance 16 (both halves): 20 + 20 sample-evals
    assert [m.meta["sample_evals"] for m in maps] == [40.0, 40.0, 40.0]
    assert all(m.values.shape == (32, 32) and np.isfinite(m.values).all() for m in maps)
    assert method.provenance()["bbm"] is True


# ------------------------------------------------------------------ weights

def _empty_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _no_downloads(monkeypatch) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    def refuse(*args, **kwargs):
        raise AssertionError("a model loader ran although a checkpoint is missing")

    for cls in (UNet2DConditionModel, AutoencoderKL):
        monkeypatch.setattr(cls, "from_pretrained", refuse)


@pytest.mark.parametrize(("name", "parts"), [
    ("cxrbert_ldm", ["FelixNuetzel/cxr_bert_ldm@main", "unet_ema/config.json",
                     "hf download FelixNuetzel/cxr_bert_ldm --revision main", "--weights"]),
    ("clip_ldm", ["not public", "--weights PATH", "MischaD/chest-distillation"]),
    ("ldm_frozen", ["cxr_image_synthesis_latent_diffusion_model", "large_files.yml", "--weights PATH"]),
])
def test_offline_without_checkpoint_is_one_line(bench_cli, tmp_path: Path, monkeypatch, name: str, parts) -> None:
    _empty_cache(monkeypatch, tmp_path)
    _no_downloads(monkeypatch)
    r = bench_cli("run", "--method", name, "--dataset", "phantom", "-O", "n_test=1", "-O", "n_train=0",
                  "--out", tmp_path / "run")
    assert r.code != 0
    lines = [line for line in r.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    for part in parts:
        assert part in lines[0]
    assert "Traceback" not in r.err and not (tmp_path / "run").exists()


def test_cuda_requested_without_gpu_is_one_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError, match="^device cuda requested but no CUDA GPU is available$"):
        _method("clip_ldm", device="cuda").prepare()


def _save_diffusers_folder(method: LdmMethod, folder: Path, tokenizer_dir: Path) -> None:
    models = method.models
    models.unet.save_pretrained(folder / "unet")
    models.vae.save_pretrained(folder / "vae")
    models.text.model.save_pretrained(folder / "text_encoder")
    models.scheduler.save_pretrained(folder / "scheduler")
    shutil.copytree(tokenizer_dir, folder / "tokenizer")


@pytest.mark.parametrize(("name", "tokenizer_dir"), [
    ("clip_ldm", CONFIG_DIR / "clip_tokenizer"),
    ("cxrbert_ldm", METHODS_DIR / "biovil_config" / "tokenizer"),
])
def test_model_folder_inside_the_package_loads(tmp_path: Path, name: str, tokenizer_dir: Path) -> None:
    ds = _dataset()
    random = _method(name, batch_size=3)
    expected = random.heatmaps(ds.samples()[:2], ds)
    _save_diffusers_folder(random, tmp_path / "model", tokenizer_dir)
    packaged = _method(name, [f"weights.package_dir={json.dumps(str(tmp_path / 'model'))}"], random_weights=False)
    got = packaged.heatmaps(ds.samples()[:2], ds)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-6)
    files = {c["file"]: c for c in packaged.provenance()["checkpoints"]}
    assert "unet/diffusion_pytorch_model.safetensors" in files
    assert len(files["unet/diffusion_pytorch_model.safetensors"]["sha256"]) == 64


def test_missing_package_folder_is_one_line() -> None:
    method = _method("clip_ldm", ['weights.package_dir="bench/methods/no_such_model"'], random_weights=False)
    with pytest.raises(BenchError, match="no_such_model is not part of this installation"):
        method.prepare()


def test_monai_bundle_and_text_encoder_from_a_weights_folder(tmp_path: Path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    ds = _dataset()
    random = _method("ldm_frozen", batch_size=3)
    expected = random.heatmaps(ds.samples(), ds)
    (tmp_path / "bundle" / "models").mkdir(parents=True)
    torch.save(random.models.unet.state_dict(), tmp_path / "bundle" / "models" / "diffusion_model.pth")
    torch.save(random.models.vae.state_dict(), tmp_path / "bundle" / "models" / "autoencoder.pth")
    text = tmp_path / "bundle" / "stable-diffusion-2-1-base"
    random.models.text.model.save_pretrained(text / "text_encoder")
    shutil.copytree(CONFIG_DIR / "clip_tokenizer", text / "tokenizer")
    (text / "tokenizer" / "special_tokens_map.json").write_text(json.dumps({"pad_token": "!"}))
    loaded = _method("ldm_frozen", NO_CONTENT, random_weights=False, weights=tmp_path / "bundle", batch_size=3)
    got = loaded.heatmaps(ds.samples(), ds)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-6)
    record = loaded.provenance()
    assert record["random_weights"] is False
    names = [c["file"] for c in record["checkpoints"]]
    assert names[:2] == ["models/diffusion_model.pth", "models/autoencoder.pth"]
    assert all(c["source"] == "local" and len(c["sha256"]) == 64 for c in record["checkpoints"])


# ------------------------------------------------------------------ end to end

@pytest.mark.parametrize("name", ["ldm_frozen", "clip_ldm", "cxrbert_ldm", "cxrbert_ldm+bbm"])
def test_bench_run_random_weights_end_to_end(bench_cli, tmp_path: Path, name: str) -> None:
    out = tmp_path / "run"
    overrides = [x for item in TINY[name.removesuffix("+bbm")] for x in ("--set", item)]
    r = bench_cli("run", "--method", name, "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0",
                  "--limit", "2", "--random-weights", "--out", out, *overrides)
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == name and run["random_weights"] is True and run["n_samples"] == 2
    assert run["overrides"] == TINY[name.removesuffix("+bbm")]
    params = run["config"]["method"]["params"]
    assert params["resize"] == 64 and params["bbm"] is name.endswith("+bbm")
    provenance = run["provenance"]
    assert provenance["random_weights"] is True and "checkpoints" not in provenance
    evals = {"ldm_frozen": 7.0, "clip_ldm": 2.0, "cxrbert_ldm": 2.0, "cxrbert_ldm+bbm": 4.0 + 4 * 2}[name]
    assert provenance["sample_evals_per_sample"] == evals
    maps = sorted((out / "heatmaps").glob("*.npz"))
    assert len(maps) == 2
    for path in maps:
        heatmap = Heatmap.load(path)
        assert heatmap.values.shape == ((32, 32) if name == "ldm_frozen" else (8, 8))
        assert np.isfinite(heatmap.values).all()


def test_checkpoints_from_the_hugging_face_cache(tmp_path: Path, monkeypatch) -> None:
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = _dataset()
    random = _method("cxrbert_ldm", batch_size=3)
    expected = random.heatmaps(ds.samples()[:2], ds)
    commits = {"FelixNuetzel/cxr_bert_ldm": "1" * 40, "stable-diffusion-v1-5/stable-diffusion-v1-5": "2" * 40,
               "microsoft/BiomedVLP-CXR-BERT-specialized": "3" * 40}
    snaps = {repo: hf_snapshot(hub, repo, commit) for repo, commit in commits.items()}
    random.models.unet.save_pretrained(snaps["FelixNuetzel/cxr_bert_ldm"] / "unet_ema")
    random.models.vae.save_pretrained(snaps["stable-diffusion-v1-5/stable-diffusion-v1-5"] / "vae")
    text = snaps["microsoft/BiomedVLP-CXR-BERT-specialized"]
    random.models.text.model.save_pretrained(text)
    shutil.copy(METHODS_DIR / "biovil_config" / "tokenizer" / "vocab.txt", text / "vocab.txt")
    loaded = _method("cxrbert_ldm", NO_CONTENT, random_weights=False, batch_size=3)
    got = loaded.heatmaps(ds.samples()[:2], ds)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-6)
    records = {(c["repo_id"], c["file"]): c for c in loaded.provenance()["checkpoints"]}
    unet = records[("FelixNuetzel/cxr_bert_ldm", "unet_ema/diffusion_pytorch_model.safetensors")]
    assert unet["source"] == "hf-cache" and unet["revision"] == "main" and unet["commit"] == "1" * 40
    assert records[("microsoft/BiomedVLP-CXR-BERT-specialized", "vocab.txt")]["commit"] == "3" * 40


def test_single_file_unet_with_parts_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    from safetensors.torch import save_file

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    ds = _dataset()
    random = _method("clip_ldm", batch_size=3)
    expected = random.heatmaps(ds.samples()[:2], ds)
    checkpoint = tmp_path / "finetuned.safetensors"
    save_file(original_layout(random.models.unet.state_dict(), 2, 1), str(checkpoint))
    snapshot = hf_snapshot(hub, "stabilityai/stable-diffusion-2-base", "4" * 40)
    random.models.vae.save_pretrained(snapshot / "vae")
    random.models.text.model.save_pretrained(snapshot / "text_encoder")
    shutil.copytree(CONFIG_DIR / "clip_tokenizer", snapshot / "tokenizer")
    (snapshot / "tokenizer" / "special_tokens_map.json").write_text(json.dumps({"pad_token": "!"}))
    loaded = _method("clip_ldm", NO_CONTENT, random_weights=False, weights=checkpoint, batch_size=3)
    got = loaded.heatmaps(ds.samples()[:2], ds)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-6)
    sources = {c["file"]: c["source"] for c in loaded.provenance()["checkpoints"]}
    assert sources["finetuned.safetensors"] == "local" and sources["vae/config.json"] == "hf-cache"
