"""Checkpoints in the formats the published weights come in load exactly, tensor for tensor, through the
code path a real checkpoint takes; one missing, left-over or mis-shaped tensor stops with one line
naming the file and the keys. Every fixture is built at test time at a tiny size (published_formats.py).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from published_formats import (
    TINY_BERT,
    assert_same_tensors,
    fake_hf_cache,
    generative_names,
    json_only_tokenizer,
    lightning_checkpoint,
    monai_bundle,
    text_2022,
)
from safetensors.torch import load_file, save_file
from tiny_unets import TINY, one_thread, tiny_method, tiny_monai_unet  # noqa: F401

from bench.core.errors import BenchError
from bench.methods import RunContext, backend_class
from bench.methods.ldm.anatomy.codebook import load_rules, location_vocabulary, random_codebook, save_codebook
from bench.methods.ldm.formats import load_monai, load_original_unet
from bench.methods.ldm.loading import CONFIG_DIR
from bench.methods.ldm.settings import METHODS_DIR
from bench.methods.specs import apply_overrides, load_method_spec
from bench.methods.state_dicts import HARMLESS, harmless, read_state_dict

BERT_VOCAB = METHODS_DIR / "biovil_config" / "tokenizer"


def _one_line(fn) -> str:
    with pytest.raises(BenchError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return message


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with every float tensor moved, so a load that leaves one alone is seen."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(1.0)
    return module


def _ldm(name: str, **context):
    method = tiny_method(name, **context)
    method.prepare()
    return method


# ------------------------------------------------------------------ allow-list

def test_allow_list_names_only_the_known_harmless_keys() -> None:
    assert len(HARMLESS) == 2
    for key in ("text_model.embeddings.position_ids", "bert.embeddings.position_ids", "embeddings.position_ids",
                "bert.pooler.dense.weight", "pooler.dense.bias"):
        assert harmless(key), key
    for key in ("bert.encoder.layer.0.attention.self.query.weight", "conv_in.weight", "cls.predictions.bias",
                "encoder.pooler_x.weight", "bert.embeddings.position_embeddings.weight"):
        assert not harmless(key), key


# ------------------------------------------------------------------ MONAI bundle (MONAI Generative names)

def _small_autoencoder():
    """A MONAI autoencoder with attention at its second level and in the middle (non-local) blocks."""
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(2)
    return AutoencoderKL(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 8), latent_channels=3,
                         num_res_blocks=1, norm_num_groups=4, attention_levels=(False, True),
                         with_encoder_nonlocal_attn=True, with_decoder_nonlocal_attn=True)


@pytest.mark.parametrize("build", [tiny_monai_unet, _small_autoencoder], ids=["unet", "autoencoder"])
def test_monai_generative_names_load_exactly(tmp_path: Path, build) -> None:
    original = build()
    saved = generative_names(original.state_dict())
    old_only = set(saved) - set(original.state_dict())
    assert old_only and all(re.search(r"\.to_out\.0\.|\.proj_attn\.|\.to_[qkv]\.|\.conv\.conv\.", k) for k in old_only)
    torch.save(saved, tmp_path / "model.pth")
    target = _perturbed(build())
    assert load_monai(target, tmp_path / "model.pth", "U-Net") == "monai-generative"
    assert_same_tensors(target, original.state_dict())
    # MONAI core names load the same
    torch.save(original.state_dict(), tmp_path / "core.pth")
    target = _perturbed(build())
    assert load_monai(target, tmp_path / "core.pth", "U-Net") == "monai"
    assert_same_tensors(target, original.state_dict())


def _renamed(saved: dict, fragment: str) -> str:
    return next(k for k in saved if fragment in k)


@pytest.mark.parametrize(("change", "message"), [
    ("drop conv_in.conv.weight", r"1 tensor\(s\) of the model missing from the file \(conv_in\.conv\.weight\)$"),
    ("drop attn2.to_out.0.weight", r"it has no tensor '[\w.]+attn2\.to_out\.0\.weight' \(in MONAI Generative names\)"),
    ("add extra.weight", r"1 tensor\(s\) of the file unused by the model \(extra\.weight\)$"),
    ("reshape attn1.to_out.0.weight", r"attn1\.out_proj\.weight has shape torch\.Size\(\[16, 8\]\) in the file"),
    ("core names, drop conv_in.conv.weight", r"1 tensor\(s\) of the model missing from the file \(conv_in\.conv\.weight\)$"),
    ("core names, add extra.weight", r"1 tensor\(s\) of the file unused by the model \(extra\.weight\)$"),
])
def test_monai_checkpoint_that_does_not_fit_is_one_line(tmp_path: Path, change: str, message: str) -> None:
    original = tiny_monai_unet()
    saved = original.state_dict() if change.startswith("core") else generative_names(original.state_dict())
    saved = dict(saved)
    verb, key = change.split(", ")[-1].split(" ")
    if verb == "drop":
        del saved[_renamed(saved, key)]
    elif verb == "add":
        saved[key] = torch.zeros(3)
    else:
        name = _renamed(saved, key)
        saved[name] = torch.zeros(16, 8)
    torch.save(saved, tmp_path / "diffusion_model.pth")
    text = _one_line(lambda: load_monai(tiny_monai_unet(), tmp_path / "diffusion_model.pth", "U-Net", "the hint"))
    assert text.startswith(f"the U-Net checkpoint {tmp_path / 'diffusion_model.pth'} does not match the model: ")
    assert re.search(message.replace("$", r" \(the hint\)$"), text), text


def test_autoencoder_of_another_release_is_one_line(tmp_path: Path) -> None:
    """An autoencoder saved from another architecture (as the bundle's first release against today's
    configuration) lacks a tensor the conversion needs: one line naming it, not a KeyError."""
    from monai.networks.nets import AutoencoderKL

    config = json.loads((CONFIG_DIR / "tiny_monai" / "autoencoder.json").read_text())
    saved = generative_names(AutoencoderKL(**config).state_dict())
    del saved["decoder.blocks.4.conv.conv.weight"]
    torch.save(saved, tmp_path / "autoencoder.pth")
    text = _one_line(lambda: load_monai(AutoencoderKL(**config), tmp_path / "autoencoder.pth", "autoencoder"))
    assert text == (f"the autoencoder checkpoint {tmp_path / 'autoencoder.pth'} does not match the model: it has "
                    "no tensor 'decoder.blocks.4.conv.conv.weight' (in MONAI Generative names) that this "
                    "architecture needs: another release or another model")


def test_autoencoder_without_attention_output_is_not_made_up(tmp_path: Path) -> None:
    """MONAI's conversion sets a missing attention output projection to the identity; that is a missing tensor."""
    saved = generative_names(_small_autoencoder().state_dict())
    del saved["encoder.blocks.4.proj_attn.weight"], saved["encoder.blocks.4.proj_attn.bias"]
    torch.save(saved, tmp_path / "autoencoder.pth")
    text = _one_line(lambda: load_monai(_small_autoencoder(), tmp_path / "autoencoder.pth", "autoencoder"))
    assert text.endswith("does not match the model: 2 tensor(s) of the model missing from the file "
                         "(encoder.blocks.4.attn.out_proj.bias, encoder.blocks.4.attn.out_proj.weight)")


# ------------------------------------------------------------------ Lightning checkpoint (original layout)

def _tiny_sd_config() -> dict:
    return json.loads((CONFIG_DIR / "tiny_sd" / "unet" / "config.json").read_text())


def test_lightning_checkpoint_gives_the_non_ema_unet(tmp_path: Path) -> None:
    from diffusers import UNet2DConditionModel

    original = UNet2DConditionModel.from_config(_tiny_sd_config())
    levels = len(original.config.block_out_channels)
    checkpoint = lightning_checkpoint(original.state_dict(), levels, original.config.layers_per_block)
    torch.save(checkpoint, tmp_path / "last.ckpt")
    unet, record = load_original_unet(tmp_path / "last.ckpt", _tiny_sd_config())
    assert_same_tensors(unet, original.state_dict())
    n = len(original.state_dict())
    assert record == {"unet_weights": "model.diffusion_model.* (non-EMA)", "unet_tensors": n,
                      "ignored_in_checkpoint": {"ema": n + 2, "text_encoder": 4, "autoencoder": 2}}
    ema = checkpoint["state_dict"]["model_ema.diffusion_modelout2weight"]
    assert not torch.equal(unet.conv_out.weight, ema)


@pytest.mark.parametrize(("change", "message"), [
    ("drop", r"1 tensor\(s\) of the model missing from the file \(conv_out\.weight\)$"),
    ("add", r"1 tensor\(s\) of the file unused by the model \(model\.diffusion_model\.extra\.weight\)$"),
])
def test_lightning_checkpoint_that_does_not_fit_is_one_line(tmp_path: Path, change: str, message: str) -> None:
    from diffusers import UNet2DConditionModel

    original = UNet2DConditionModel.from_config(_tiny_sd_config())
    checkpoint = lightning_checkpoint(original.state_dict(), len(original.config.block_out_channels),
                                      original.config.layers_per_block)
    if change == "drop":
        del checkpoint["state_dict"]["model.diffusion_model.out.2.weight"]
    else:
        checkpoint["state_dict"]["model.diffusion_model.extra.weight"] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / "last.ckpt")
    text = _one_line(lambda: load_original_unet(tmp_path / "last.ckpt", _tiny_sd_config()))
    assert text.startswith(f"the U-Net checkpoint {tmp_path / 'last.ckpt'} does not match the model: ")
    assert re.search(message, text), text


# ------------------------------------------------------------------ files read as data

def test_files_are_read_as_plain_tensors_only(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2), "config": Path("x")}, tmp_path / "object.pth")
    text = _one_line(lambda: read_state_dict(tmp_path / "object.pth", "U-Net"))
    assert text.startswith(f"cannot read the U-Net checkpoint {tmp_path / 'object.pth'} as plain tensors: ")
    torch.save({"weight": torch.zeros(1000)}, tmp_path / "whole.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "whole.pth").read_bytes()[:1500])
    assert "cannot read the U-Net checkpoint" in _one_line(lambda: read_state_dict(tmp_path / "cut.pth", "U-Net"))
    save_file({"weight": torch.ones(3)}, str(tmp_path / "ok.safetensors"))
    assert torch.equal(read_state_dict(tmp_path / "ok.safetensors", "U-Net")["weight"], torch.ones(3))
    torch.save([1, 2], tmp_path / "list.pth")
    assert "is not a state dict" in _one_line(lambda: read_state_dict(tmp_path / "list.pth", "U-Net"))


# ------------------------------------------------------------------ the published layouts of each method

def _bundle(root: Path):
    """ldm_frozen's published files: the MONAI bundle folder with the SD-2.1-base text parts inside."""
    models = _ldm("ldm_frozen").models
    saved = monai_bundle(root / "bundle", models.unet, models.vae, models.text.model)
    assert all(k.startswith("text_model.") for k in saved["text_encoder"])  # transformers 4 names
    return root / "bundle", models


def _check_bundle(method, models) -> None:
    assert_same_tensors(method.models.unet, models.unet.state_dict())
    assert_same_tensors(method.models.vae, models.vae.state_dict())
    if method.settings.name == "ldm_frozen":  # anatomy_ldm writes its codebook rows into the token embeddings
        assert_same_tensors(method.models.text.model, models.text.model.state_dict())
    assert method.models.loading == {"unet_key_names": "monai-generative", "autoencoder_key_names": "monai-generative"}
    assert method.models.text.tokenizer.pad_token_id == 0


def _clip_ldm(root: Path, monkeypatch):
    """clip_ldm's files: the fine-tuned Lightning checkpoint (with EMA and its own text encoder), the
    SD-2-base autoencoder, text encoder (2022 file) and tokenizer (saved by transformers 5) in the HF cache."""
    models = _ldm("clip_ldm").models
    unet = models.unet
    torch.save(lightning_checkpoint(unet.state_dict(), len(unet.config.block_out_channels),
                                    unet.config.layers_per_block), root / "last.ckpt")
    repo = root / "stable-diffusion-2-base"
    models.vae.save_pretrained(repo / "vae")
    text_2022(models.text.model, repo / "text_encoder")
    json_only_tokenizer(models.text.tokenizer, repo / "tokenizer")
    fake_hf_cache(root / "hub", repo, "stabilityai/stable-diffusion-2-base", "main")
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hub"))
    return root / "last.ckpt", models


def _check_clip_ldm(method, models) -> None:
    for part in ("unet", "vae"):
        assert_same_tensors(getattr(method.models, part), getattr(models, part).state_dict())
    assert_same_tensors(method.models.text.model, models.text.model.state_dict())
    assert method.models.loading["unet_weights"] == "model.diffusion_model.* (non-EMA)"
    assert method.models.loading["ignored_in_checkpoint"]["text_encoder"] == 4


def _cxrbert_ldm(root: Path, monkeypatch, tokenizer_json: bool = False):
    """cxrbert_ldm's files as `hf download` leaves them: the EMA U-Net folder, the SD-1.5 autoencoder and
    CXR-BERT-specialized as published in 2022 (pytorch_model.bin with position ids and pooler)."""
    models = _ldm("cxrbert_ldm").models
    unet_repo, vae_repo, text_repo = root / "cxr_bert_ldm", root / "sd15", root / "cxr-bert"
    models.unet.save_pretrained(unet_repo / "unet_ema")
    models.vae.save_pretrained(vae_repo / "vae")
    text_2022(models.text.model, text_repo)
    if tokenizer_json:
        json_only_tokenizer(models.text.tokenizer, text_repo)
    else:
        shutil.copy(BERT_VOCAB / "vocab.txt", text_repo / "vocab.txt")
    for folder, repo in ((unet_repo, "FelixNuetzel/cxr_bert_ldm"), (vae_repo, "stable-diffusion-v1-5/stable-diffusion-v1-5"),
                         (text_repo, "microsoft/BiomedVLP-CXR-BERT-specialized")):
        fake_hf_cache(root / "hub", folder, repo, "main")
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hub"))
    return None, models


def _check_cxrbert_ldm(method, models) -> None:
    for part in ("unet", "vae"):
        assert_same_tensors(getattr(method.models, part), getattr(models, part).state_dict())
    assert_same_tensors(method.models.text.model, models.text.model.state_dict())


def _anatomy_ldm(root: Path, monkeypatch):
    folder, models = _bundle(root)
    rules = load_rules()
    codebook = random_codebook(location_vocabulary(models.text.tokenizer, rules), 32, seed=3)
    save_codebook(codebook, folder / "location_codebook.safetensors")
    return folder, models


BUILD = {"ldm_frozen": lambda root, mp: _bundle(root), "anatomy_ldm": _anatomy_ldm, "clip_ldm": _clip_ldm,
         "cxrbert_ldm": _cxrbert_ldm}
CHECK = {"ldm_frozen": _check_bundle, "anatomy_ldm": _check_bundle, "clip_ldm": _check_clip_ldm,
         "cxrbert_ldm": _check_cxrbert_ldm}


def _run(bench_cli, out: Path, name: str, weights: Path | None, *extra: str):
    overrides = [x for item in TINY[name.removesuffix("+bbm")] for x in ("--set", item)]
    args = ["--weights", weights] if weights is not None else []
    return bench_cli("run", "--method", name, "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0",
                     "--limit", "2", "--out", out, *args, *overrides, *extra)


@pytest.mark.parametrize("name", ["ldm_frozen", "anatomy_ldm", "clip_ldm", "cxrbert_ldm"])
def test_bench_run_on_the_published_layout(bench_cli, capsys, tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights, models = BUILD[name](tmp_path, monkeypatch)
    method = tiny_method(name, random_weights=False, weights=weights)
    method.prepare()
    CHECK[name](method, models)
    capsys.readouterr()
    out = tmp_path / "run"
    r = _run(bench_cli, out, name, weights)
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["random_weights"] is False and run["n_samples"] == 2
    records = run["provenance"]["checkpoints"]
    assert records and all(len(c["sha256"]) == 64 for c in records)
    assert run["provenance"]["loading"] == method.models.loading
    warnings = [line for line in r.err.splitlines() if line.startswith("warning:")]
    if name == "clip_ldm":
        assert warnings == ["warning: clip_ldm: last.ckpt carries its own text encoder (cond_stage_model.*, 4 "
                            "tensors), not used: the spec's frozen text encoder (weights.text) conditions the U-Net"]
        assert {c["file"] for c in records} >= {"last.ckpt", "vae/diffusion_pytorch_model.safetensors",
                                                "text_encoder/pytorch_model.bin", "tokenizer/tokenizer.json"}
    else:
        assert warnings == []


def test_sd2_tokenizer_without_its_pad_token_is_one_line(tmp_path: Path, monkeypatch) -> None:
    """The published SD-2 tokenizer_config.json names the end token as pad token; only special_tokens_map.json
    sets the "!" (id 0) the model was trained with. Without it, or with another pad token in it, the
    prompts would be padded otherwise: one line each."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    folder, _ = _bundle(tmp_path)
    tokenizer = folder / "stable-diffusion-2-1-base" / "tokenizer"
    method = tiny_method("ldm_frozen", random_weights=False, weights=folder)
    (tokenizer / "special_tokens_map.json").unlink()
    assert "tokenizer/special_tokens_map.json not found" in _one_line(method.prepare)
    (tokenizer / "special_tokens_map.json").write_text(json.dumps({"pad_token": "<|endoftext|>"}))
    text = _one_line(method.prepare)
    assert text == (f"the tokenizer in {tokenizer} pads with '<|endoftext|>' (id 916), the model was trained with "
                    "'!' (id 0): its special_tokens_map.json or tokenizer_config.json is not the published one")


@pytest.mark.parametrize(("name", "damage", "message"), [
    ("ldm_frozen", "truncate models/diffusion_model.pth", "cannot read the U-Net checkpoint {f} as plain tensors: "),
    ("ldm_frozen", "drop models/autoencoder.pth", "the autoencoder checkpoint {f} does not match the model: "
                                                    "1 tensor(s) of the model missing from the file (decoder.blocks.0.conv"),
    ("clip_ldm", "add last.ckpt", "the U-Net checkpoint {f} does not match the model: 1 tensor(s) of the file "
                                  "unused by the model (model.diffusion_model.extra.weight)"),
    ("cxrbert_ldm", "drop cxr-bert/pytorch_model.bin", "the text encoder checkpoint {f} does not match the model: "
                                                       "1 tensor(s) of the model missing from the file (bert.encoder"),
    ("cxrbert_ldm", "add sd15/vae/diffusion_pytorch_model.safetensors",
     "the autoencoder checkpoint {f} does not match the model: 1 tensor(s) of the file unused by the model "
     "(extra.weight)"),
    ("ldm_frozen", "reshape stable-diffusion-2-1-base/text_encoder/pytorch_model.bin",
     "the text encoder checkpoint {f} does not match the model: 1 tensor(s) of another shape "
     "(final_layer_norm.weight: [7] in the file, [32] in the model)"),
    ("cxrbert_ldm", "reshape sd15/vae/diffusion_pytorch_model.safetensors",
     "the autoencoder checkpoint {f} does not match the model: decoder.conv_out.bias has shape torch.Size([7]) in "
     "the file, torch.Size([3]) in the model"),
])
def test_damaged_checkpoint_stops_before_any_work(bench_cli, tmp_path: Path, monkeypatch, name: str, damage: str,
                                                  message: str) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights, _ = BUILD[name](tmp_path, monkeypatch)
    verb, rel = damage.split(" ")
    path = (weights if weights is not None and weights.is_dir() else tmp_path) / rel
    if verb == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif path.suffix == ".safetensors":
        state = load_file(str(path))
        state["decoder.conv_out.bias" if verb == "reshape" else "extra.weight"] = torch.zeros(7 if verb == "reshape" else 2)
        save_file(state, str(path))
    else:
        state = torch.load(path, weights_only=True)
        inner = state["state_dict"] if "state_dict" in state else state
        if verb == "drop":
            del inner[sorted(k for k in inner if k.startswith(("decoder.blocks.0.conv", "bert.encoder")))[0]]
        elif verb == "reshape":
            inner["text_model.final_layer_norm.weight"] = torch.zeros(7)
        else:
            inner["model.diffusion_model.extra.weight"] = torch.zeros(2)
        torch.save(state, path)
    if name == "cxrbert_ldm":  # the damaged file is the one the Hugging Face cache links to: rebuild that link
        repo = {"cxr-bert": "microsoft/BiomedVLP-CXR-BERT-specialized",
                "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5"}[rel.split("/")[0]]
        shutil.rmtree(tmp_path / "hub" / f"models--{repo.replace('/', '--')}")
        fake_hf_cache(tmp_path / "hub", tmp_path / rel.split("/")[0], repo, "main")
        snapshot = next((tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots").iterdir())
        path = snapshot / rel.split("/", 1)[1]
    out = tmp_path / "run"
    r = _run(bench_cli, out, name, weights)
    assert r.code != 0
    lines = [line for line in r.err.strip().splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, r.err
    assert message.format(f=path) in lines[0], lines[0]
    assert "Traceback" not in r.err and not out.exists()


# ------------------------------------------------------------------ BioViL and BioViL-T

#: a small BERT is not the published text model: its content check is switched off by name
BIOVIL_TINY = ["weights.text.content=''"]


def _biovil_files(name: str) -> dict:
    """The text repository and image file name of a BioViL spec."""
    weights = load_method_spec(name)["weights"]
    return {"text_repo": weights["text"]["repo"], "image_file": weights["image"]["file"]}


def _biovil_method(name: str, **context):
    return backend_class("biovil")(apply_overrides(load_method_spec(name), BIOVIL_TINY), RunContext(**context))

def _biovil(root: Path, name: str, tokenizer_json: bool = False):
    """A BioViL(-T) repository folder as published: a 2022 CXR-BERT (BioViL-T's config says model_type
    "bert"), its vocabulary, and the image model's state dict."""
    from health_multimodal.text.model import CXRBertConfig, CXRBertModel, CXRBertTokenizer

    spec = _biovil_files(name)
    method = backend_class("biovil")(load_method_spec(name), RunContext(random_weights=True, seed=4))
    method.prepare()
    image = {k: v.clone() for k, v in method.image_model.state_dict().items()}
    torch.manual_seed(7)
    text = CXRBertModel(CXRBertConfig(**{k: v for k, v in TINY_BERT.items() if k != "model_type"})).eval()
    folder = root / spec["text_repo"].split("/")[-1]
    extra = {"model_type": "bert"} if name == "biovil_t" else {}
    text_state = text_2022(text, folder, architectures=["CXRBertModel"], **extra)
    if tokenizer_json:
        json_only_tokenizer(CXRBertTokenizer.from_pretrained(str(BERT_VOCAB)), folder)
    else:
        shutil.copy(BERT_VOCAB / "vocab.txt", folder / "vocab.txt")
    torch.save(image, folder / spec["image_file"])
    return folder, image, text_state


@pytest.mark.parametrize(("name", "tokenizer_json"), [("biovil", True), ("biovil_t", False)])
def test_biovil_published_layout_loads_exactly_and_quietly(tmp_path: Path, capfd, name: str,
                                                           tokenizer_json: bool) -> None:
    folder, image, text_state = _biovil(tmp_path, name, tokenizer_json)
    capfd.readouterr()
    method = _biovil_method(name, weights=tmp_path)
    method.prepare()
    assert_same_tensors(method.image_model, image)
    assert_same_tensors(method.text_model, text_state)
    assert capfd.readouterr().err == ""  # no "model of type bert" warning, no "newly initialized" report


@pytest.mark.parametrize(("name", "tokenizer_json"), [("biovil", True), ("biovil_t", False)])
def test_bench_run_on_the_published_biovil_layout(bench_cli, tmp_path: Path, name: str, tokenizer_json: bool) -> None:
    _biovil(tmp_path, name, tokenizer_json)
    out = tmp_path / "run"
    r = bench_cli("run", "--method", name, "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0", "--limit",
                  "2", "--weights", tmp_path, "--out", out, *[x for item in BIOVIL_TINY for x in ("--set", item)])
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["random_weights"] is False and run["n_samples"] == 2
    files = {c["file"] for c in run["provenance"]["checkpoints"]}
    assert files == {"config.json", "tokenizer.json" if tokenizer_json else "vocab.txt", "pytorch_model.bin",
                     _biovil_files(name)["image_file"]}


@pytest.mark.parametrize(("part", "message"), [
    ("image", "the image checkpoint {f} does not match the model: 1 tensor(s) of the model missing from the file "
              "(encoder.encoder.conv1.weight)"),
    ("text", "the text checkpoint {f} does not match the model: 1 tensor(s) of the file unused by the model "
             "(bert.extra.weight)"),
])
def test_biovil_damaged_checkpoint_is_one_line(bench_cli, tmp_path: Path, part: str, message: str) -> None:
    folder, image, text_state = _biovil(tmp_path, "biovil_t")
    spec = _biovil_files("biovil_t")
    if part == "image":
        path = folder / spec["image_file"]
        del image["encoder.encoder.conv1.weight"]
        torch.save(image, path)
    else:
        path = folder / "pytorch_model.bin"
        torch.save({**text_state, "bert.extra.weight": torch.zeros(2)}, path)
    out = tmp_path / "run"
    r = bench_cli("run", "--method", "biovil_t", "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0",
                  "--weights", tmp_path, "--out", out, *[x for item in BIOVIL_TINY for x in ("--set", item)])
    assert r.code != 0
    lines = [line for line in r.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and message.format(f=path) in lines[0], r.err
    assert not out.exists()


def test_bert_tokenizer_saved_by_transformers_5_is_accepted(tmp_path: Path, monkeypatch) -> None:
    """CXR-BERT with only tokenizer.json and tokenizer_config.json beside its weights: the same token ids."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    _, models = _cxrbert_ldm(tmp_path, monkeypatch, tokenizer_json=True)
    text = tmp_path / "cxr-bert"
    assert not (text / "vocab.txt").exists() and (text / "tokenizer.json").is_file()
    method = tiny_method("cxrbert_ldm", random_weights=False)
    method.prepare()
    phrase = "small left pleural effusion"
    assert method.models.text.tokenizer(phrase)["input_ids"] == models.text.tokenizer(phrase)["input_ids"] == [
        2, 207, 163, 242, 240, 3]
    files = {c["file"] for c in method.provenance()["checkpoints"]}
    assert "tokenizer.json" in files and "vocab.txt" not in files
