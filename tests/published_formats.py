"""Tiny checkpoints in the on-disk formats the published weights come in, built at test time.

- the MONAI chest X-ray LDM bundle: plain `.pth` state dicts under the MONAI Generative Models names
- a PyTorch Lightning `.ckpt` of an original-layout LDM: non-EMA and EMA U-Net, text encoder, autoencoder
- text encoders as transformers 4 saved them in 2022: a pickled `pytorch_model.bin` with the
  position-id buffer (and the BERT pooler)
- the SD-2 tokenizer folder as published, and a tokenizer saved by transformers 5 (tokenizer.json only)
- Hugging Face hub caches as `hf download` leaves them
Writing uses `torch.save`; the harness reads these files with `weights_only=True` or safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import torch
from torch import nn

from bench.methods.ldm.loading import CONFIG_DIR

#: a CXR-BERT config small enough for tests, with BioViL's 128-d projection
TINY_BERT = {"architectures": ["CXRBertModel"], "model_type": "cxr-bert", "auto_map": {
    "AutoConfig": "configuration_cxrbert.CXRBertConfig", "AutoModel": "modeling_cxrbert.CXRBertModel"},
    "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
    "max_position_embeddings": 512, "vocab_size": 30522, "pad_token_id": 0, "projection_size": 128,
    "hidden_dropout_prob": 0.25, "attention_probs_dropout_prob": 0.25, "type_vocab_size": 2}

#: diffusers ResnetBlock2D parts under their original LDM names
_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def hf_snapshot(hub: Path, repo: str, commit: str) -> Path:
    """An empty snapshot of `repo` at `commit` in a Hugging Face hub cache, `main` pointing at it."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    return snapshot


def fake_hf_cache(root: Path, folder: Path, repo_id: str, revision: str) -> None:
    """A Hugging Face hub cache holding `folder`'s files (sub-folders too) at `revision`, as links to
    sha256-named blobs."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / commit
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
        if not blob.exists():
            os.link(f, blob)
        link = snapshot / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(*[".."] * (len(f.relative_to(folder).parts) + 1), "blobs", blob.name))


def original_layout(sd: dict, levels: int, per_block: int) -> dict:
    """A diffusers U-Net state dict under the original LDM names (`model.diffusion_model.input_blocks...`)."""
    pre = {"conv_in.": "input_blocks.0.0.", "time_embedding.linear_1.": "time_embed.0.",
           "time_embedding.linear_2.": "time_embed.2.", "conv_norm_out.": "out.0.", "conv_out.": "out.2.",
           "mid_block.resnets.0.": "middle_block.0.", "mid_block.attentions.0.": "middle_block.1.",
           "mid_block.resnets.1.": "middle_block.2."}
    idx = 1
    for b in range(levels):
        for j in range(per_block):
            pre[f"down_blocks.{b}.resnets.{j}."] = f"input_blocks.{idx}.0."
            pre[f"down_blocks.{b}.attentions.{j}."] = f"input_blocks.{idx}.1."
            idx += 1
        if b < levels - 1:
            pre[f"down_blocks.{b}.downsamplers.0.conv."] = f"input_blocks.{idx}.0.op."
            idx += 1
    idx = 0
    for b in range(levels):
        for j in range(per_block + 1):
            pre[f"up_blocks.{b}.resnets.{j}."] = f"output_blocks.{idx}.0."
            pre[f"up_blocks.{b}.attentions.{j}."] = f"output_blocks.{idx}.1."
            if j == per_block and b < levels - 1:
                pre[f"up_blocks.{b}.upsamplers.0.conv."] = f"output_blocks.{idx}.2.conv."
            idx += 1
    out = {}
    for key, value in sd.items():
        hit = max((p for p in pre if key.startswith(p)), key=len)
        rest = key[len(hit):]
        if ".resnets." in hit or hit.startswith("mid_block.resnets"):
            head, _, tail = rest.partition(".")
            rest = f"{_RESNET[head]}.{tail}"
        out["model.diffusion_model." + pre[hit] + rest] = value.contiguous()
    return out


def generative_names(state: dict) -> dict:
    """A MONAI core state dict under the MONAI Generative Models names the chest X-ray LDM bundle was
    saved with: attention projections without the `attn.` level (`proj_attn`, `to_out.0` for the output),
    upsampling convolutions named `conv` rather than `postconv`."""
    out = {}
    for key, value in state.items():
        old = re.sub(r"\.attn\.(to_[qkv])\.", r".\1.", key)
        old = old.replace(".attn.out_proj.", ".proj_attn.")
        old = re.sub(r"(transformer_blocks\.\d+\.attn\d)\.out_proj\.", r"\1.to_out.0.", old)
        out[old.replace("postconv", "conv")] = value.detach().clone()
    return out


def lightning_checkpoint(unet_state: dict, levels: int, per_block: int, seed: int = 0) -> dict:
    """A PyTorch Lightning checkpoint of the original LDM training code (as the SD-2 fine-tuning scripts
    write it): non-EMA U-Net under `model.diffusion_model.*`, its EMA copy (other values) under
    `model_ema.<name without dots>`, a text encoder under `cond_stage_model.*`, an autoencoder under
    `first_stage_model.*` and the schedule buffers."""
    g = torch.Generator().manual_seed(seed)
    unet = original_layout(unet_state, levels, per_block)
    state = dict(unet)
    for key, value in unet.items():
        ema = "model_ema." + key[len("model."):].replace(".", "")
        state[ema] = value + 0.01 * torch.randn(value.shape, generator=g)
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(1200, dtype=torch.int32)
    for i in range(2):
        state[f"cond_stage_model.model.transformer.resblocks.{i}.attn.in_proj_weight"] = torch.randn(
            12, 4, generator=g)
        state[f"cond_stage_model.model.transformer.resblocks.{i}.attn.in_proj_bias"] = torch.randn(12, generator=g)
    state["first_stage_model.encoder.conv_in.weight"] = torch.randn(8, 3, 3, 3, generator=g)
    state["first_stage_model.encoder.conv_in.bias"] = torch.randn(8, generator=g)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    state["betas"] = betas
    state["alphas_cumprod"] = torch.cumprod(1 - betas, 0)
    return {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.4.2", "state_dict": state,
            "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}


def text_2022(model: nn.Module, folder: Path, **config: object) -> dict:
    """Save a transformers text model as transformers 4 did in 2022: config.json (with `config` changes)
    and a pickled pytorch_model.bin that also holds the position-id buffer and, for a BERT, the pooler.
    Returns the saved tensors."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    positions = torch.arange(model.config.max_position_embeddings)[None]
    if model.config.model_type == "clip_text_model":  # transformers 4 kept the layers under `text_model.`
        state = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}
        state["text_model.embeddings.position_ids"] = positions
    else:
        prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
        state[f"{prefix}embeddings.position_ids"] = positions
        g = torch.Generator().manual_seed(5)
        size = model.config.hidden_size
        state[f"{prefix}pooler.dense.weight"] = torch.randn(size, size, generator=g)
        state[f"{prefix}pooler.dense.bias"] = torch.randn(size, generator=g)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "pytorch_model.bin")
    values = {**model.config.to_dict(), "transformers_version": "4.25.1", **config}
    (folder / "config.json").write_text(json.dumps(values, indent=2))
    return state


def sd2_tokenizer(folder: Path, special_tokens_map: bool = True) -> None:
    """The SD-2 tokenizer folder as published (the built-in small vocabulary): tokenizer_config.json names
    the end token as pad token, special_tokens_map.json the "!" the model was trained with."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(CONFIG_DIR / "clip_tokenizer" / name, folder / name)
    end = "<|endoftext|>"
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "add_prefix_space": False, "bos_token": "<|startoftext|>", "do_lower_case": True, "eos_token": end,
        "errors": "replace", "model_max_length": 77, "pad_token": end, "tokenizer_class": "CLIPTokenizer",
        "unk_token": end}))
    if special_tokens_map:
        (folder / "special_tokens_map.json").write_text(json.dumps({
            "bos_token": "<|startoftext|>", "eos_token": end, "pad_token": "!", "unk_token": end}))


def json_only_tokenizer(tokenizer, folder: Path) -> None:
    """Add to `folder` a tokenizer as transformers 5 saves it: tokenizer.json and tokenizer_config.json."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        files = sorted(Path(scratch).iterdir())
        assert [p.name for p in files] == ["tokenizer.json", "tokenizer_config.json"]
        folder.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy(path, folder / path.name)


def monai_bundle(folder: Path, unet: nn.Module, vae: nn.Module, text: nn.Module) -> dict:
    """The chest X-ray LDM bundle folder (models/diffusion_model.pth, models/autoencoder.pth in the
    MONAI Generative names) with the SD-2.1-base text encoder and tokenizer in stable-diffusion-2-1-base/.
    Returns the saved state dicts by file."""
    (folder / "models").mkdir(parents=True)
    saved = {"models/diffusion_model.pth": generative_names(unet.state_dict()),
             "models/autoencoder.pth": generative_names(vae.state_dict())}
    for name, state in saved.items():
        torch.save(state, folder / name)
    sd = folder / "stable-diffusion-2-1-base"
    saved["text_encoder"] = text_2022(text, sd / "text_encoder")
    sd2_tokenizer(sd / "tokenizer")
    return saved


def assert_same_tensors(module: nn.Module, expected: dict) -> None:
    """Every tensor of `module` equals the one saved under its name (or under `text_model.` + its name,
    where a 2022 CLIP file kept it)."""
    for key, value in module.state_dict().items():
        saved = expected[key] if key in expected else expected[f"text_model.{key}"]
        assert torch.equal(value, saved.to(value.dtype)), key
