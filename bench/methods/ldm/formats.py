"""The published on-disk formats of diffusion checkpoints, loaded exactly (see `..state_dicts`).

- MONAI `.pth` state dicts, in MONAI core's key names or in the original MONAI Generative Models
  names of the chest X-ray LDM bundle. The old names are converted by MONAI's own
  `load_old_state_dict`, which starts from the model's random weights and never reports what it left
  unused; here every tensor of the model must come out of the file and every tensor of the file must
  be consumed.
- One original-layout checkpoint file (`.ckpt` of PyTorch Lightning or `.safetensors`) holding the U-Net
  as `model.diffusion_model.*`, converted by diffusers' own key map. Its other parts are not read:
  EMA copies (`model_ema.*`, the published evaluation uses the non-EMA weights), the autoencoder
  (`first_stage_model.*`) and a text encoder (`cond_stage_model.*`), replaced by the spec's parts.
"""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

import torch
from torch import nn

from ...core.errors import BenchError
from ..state_dicts import (
    KeyReport,
    check_report,
    load_error_detail,
    load_exact,
    mismatch_error,
    read_state_dict,
    reportable,
)

UNET_PREFIX = "model.diffusion_model."
#: parts of an original-layout checkpoint that are not the U-Net, and what becomes of them
OTHER_PARTS = {"model_ema.": "ema", "cond_stage_model.": "text_encoder", "first_stage_model.": "autoencoder"}


def _nan_fill(module: nn.Module) -> None:
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))


def _made_up_projections(own: dict, state: dict) -> list[str]:
    """Output projections MONAI's autoencoder conversion sets to the identity when the file has none."""
    out = []
    for key in own:
        if key.endswith(".attn.out_proj.weight") and key not in state:
            block = key[: -len(".attn.out_proj.weight")]
            if f"{block}.proj_attn.weight" not in state:
                out.extend(k for k in (key, f"{block}.attn.out_proj.bias") if k in own)
    return out


def load_monai(module: nn.Module, path: Path, what: str, hint: str = "") -> str:
    """Load a MONAI state dict into `module` exactly; returns the key names found ("monai" or
    "monai-generative"). One-line BenchError naming the first keys on any difference."""
    state = read_state_dict(path, what)
    own = module.state_dict()
    convert = getattr(module, "load_old_state_dict", None)
    if convert is None or all(k in own for k in state) or all(k in state for k in own):
        load_exact(module, state, path, what, hint)  # MONAI core names, maybe with gaps or left-overs
        return "monai"
    made_up = _made_up_projections(own, state)
    left = dict(state)
    _nan_fill(module)  # whatever the conversion does not fill stays NaN and is found below
    try:
        with redirect_stdout(io.StringIO()):  # MONAI prints its progress
            convert(left)
    except KeyError as exc:
        raise mismatch_error(path, what, f"it has no tensor {exc.args[0]!r} (in MONAI Generative names) that this "
                                         "architecture needs: another release or another model", hint) from None
    except RuntimeError as exc:
        raise mismatch_error(path, what, load_error_detail(exc), hint) from None
    missing = sorted({k for k, t in module.state_dict().items() if t.is_floating_point() and torch.isnan(t).any()}
                     | set(made_up))
    check_report(KeyReport(missing=reportable(missing), unexpected=reportable(left)), path, what, hint)
    return "monai-generative"


def _count(state: dict, prefix: str) -> int:
    return sum(1 for k in state if k.startswith(prefix))


def load_original_unet(path: Path, config: dict, what: str = "U-Net") -> tuple[nn.Module, dict]:
    """A diffusers U-Net from one original-layout checkpoint: `model.diffusion_model.*` converted by
    diffusers' key map, every converted tensor used and every model tensor filled. Returns the U-Net
    and a provenance record of what the file held besides."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    state = read_state_dict(path, what)
    unet_state = {k: v for k, v in state.items() if k.startswith(UNET_PREFIX)}
    if not unet_state:
        raise BenchError(f"the {what} checkpoint {path} holds no U-Net tensor ({UNET_PREFIX}*): not an "
                         "original-layout Stable Diffusion checkpoint")
    try:
        converted = convert_ldm_unet_checkpoint(unet_state, config)
    except (KeyError, IndexError, ValueError, RuntimeError) as exc:
        raise mismatch_error(path, what, f"diffusers cannot convert its {UNET_PREFIX}* tensors "
                                         f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''})") \
            from None
    used = {v.data_ptr() for v in converted.values()}
    left = [k for k, v in unet_state.items() if v.data_ptr() not in used]
    unet = UNet2DConditionModel.from_config(config)
    own = unet.state_dict()
    report = KeyReport(missing=reportable(k for k in own if k not in converted), unexpected=reportable(left))
    check_report(report, path, what)
    load_exact(unet, converted, path, what)
    record = {"unet_weights": f"{UNET_PREFIX}* (non-EMA)", "unet_tensors": len(unet_state)}
    ignored = {part: _count(state, prefix) for prefix, part in OTHER_PARTS.items() if _count(state, prefix)}
    if ignored:
        record["ignored_in_checkpoint"] = ignored
    return unet, record


def warn_replaced_text_encoder(path: Path, record: dict, method: str) -> None:
    """One line on stderr when the checkpoint carries a text encoder the harness does not use."""
    count = record.get("ignored_in_checkpoint", {}).get("text_encoder")
    if count:
        print(f"warning: {method}: {Path(path).name} carries its own text encoder (cond_stage_model.*, {count} "
              "tensors), not used: the spec's frozen text encoder (weights.text) conditions the U-Net",
              file=sys.stderr, flush=True)


__all__ = ["OTHER_PARTS", "UNET_PREFIX", "load_monai", "load_original_unet", "warn_replaced_text_encoder"]
