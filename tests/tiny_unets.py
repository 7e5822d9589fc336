"""Tiny random-weight U-Nets (diffusers and MONAI) and the tiny spec overrides of every diffusion method,
shared by the diffusion-engine tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

LATENT = 16
TOKENS = 7
CONTEXT_DIM = 32

TINY_SD = ["resize=64", "crop=64", "num_inference_steps=4", "steps=-2:", "grid=8", "architecture=tiny_sd"]
TINY_MONAI = ["resize=64", "crop=64", "num_inference_steps=10", "steps=3:5", "grid=0", "output_size=32",
              "architecture=tiny_monai", "text_config=ldm_config/text/tiny_clip.json",
              'layers=["down_blocks.2.attentions.0", "middle_block.attention"]']
#: tiny replicas are not the published models: their content checks are switched off by name
NO_CONTENT = [f"weights.{part}.content=''" for part in ("unet", "vae", "text", "tokenizer")]
#: `--set` overrides that build each diffusion method on the tiny architectures shipped beside the real ones
TINY = {
    "cxrbert_ldm": [*TINY_SD, "text_config=ldm_config/text/tiny_bert.json", *NO_CONTENT],
    "clip_ldm": [*TINY_SD, "text_config=ldm_config/text/tiny_clip.json", *NO_CONTENT],
    "ldm_frozen": [*TINY_MONAI, *NO_CONTENT],
    "anatomy_ldm": [*TINY_MONAI, *NO_CONTENT],
}


def tiny_diffusers_unet() -> nn.Module:
    """A two-level UNet2DConditionModel with cross-attention at 16x16 and 8x8 (2 and 4 heads)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=LATENT, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CONTEXT_DIM, attention_head_dim=(2, 4), norm_num_groups=8,
    ).eval()


def tiny_monai_unet(flash: bool = False) -> nn.Module:
    """A three-level MONAI DiffusionModelUNet with cross-attention on its two lower levels."""
    from monai.networks.nets import DiffusionModelUNet

    torch.manual_seed(1)
    return DiffusionModelUNet(
        spatial_dims=2, in_channels=3, out_channels=3, channels=(16, 32, 32), attention_levels=(False, True, True),
        num_res_blocks=1, num_head_channels=(0, 8, 32), with_conditioning=True, cross_attention_dim=CONTEXT_DIM,
        norm_num_groups=8, use_flash_attention=flash,
    ).eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions run fastest, and steadiest on a shared machine, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_method(name: str, overrides=(), **context):
    """Method `name` (a `+bbm` variant too) on its tiny architecture; random weights unless told otherwise."""
    from bench.methods import RunContext, backend_class
    from bench.methods.specs import apply_overrides, load_method_spec

    spec = apply_overrides(load_method_spec(name), [*TINY[name.removesuffix("+bbm")], *overrides])
    context.setdefault("random_weights", True)
    return backend_class(spec["backend"])(spec, RunContext(**context))
