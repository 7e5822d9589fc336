"""BioViL / BioViL-T adapter: parity with hi-ml's own map, batching, checkpoints offline, random weights."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
import torch
from PIL import Image
from published_formats import TINY_BERT, fake_hf_cache

from bench.core.errors import BenchError, SampleError
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.datasets.base import Dataset
from bench.evaluation.resample import to_original
from bench.methods import RunContext, backend_class
from bench.methods.biovil import CONFIG_DIR, BioVilMethod
from bench.methods.specs import apply_overrides, load_method_spec
from bench.methods.weights import file_sha256, resolve_files

from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference  # isort: skip
from health_multimodal.image.inference_engine import ImageInferenceEngine  # isort: skip
from health_multimodal.image.model import pretrained  # isort: skip
from health_multimodal.text.inference_engine import TextInferenceEngine  # isort: skip
from health_multimodal.text.model import CXRBertConfig, CXRBertModel, CXRBertTokenizer  # isort: skip
from health_multimodal.vlp.inference_engine import ImageTextInferenceEngine  # isort: skip

VARIANTS = ("biovil", "biovil_t")
GRID = {"biovil": 15, "biovil_t": 14}


class FolderDataset(Dataset):
    """Samples whose images are files written by the test."""

    name = "test-folder"

    def __init__(self, samples: list[Sample]) -> None:
        super().__init__()
        self._samples = samples

    def samples(self) -> list[Sample]:
        return self._samples


class ArrayDataset(FolderDataset):
    """Samples whose images are arrays in memory (no file)."""

    def __init__(self, samples: list[Sample], arrays: dict[str, np.ndarray]) -> None:
        super().__init__(samples)
        self.arrays = arrays

    def load_image(self, sample: Sample) -> np.ndarray:
        return self.arrays[sample.sample_id]


class UntouchableDataset(FolderDataset):
    """Fails the test if a sample or an image is requested."""

    def samples(self) -> list[Sample]:
        raise AssertionError("samples were read")

    def load_image(self, sample: Sample) -> np.ndarray:
        raise AssertionError("an image was read")


class V4BatchEncode:
    """hi-ml's TextInput calls tokenizer.batch_encode_plus, which transformers 5 removed; for a list of
    strings it was the tokenizer's __call__, so the reference engine gets it back through this proxy."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def __getattr__(self, key: str):
        return getattr(self._tokenizer, key)

    def batch_encode_plus(self, batch_text_or_text_pairs, **kwargs):
        return self._tokenizer(batch_text_or_text_pairs, **kwargs)


def _sample(sid: str, path: Path | str, height: int, width: int, phrase: str) -> Sample:
    return Sample(sid, str(path), width, height, "pleural effusion", phrase, ((10.0, 10.0, 50.0, 40.0),))


def _radiograph(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth chest-like picture plus noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    body = np.exp(-(((x - width / 2) / (0.35 * width)) ** 2 + ((y - height / 2) / (0.45 * height)) ** 2))
    lungs = sum(np.exp(-(((x - cx * width) / (0.12 * width)) ** 2 + ((y - 0.45 * height) / (0.25 * height)) ** 2))
                for cx in (0.32, 0.68))
    return np.clip(0.6 * body - 0.4 * lungs + 0.1 * rng.random((height, width)) + 0.3, 0, 1)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Sample]:
    """A portrait 16-bit PNG and a landscape 8-bit JPEG, sizes with odd margins on both axes."""
    root = tmp_path_factory.mktemp("biovil-images")
    portrait = (_radiograph(700, 563, 1) * 60000 + 1000).astype(np.uint16)
    Image.fromarray(portrait).save(root / "portrait.png")
    landscape = (_radiograph(517, 811, 2) * 230 + 10).astype(np.uint8)
    Image.fromarray(landscape).save(root / "landscape.jpg", quality=92)
    return [_sample("portrait", root / "portrait.png", 700, 563, "Small left pleural effusion."),
            _sample("landscape", root / "landscape.jpg", 517, 811, "right lower lobe opacity")]


def _method(name: str, overrides: Sequence[str] = (), **context) -> BioVilMethod:
    spec = apply_overrides(load_method_spec(name), list(overrides))
    method = backend_class("biovil")(spec, RunContext(**context))
    assert isinstance(method, BioVilMethod)
    return method


@pytest.fixture(scope="module")
def prepared() -> Callable[[str], BioVilMethod]:
    """Each variant with random weights (seed 0), built once for the module on first use."""
    cache: dict[str, BioVilMethod] = {}

    def get(name: str) -> BioVilMethod:
        if name not in cache:
            cache[name] = _method(name, random_weights=True, seed=0, batch_size=8)
            cache[name].prepare(UntouchableDataset([]))
        return cache[name]

    return get


def _hi_ml_engine(image_model, text_model, tokenizer, crop: int) -> ImageTextInferenceEngine:
    """hi-ml's own inference engine around the given models, with hi-ml's transform."""
    image = ImageInferenceEngine(image_model, create_chest_xray_transform_for_inference(512, crop))
    text = TextInferenceEngine(V4BatchEncode(tokenizer), text_model)
    return ImageTextInferenceEngine(image, text)


def _engine_of(method: BioVilMethod) -> ImageTextInferenceEngine:
    return _hi_ml_engine(method.image_model, method.text_model, method.tokenizer, method.settings.crop)


def test_specs_pin_what_hi_ml_loads() -> None:
    biovil, biovil_t = load_method_spec("biovil")["params"], load_method_spec("biovil_t")["params"]
    for name, repo, tag, image in (
            ("biovil", pretrained.BIOMED_VLP_CXR_BERT_SPECIALIZED, pretrained.CXR_BERT_COMMIT_TAG,
             pretrained.BIOVIL_IMAGE_WEIGHTS_NAME),
            ("biovil_t", pretrained.BIOMED_VLP_BIOVIL_T, pretrained.BIOVIL_T_COMMIT_TAG,
             pretrained.BIOVIL_T_IMAGE_WEIGHTS_NAME)):
        weights = load_method_spec(name)["weights"]
        assert (weights["text"]["repo"], weights["text"]["revision"]) == (repo, tag)
        assert (weights["image"]["repo"], weights["image"]["revision"], weights["image"]["file"]) == (repo, tag, image)
    assert (biovil["resize"], biovil["crop"], biovil_t["crop"], biovil["sigma"]) == (512, 480, 448, 1.5)
    for name in ("cxr_bert_specialized.json", "biovil_t_bert.json"):
        config = json.loads((CONFIG_DIR / name).read_text())
        assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"], config["projection_size"]) == (
            768, 12, 30522, 128)
    vocab = (CONFIG_DIR / "tokenizer" / "vocab.txt").read_text().split("\n")
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and 200 < len(vocab) < 1000


@pytest.mark.parametrize("name", VARIANTS)
def test_parity_with_hi_ml_similarity_map(name: str, prepared, files: list[Sample]) -> None:
    """Native map + geometry mapped back with nearest equals hi-ml's full-size map, NaN frame included."""
    method = prepared(name)
    maps = method.heatmaps(files, FolderDataset(files))
    engine = _engine_of(method)
    for sample, heatmap in zip(files, maps):
        grid = GRID[method.settings.variant]
        assert heatmap.values.shape == (grid, grid) and heatmap.values.dtype == np.float32
        reference = engine.get_similarity_map_from_raw_data(Path(sample.image_path), sample.phrase)
        ours = to_original(heatmap, "nearest")
        assert ours.shape == reference.shape == (sample.height, sample.width)
        assert np.array_equal(np.isnan(ours), np.isnan(reference))
        assert 0 < np.isnan(reference).sum() < reference.size
        assert np.nanstd(reference) > 1e-3  # a map with structure, not a constant
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5, equal_nan=True)
    assert maps[0].meta["prompt"] == "Small left pleural effusion"


def test_batching_equals_one_at_a_time(prepared, files: list[Sample]) -> None:
    method = prepared("biovil_t")
    samples = [*files, _sample("again", files[0].image_path, 700, 563, "moderate cardiomegaly")]
    dataset = FolderDataset(samples)
    image_batches: list[int] = []
    text_batches: list[int] = []
    image_forward = method.image_model.get_patchwise_projected_embeddings
    text_forward = method.text_model.get_projected_text_embeddings

    def count_images(x, normalize):
        image_batches.append(x.shape[0])
        return image_forward(x, normalize=normalize)

    def count_text(input_ids, attention_mask, normalize_embeddings=True):
        text_batches.append(input_ids.shape[0])
        return text_forward(input_ids=input_ids, attention_mask=attention_mask, normalize_embeddings=normalize_embeddings)

    method.image_model.get_patchwise_projected_embeddings = count_images
    method.text_model.get_projected_text_embeddings = count_text
    try:
        method.context.batch_size = 2
        method._text_cache.clear()
        batched = method.heatmaps(samples, dataset)
        assert image_batches == [2, 1] and text_batches == [2, 1]
        method.context.batch_size = 1
        single = []
        for s in samples:
            method._text_cache.clear()
            single.extend(method.heatmaps([s], dataset))
    finally:
        method.context.batch_size = 8
        del method.image_model.get_patchwise_projected_embeddings
        del method.text_model.get_projected_text_embeddings
    for a, b in zip(batched, single):
        assert a.geometry == b.geometry
        np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-6)
    assert not np.allclose(batched[0].values, batched[2].values, atol=1e-4)  # same image, other phrase


@pytest.mark.parametrize("name", VARIANTS)
def test_random_weights_map_on_mimic_sized_image(name: str, prepared) -> None:
    method = prepared(name)
    sample = _sample("mimic", "in-memory", 3056, 2544, "Right basilar atelectasis")
    rows = np.linspace(0, 1, 3056)[:, None] * np.hanning(2544)[None, :]
    dataset = ArrayDataset([sample], {"mimic": (rows * 4000).astype(np.uint16)})
    (heatmap,) = method.heatmaps([sample], dataset)
    grid = GRID[method.settings.variant]
    assert heatmap.values.shape == (grid, grid) and heatmap.values.dtype == np.float32
    assert np.isfinite(heatmap.values).all() and np.ptp(heatmap.values) > 0
    assert np.abs(heatmap.values).max() <= 1.0
    g = heatmap.geometry
    # int(crop * 2544 / 512) square, floor margins: 480 -> 2385 at (335, 79); 448 -> 2226 at (415, 159)
    expected = {"biovil": (335, 79, 2385), "biovil_t": (415, 159, 2226)}[method.settings.variant]
    assert (g.image_height, g.image_width, g.top, g.left, g.height, g.width) == (3056, 2544, *expected, expected[2])
    record = method.provenance()
    assert record["random_weights"] is True and record["seed"] == 0 and "checkpoints" not in record


def test_special_tokens_in_phrase_are_a_sample_error(prepared, files: list[Sample]) -> None:
    method = prepared("biovil_t")
    bad = _sample("bad", files[0].image_path, 700, 563, "effusion [SEP] edema")
    with pytest.raises(SampleError, match=r"sample bad: .*\[SEP\]"):
        method.heatmaps([bad], FolderDataset([bad]))


@pytest.mark.parametrize("name", VARIANTS)
def test_offline_without_weights_names_the_checkpoint(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = load_method_spec(name)["weights"]["text"]
    method = _method(name)
    with pytest.raises(BenchError) as info:
        method.prepare(UntouchableDataset([]))
    message = str(info.value)
    assert "\n" not in message
    for part in (text["repo"], text["revision"], "config.json", "vocab.txt", "pytorch_model.bin",
                 f"hf download {text['repo']} --revision {text['revision']}", "--weights"):
        assert part in message


def test_weights_folder_missing_image_file(tmp_path: Path) -> None:
    for name in ("config.json", "vocab.txt", "pytorch_model.bin"):
        (tmp_path / name).write_text("{}")
    method = _method("biovil", weights=tmp_path)
    with pytest.raises(BenchError, match=r"biovil_image_resnet50_proj_size_128\.pt not found in weights folder") as info:
        method.prepare(UntouchableDataset([]))
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_device_without_cuda_is_one_line_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError, match="^device cuda requested but no CUDA GPU is available$"):
        _method("biovil", device="cuda", random_weights=True).prepare(UntouchableDataset([]))
    with pytest.raises(BenchError, match="not a torch device"):
        _method("biovil_t", device="gpu0", random_weights=True).prepare(UntouchableDataset([]))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, prepared, files: list[Sample]) -> tuple[Path, np.ndarray]:
    """BioViL-T weights unlike any seed's (random weights, perturbed) saved as the published repository
    lays them out (with a small BERT), and hi-ml's map of the first test image from the saved models."""
    spec = {**load_method_spec("biovil_t")["params"], "image_file": load_method_spec("biovil_t")["weights"]["image"]["file"]}
    folder = tmp_path_factory.mktemp("weights") / "BiomedVLP-BioViL-T"
    folder.mkdir()
    image_model = copy.deepcopy(prepared("biovil_t").image_model)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in image_model.projector.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    torch.manual_seed(7)
    text_model = CXRBertModel(CXRBertConfig(**{k: v for k, v in TINY_BERT.items() if k != "model_type"})).eval()
    torch.save(image_model.state_dict(), folder / spec["image_file"])
    torch.save(text_model.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(TINY_BERT))
    # the checkpoint's vocabulary differs from the built-in one in one word, so the test can tell which is read
    vocab = (CONFIG_DIR / "tokenizer" / "vocab.txt").read_text().split("\n")
    (folder / "vocab.txt").write_text("\n".join("[unused0]" if w == "effusions" else w for w in vocab))
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "tokenizer_config.json").write_text(json.dumps({  # as published: a v4 slow-tokenizer config
        "do_lower_case": True, "do_basic_tokenize": True, "never_split": None, **specials,
        "tokenize_chinese_chars": True, "strip_accents": None, "special_tokens_map_file": "/nonexistent/map.json",
        "tokenizer_file": None, "tokenizer_class": "CXRBertTokenizer",
        "auto_map": {"AutoTokenizer": ["configuration_cxrbert.CXRBertTokenizer", None]}}))
    tokenizer = CXRBertTokenizer.from_pretrained(str(CONFIG_DIR / "tokenizer"))
    engine = _hi_ml_engine(image_model, text_model, tokenizer, spec["crop"])
    reference = engine.get_similarity_map_from_raw_data(Path(files[0].image_path), files[0].phrase)
    return folder, reference


@pytest.mark.parametrize("source", ["local", "hf-cache"])
def test_checkpoint_loading_uses_the_saved_weights(source: str, checkpoint, files, tmp_path: Path, monkeypatch) -> None:
    folder, reference = checkpoint
    weights = load_method_spec("biovil_t")["weights"]
    spec = {"text_repo": weights["text"]["repo"], "text_revision": weights["text"]["revision"],
            "image_file": weights["image"]["file"]}
    tiny = ["weights.text.content=''"]  # a small BERT, not the published text model
    if source == "local":
        method = _method("biovil_t", tiny, weights=folder.parent)  # the <repo name> sub-folder is found
    else:
        fake_hf_cache(tmp_path / "hub", folder, spec["text_repo"], spec["text_revision"])
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
        method = _method("biovil_t", tiny)
    method.prepare(UntouchableDataset([]))
    (ours,) = method.heatmaps(files[:1], FolderDataset(files[:1]))
    assert np.nanstd(reference) > 1e-3
    np.testing.assert_allclose(to_original(ours, "nearest"), reference, rtol=0, atol=1e-5, equal_nan=True)
    record = method.provenance()
    assert record["random_weights"] is False
    by_file = {r["file"]: r for r in record["checkpoints"]}
    assert set(by_file) == {"config.json", "vocab.txt", "pytorch_model.bin", spec["image_file"]}
    assert method.tokenizer.tokenize("Pleural effusions") == ["pleural", "effusion", "##s"]
    image_record = by_file[spec["image_file"]]
    image_bytes = (folder / spec["image_file"]).read_bytes()
    assert image_record["sha256"] == hashlib.sha256(image_bytes).hexdigest()
    assert (image_record["repo_id"], image_record["revision"], image_record["source"]) == (
        spec["text_repo"], spec["text_revision"], source)


def test_resolve_files_prefers_alternatives_in_order(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"a": 1}')
    (src / "pytorch_model.bin").write_bytes(b"weights")
    fake_hf_cache(tmp_path / "hub", src, "org/model", "v2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    found = resolve_files("org/model", "v2", ["config.json", ("model.safetensors", "pytorch_model.bin")])
    assert [f.filename for f in found] == ["config.json", "pytorch_model.bin"]
    assert all(f.source == "hf-cache" and "snapshots" in str(f.path) for f in found)
    assert file_sha256(found[1].path) == hashlib.sha256(b"weights").hexdigest()
    assert found[0].record()["size"] == 8
    with pytest.raises(BenchError, match=r"org/model@v1: config\.json not in the Hugging Face cache .*"
                                         r"`hf download org/model --revision v1`"):
        resolve_files("org/model", "v1", ["config.json"])  # another revision is not in the cache
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x" * 10)
    assert file_sha256(plain) == hashlib.sha256(b"x" * 10).hexdigest()


def test_spec_is_data_a_variant_is_a_new_file() -> None:
    spec = copy.deepcopy(load_method_spec("biovil"))
    spec["params"]["crop"] = 448
    method = BioVilMethod(spec, RunContext(random_weights=True))
    assert (method.settings.crop, method.settings.variant) == (448, "biovil")
    spec["params"]["variant"] = "biovil_x"
    with pytest.raises(BenchError, match="params.variant = .biovil_x. is not one of biovil, biovil_t"):
        BioVilMethod(spec, RunContext())


@pytest.mark.parametrize(("name", "grid"), [("biovil", 15), ("biovil_t", 14)])
def test_bench_run_random_weights_end_to_end(bench_cli, tmp_path: Path, name: str, grid: int) -> None:
    out = tmp_path / "run"
    r = bench_cli("run", "--method", name, "--dataset", "phantom", "-O", "n_test=4", "-O", "n_train=0",
                  "--random-weights", "--limit", "4", "--out", out)
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["random_weights"] is True and run["n_samples"] == 4
    assert run["provenance"]["variant"] == name and run["provenance"]["random_weights"] is True
    maps = sorted((out / "heatmaps").glob("*.npz"))
    assert len(maps) == 4
    for path in maps:
        heatmap = Heatmap.load(path)
        assert heatmap.values.shape == (grid, grid) and np.isfinite(heatmap.values).all()
        assert heatmap.geometry.height == heatmap.geometry.width < min(heatmap.geometry.image_height,
                                                                        heatmap.geometry.image_width)


def test_bf16_runs_image_and_text_model_under_autocast_and_stays_close_to_fp32(prepared) -> None:
    from bench.running.runner import with_precision

    sample = _sample("mimic", "in-memory", 600, 500, "Right basilar atelectasis")
    rows = np.linspace(0, 1, 600)[:, None] * np.hanning(500)[None, :]
    dataset = ArrayDataset([sample], {"mimic": (rows * 4000).astype(np.uint16)})
    (full,) = prepared("biovil").heatmaps([sample], dataset)
    spec = with_precision(load_method_spec("biovil"), "bf16")
    method = backend_class("biovil")(spec, RunContext(random_weights=True, seed=0))
    method.prepare(UntouchableDataset([]))
    (reduced,) = method.heatmaps([sample], dataset)
    assert method.provenance()["precision"] == "bf16" and prepared("biovil").provenance()["precision"] == "fp32"
    assert reduced.values.dtype == np.float32
    difference = np.abs(reduced.values - full.values).max()
    assert 0 < difference < 0.1  # bf16 keeps 8 bits of mantissa: cosines move, by little
