"""Train `phantom_ldm`, a small text-conditioned latent diffusion model, on the phantom train split.

    python -m bench.methods.ldm.phantom.train --out DIR [--seed 0] [--steps 1500] ...

Writes a diffusers-layout folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/ and
training.json) that the `ldm` backend loads. Three stages, all on CPU in minutes:

1. An AutoencoderKL (1 grey channel, 64x64 -> 4 x 16x16) learns to reconstruct the radiographs,
   with the reconstruction error inside the finding's boxes weighted up so lesions survive.
2. A whole-word tokenizer is built from the phantom vocabulary; a 2-layer BERT encodes phrases.
3. The U-Net and the BERT learn epsilon prediction (loss weighted up inside the boxes) plus an
   attention term: at the two 16x16 cross-attention resolutions, the attention mass a query gives
   the phrase's words (rather than [CLS], [SEP] and padding) is pulled towards the finding's box
   coverage. Some pairs get the mirrored phrase (left and right swapped) with the mirrored target
   and no diffusion loss, so the location comes from the words, not only from the image.
   With `--attn-words finding` the term leaves out the words that name a location or a side
   (`AnatomyRules.location_words`): those words are then grounded by nothing but the diffusion
   loss, as in a model trained on reports alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ....datasets.anatomy import load_rules
from ....datasets.phantom import flip_side
from .data import PhantomTensors, phantom_tensors, phantom_vocabulary

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: the cross-attention modules at the latent resolution that the attention term trains
TRAINED_ATTENTION = ("down_blocks.0.", "up_blocks.1.")


def vae_config(size: int) -> dict:
    """Grey-channel AutoencoderKL: three blocks, two halvings (size -> size / 4), 4 latent channels."""
    return {"in_channels": 1, "out_channels": 1, "down_block_types": ["DownEncoderBlock2D"] * 3,
            "up_block_types": ["UpDecoderBlock2D"] * 3, "block_out_channels": [8, 16, 32], "layers_per_block": 1,
            "latent_channels": 4, "norm_num_groups": 8, "sample_size": size, "mid_block_add_attention": False}


def unet_config(latent: int, context_dim: int) -> dict:
    """Two-level conditional U-Net: cross-attention (2 heads) at the latent resolution and in the middle."""
    return {"sample_size": latent, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
            "block_out_channels": [32, 64], "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": context_dim,
            "attention_head_dim": 2, "norm_num_groups": 8}


def text_config(vocab_size: int, max_length: int) -> dict:
    """A 2-layer, 64-wide BERT over the whole-word phantom vocabulary."""
    return {"vocab_size": vocab_size, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 128, "max_position_embeddings": max_length, "type_vocab_size": 1}


def scheduler_config() -> dict:
    """DDIM with Stable Diffusion's scaled-linear betas over 1000 training steps."""
    return {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon"}


def build_tokenizer(folder: Path):
    """BertTokenizer whose vocabulary is the special tokens plus every phantom word."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *phantom_vocabulary()]) + "\n", encoding="utf-8")
    return BertTokenizer(str(vocab), do_lower_case=True)


class AttentionRecorder:
    """Cross-attention processor that keeps softmax(QK^T * scale) with its gradient."""

    def __init__(self) -> None:
        self.probs: list[torch.Tensor] = []
        self.heads: list[int] = []

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, None)
        self.probs.append(probs)
        self.heads.append(attn.heads)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        return attn.to_out[1](attn.to_out[0](out))


def record_attention(unet) -> AttentionRecorder:
    """Install one recorder on the trained cross-attention modules of `unet`."""
    from diffusers.models.attention_processor import Attention

    recorder = AttentionRecorder()
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and name.endswith("attn2") and name.startswith(TRAINED_ATTENTION):
            module.set_processor(recorder)
    return recorder


def attention_loss(recorder: AttentionRecorder, words: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE between each query's attention mass on the phrase words and the box coverage.

    words: (B, L) 1 at the phrase's word positions; target: (B, h*w) coverage at the layer's grid.
    """
    losses = []
    for probs, heads in zip(recorder.probs, recorder.heads):
        batch = words.shape[0]
        mass = (probs.view(batch, heads, probs.shape[1], probs.shape[2]) * words[:, None, None, :]).sum(-1).mean(1)
        mass = mass.clamp(1e-4, 1 - 1e-4)
        pos, neg = target, 1.0 - target
        loss_pos = -(pos * mass.log()).sum(1) / pos.sum(1).clamp_min(1e-3)
        loss_neg = -(neg * (1 - mass).log()).sum(1) / neg.sum(1).clamp_min(1e-3)
        losses.append((loss_pos + loss_neg).mean())
    recorder.probs.clear()
    recorder.heads.clear()
    return torch.stack(losses).mean()


def train_vae(data: PhantomTensors, args: argparse.Namespace, log: Callable[[str], None]):
    """Stage 1: the autoencoder, box-weighted reconstruction plus a small KL term."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**vae_config(args.size))
    opt = torch.optim.Adam(vae.parameters(), lr=args.vae_lr)
    gen = torch.Generator().manual_seed(args.seed)
    n = data.images.shape[0]
    start = time.time()
    for step in range(1, args.vae_steps + 1):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x, cov = data.images[idx], data.coverage[idx]
        dist = vae.encode(x).latent_dist
        recon = vae.decode(dist.sample(generator=gen)).sample
        rec = ((recon - x) ** 2 * (1 + args.lesion_weight * cov)).mean()
        loss = rec + args.kl_weight * dist.kl().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.log_every == 0 or step == args.vae_steps:
            log(f"vae step {step}/{args.vae_steps} reconstruction {rec.item():.5f} ({time.time() - start:.0f} s)")
    vae.eval().requires_grad_(False)
    return vae, float(rec.item())


def tokenize(tokenizer, phrases: list[str], max_length: int,
             leave_out: frozenset[str] = frozenset()) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask, word mask) of the phrases, padded to `max_length` as the backend pads them;
    the word mask is 0 at tokens in `leave_out`."""
    enc = tokenizer(phrases, padding="max_length", max_length=max_length, truncation=True,
                    return_special_tokens_mask=True, return_tensors="pt")
    words = enc["attention_mask"] * (1 - enc["special_tokens_mask"])
    if leave_out:
        ids = [i for i, token in enumerate(tokenizer.convert_ids_to_tokens(range(len(tokenizer)))) if token in leave_out]
        words = words * ~torch.isin(enc["input_ids"], torch.tensor(ids, dtype=torch.long))
    return enc["input_ids"], enc["attention_mask"], words.float()


def train_ldm(data: PhantomTensors, vae, tokenizer, args: argparse.Namespace, log: Callable[[str], None]):
    """Stage 3: U-Net and text encoder, epsilon prediction plus the attention term."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import BertConfig, BertModel

    with torch.no_grad():
        means = torch.cat([vae.encode(data.images[i:i + 64]).latent_dist.mean for i in range(0, len(data.images), 64)])
        stds = torch.cat([vae.encode(data.images[i:i + 64]).latent_dist.std for i in range(0, len(data.images), 64)])
    scale = float(1.0 / means.std())
    latent = means.shape[-1]
    down = data.images.shape[-1] // latent
    cov = F.avg_pool2d(data.coverage, down)
    text = BertModel(BertConfig(**text_config(len(tokenizer.get_vocab()), args.max_length)))
    unet = UNet2DConditionModel(**unet_config(latent, text.config.hidden_size))
    recorder = record_attention(unet)
    alphas = DDIMScheduler(**scheduler_config()).alphas_cumprod
    flipped = [flip_side(p) for p in data.phrases]
    leave_out = load_rules().location_words if args.attn_words == "finding" else frozenset()
    ids, mask, words = tokenize(tokenizer, data.phrases, args.max_length, leave_out)
    f_ids, f_mask, f_words = tokenize(tokenizer, flipped, args.max_length, leave_out)
    sided = torch.tensor([s in ("right", "left") for s in data.sides])
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(args.seed + 1)
    n = means.shape[0]
    start = time.time()
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        flip = sided[idx] & (torch.rand(args.batch, generator=gen) < args.flip_prob)
        f = flip[:, None]
        b_ids = torch.where(f, f_ids[idx], ids[idx])
        b_mask = torch.where(f, f_mask[idx], mask[idx])
        b_words = torch.where(f, f_words[idx], words[idx])
        b_cov = torch.where(flip[:, None, None, None], cov[idx].flip(-1), cov[idx])
        z = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * scale
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        noise = torch.randn(z.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * noise
        context = text(input_ids=b_ids, attention_mask=b_mask).last_hidden_state
        pred = unet(noisy, t, encoder_hidden_states=context).sample
        weight = (1 + args.lesion_weight * cov[idx]) * (~flip).float().view(-1, 1, 1, 1)
        diff = ((pred - noise) ** 2 * weight).mean()
        att = attention_loss(recorder, b_words, b_cov.flatten(1))
        loss = diff + args.attn_weight * att
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % args.log_every == 0 or step == args.steps:
            log(f"ldm step {step}/{args.steps} diffusion {diff.item():.4f} attention {att.item():.4f} "
                f"({time.time() - start:.0f} s)")
    return unet.eval(), text.eval(), scale, {"diffusion": float(diff.item()), "attention": float(att.item())}


def save(folder: Path, vae, unet, text, tokenizer, scale: float) -> None:
    """The diffusers layout the `ldm` backend loads, weights as safetensors."""
    from diffusers import DDIMScheduler

    vae.register_to_config(scaling_factor=scale)
    vae.save_pretrained(str(folder / "vae"))
    unet.save_pretrained(str(folder / "unet"))
    text.save_pretrained(str(folder / "text_encoder"))
    tokenizer.save_pretrained(str(folder / "tokenizer"))
    DDIMScheduler(**scheduler_config()).save_pretrained(str(folder / "scheduler"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.methods.ldm.phantom.train",
                                description="Train the phantom demonstration latent diffusion model on CPU.")
    p.add_argument("--out", type=Path, required=True, help="output folder (diffusers layout)")
    p.add_argument("--seed", type=int, default=0, help="training seed (weights, batches, noise)")
    p.add_argument("--dataset-seed", type=int, default=0, help="phantom dataset seed")
    p.add_argument("--n-train", type=int, default=400, help="phantom train samples rendered")
    p.add_argument("--size", type=int, default=64, help="model image side: short side resized, centre crop")
    p.add_argument("--max-length", type=int, default=16, help="text context length")
    p.add_argument("--vae-steps", type=int, default=100)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--steps", type=int, default=300, help="U-Net and text encoder steps")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--lesion-weight", type=float, default=4.0, help="extra loss weight inside the boxes")
    p.add_argument("--attn-weight", type=float, default=1.0, help="weight of the attention term")
    p.add_argument("--attn-words", choices=("phrase", "finding"), default="phrase",
                   help="words whose attention the term supervises: every word of the phrase, or all but "
                        "the words naming a location or side")
    p.add_argument("--flip-prob", type=float, default=0.3, help="share of one-sided pairs with the mirrored phrase")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--log-every", type=int, default=25)
    args = p.parse_args(argv)
    if args.size % 4 or args.size < 16:
        p.error("--size must be a multiple of 4, at least 16")
    if min(args.n_train, args.steps, args.batch, args.vae_steps) < 1:
        p.error("--n-train, --steps, --vae-steps and --batch must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.time()
    data = phantom_tensors(args.n_train, args.dataset_seed, args.size, log)
    tokenizer = build_tokenizer(args.out / "tokenizer")
    vae, rec = train_vae(data, args, log)
    unet, text, scale, losses = train_ldm(data, vae, tokenizer, args, log)
    save(args.out, vae, unet, text, tokenizer, scale)
    record = {"command": "python -m bench.methods.ldm.phantom.train " + " ".join(sys.argv[1:] if argv is None else argv),
              "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
              "scaling_factor": scale, "final_losses": {"reconstruction": rec, **losses},
              "seconds": round(time.time() - start, 1), "torch": torch.__version__}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"wrote {args.out} in {record['seconds']} s (latent scaling factor {scale:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
