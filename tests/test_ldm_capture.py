"""Cross-attention capture engine on tiny random-weight U-Nets (diffusers and MONAI), CPU only.

What is checked: hooks leave the U-Net output unchanged and hand over the true per-head
probabilities; the streaming aggregates equal a brute-force average of every stored map; the
diffusion loops read the same maps however early they stop or whichever halves they skip, are
reproducible per sample seed, and cost the number of U-Net sample-evaluations worked out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from tiny_unets import CONTEXT_DIM, LATENT, TOKENS, one_thread, tiny_diffusers_unet, tiny_monai_unet  # noqa: F401
from torch import nn

from bench.methods.ldm import (
    AttentionAggregator,
    BatchLayout,
    BbmProduct,
    Conditioning,
    CrossAttentionCapture,
    MapStore,
    NoiseSchedule,
    StepInfo,
    StepSelection,
    UNetRunner,
    cross_attention_layers,
    describe_layers,
    invert,
    noise_gt,
    sample,
    sample_generators,
    scheduler_timesteps,
    select_layers,
    trailing_timesteps,
)


@pytest.fixture(scope="module")
def diffusers_unet() -> nn.Module:
    return tiny_diffusers_unet()


@pytest.fixture(scope="module")
def monai_unet() -> nn.Module:
    return tiny_monai_unet(flash=True)


@pytest.fixture(scope="module")
def monai_unet_explicit() -> nn.Module:
    return tiny_monai_unet(flash=False)


def _sd_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, steps_offset=1, set_alpha_to_one=False, clip_sample=False,
                         prediction_type=prediction_type)


def _monai_scheduler():
    from monai.networks.schedulers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                         beta_end=0.0205, prediction_type="v_prediction", clip_sample=False)


def _conditioning(samples: int, seed: int = 5) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return Conditioning(cond=torch.randn(samples, TOKENS, CONTEXT_DIM, generator=g),
                        uncond=torch.randn(1, TOKENS, CONTEXT_DIM, generator=g))


@dataclass
class Record:
    index: int
    layer: str
    layout: BatchLayout
    probs: np.ndarray  # (rows, heads, h, w, tokens), float64


class Recorder:
    """Brute-force sink: keeps a copy of every probability map."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def __call__(self, event) -> None:
        self.records.append(Record(event.step.index, event.layer.name, event.step.layout,
                                   event.per_head().double().cpu().numpy().copy()))


def _block_up(m: np.ndarray, size: int) -> np.ndarray:
    return np.repeat(np.repeat(m, size // m.shape[0], axis=0), size // m.shape[1], axis=1)


def _sample_map(record: Record, half: str, sample_i: int, tokens) -> np.ndarray:
    """Head-mean, token-mean map of one sample in one half, the slow way; `tokens` a list of positions
    or a {position: weight} mapping (a weighted mean)."""
    row = record.layout.halves.index(half) * record.layout.samples + sample_i
    per_token = record.probs[row].mean(axis=0)  # (h, w, tokens)
    if isinstance(tokens, dict):
        return sum(w * per_token[..., t] for t, w in tokens.items()) / sum(tokens.values())
    chosen = list(range(per_token.shape[-1])) if tokens is None else list(tokens)
    if not chosen:
        return np.full(per_token.shape[:2], np.nan)
    return per_token[..., chosen].mean(axis=-1)


def brute_force(records: list[Record], samples: int, tokens=None, half: str = "cond", minmax: bool = False,
                grid: int | None = None, steps=None, layers=None, step_weights=None, layer_weights=None):
    total, weight_sum = 0.0, 0.0
    for rec in records:
        if steps is not None and rec.index not in steps:
            continue
        if layers is not None and rec.layer not in layers:
            continue
        weight = (step_weights or {}).get(rec.index, 1.0) * (layer_weights or {}).get(rec.layer, 1.0)
        maps = []
        for i in range(samples):
            toks = None if tokens is None else tokens[i]
            if half == "cond_minus_uncond":
                m = _sample_map(rec, "cond", i, toks) - _sample_map(rec, "uncond", i, toks)
            else:
                m = _sample_map(rec, half, i, toks)
            if minmax:
                m = (m - m.min()) / (m.max() - m.min())
            maps.append(_block_up(m, grid) if grid else m)
        total = total + weight * np.stack(maps)
        weight_sum += weight
    return total / weight_sum


# ---------------------------------------------------------------- layers


def test_layers_listed_in_execution_order_with_resolution(diffusers_unet, monai_unet):
    assert describe_layers(diffusers_unet, LATENT) == [
        (0, "down_blocks.0.attentions.0.transformer_blocks.0.attn2", (16, 16)),
        (1, "down_blocks.1.attentions.0.transformer_blocks.0.attn2", (8, 8)),
        (2, "mid_block.attentions.0.transformer_blocks.0.attn2", (8, 8)),
        (3, "up_blocks.0.attentions.0.transformer_blocks.0.attn2", (8, 8)),
        (4, "up_blocks.0.attentions.1.transformer_blocks.0.attn2", (8, 8)),
        (5, "up_blocks.1.attentions.0.transformer_blocks.0.attn2", (16, 16)),
        (6, "up_blocks.1.attentions.1.transformer_blocks.0.attn2", (16, 16)),
    ]
    monai_layers = cross_attention_layers(monai_unet)
    assert [(layer.name.split(".transformer")[0], layer.heads, layer.resolution(LATENT)) for layer in monai_layers] == [
        ("down_blocks.1.attentions.0", 4, (8, 8)),
        ("down_blocks.2.attentions.0", 1, (4, 4)),
        ("middle_block.attention", 1, (4, 4)),
        ("up_blocks.0.attentions.0", 1, (4, 4)),
        ("up_blocks.0.attentions.1", 1, (4, 4)),
        ("up_blocks.1.attentions.0", 4, (8, 8)),
        ("up_blocks.1.attentions.1", 4, (8, 8)),
    ]


def test_layer_selection_by_index_name_and_resolution(monai_unet):
    layers = cross_attention_layers(monai_unet)
    by_index = select_layers(layers, [4, 1, 2])
    assert [layer.index for layer in by_index] == [1, 2, 4]
    by_name = select_layers(layers, ["middle_block", "up_blocks.0.attentions.1"])
    assert [layer.index for layer in by_name] == [2, 4]
    assert [layer.index for layer in select_layers(layers, downsampling=4)] == [1, 2, 3, 4]
    assert [layer.index for layer in select_layers(layers, [0, 1, 5], downsampling=2)] == [0, 5]
    with pytest.raises(ValueError, match="no cross-attention layer"):
        select_layers(layers, ["up_blocks.0.attentions.9"])
    with pytest.raises(ValueError, match="outside"):
        select_layers(layers, [7])


# ---------------------------------------------------------------- hooks


@pytest.mark.parametrize("model", ["diffusers", "monai_sdpa", "monai_explicit"])
def test_hooking_leaves_unet_output_unchanged(model, diffusers_unet, monai_unet, monai_unet_explicit):
    unet = {"diffusers": diffusers_unet, "monai_sdpa": monai_unet, "monai_explicit": monai_unet_explicit}[model]
    channels = 4 if model == "diffusers" else 3
    runner = UNetRunner(unet)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, channels, LATENT, LATENT, generator=g)
    context = torch.randn(3, TOKENS, CONTEXT_DIM, generator=g)
    layers = cross_attention_layers(unet)
    chosen = select_layers(layers, [1, 2, 5])
    with torch.no_grad():
        reference = runner(x, 321, context)
        events = []
        with CrossAttentionCapture(unet, chosen, [events.append]) as capture:
            idle = runner(x, 321, context)
            assert events == []
            with capture.reading(StepInfo(0, 321, 1, BatchLayout(3))):
                hooked = runner(x, 321, context)
    assert torch.allclose(hooked, reference, atol=1e-5, rtol=0)
    assert torch.allclose(idle, reference, atol=1e-5, rtol=0)
    assert [e.layer.index for e in events] == [1, 2, 5]
    for e in events:
        assert e.probs.dtype == torch.float32
        assert (e.height, e.width) == e.layer.resolution(LATENT)
        assert e.probs.shape == (3 * e.heads, e.height * e.width, TOKENS)
        assert torch.allclose(e.probs.sum(-1), torch.ones(()), atol=1e-6)


def test_only_chosen_layers_are_hooked_and_all_are_restored(diffusers_unet, monai_unet):
    from diffusers.models.attention_processor import AttnProcessor2_0

    d_layers = cross_attention_layers(diffusers_unet)
    before = {name: m.processor for name, m in diffusers_unet.named_modules() if hasattr(m, "processor")}
    with CrossAttentionCapture(diffusers_unet, select_layers(d_layers, [3]), []):
        now = {name: m.processor for name, m in diffusers_unet.named_modules() if hasattr(m, "processor")}
        changed = [name for name in before if now[name] is not before[name]]
        assert changed == [d_layers[3].name]
        assert all(isinstance(now[name], AttnProcessor2_0) for name in now if name != d_layers[3].name)
    after = {name: m.processor for name, m in diffusers_unet.named_modules() if hasattr(m, "processor")}
    assert all(after[name] is before[name] for name in before)

    m_layers = cross_attention_layers(monai_unet)
    with CrossAttentionCapture(monai_unet, select_layers(m_layers, [0, 4]), []):
        patched = [name for name, m in monai_unet.named_modules() if "forward" in m.__dict__]
        assert patched == [m_layers[0].name, m_layers[4].name]
    assert [name for name, m in monai_unet.named_modules() if "forward" in m.__dict__] == []


def _expected_probs(q_in: torch.Tensor, kv_in: torch.Tensor, to_q, to_k, heads: int) -> torch.Tensor:
    """(batch, heads, positions, tokens) softmax(q k^T / sqrt(d)) per head, computed head by head."""
    q, k = to_q(q_in), to_k(kv_in)
    d = q.shape[-1] // heads
    out = torch.empty(q.shape[0], heads, q.shape[1], k.shape[1])
    for b in range(q.shape[0]):
        for h in range(heads):
            qh, kh = q[b, :, h * d:(h + 1) * d], k[b, :, h * d:(h + 1) * d]
            out[b, h] = torch.softmax(qh @ kh.T / d**0.5, dim=-1)
    return out


@pytest.mark.parametrize("model", ["diffusers", "monai"])
def test_captured_probabilities_are_the_per_head_softmax(model, diffusers_unet, monai_unet):
    unet = diffusers_unet if model == "diffusers" else monai_unet
    channels = 4 if model == "diffusers" else 3
    layer = [layer for layer in cross_attention_layers(unet) if layer.heads > 1][-1]
    seen = {}

    def keep_inputs(module, args, kwargs):
        seen["x"] = args[0]
        seen["context"] = kwargs.get("encoder_hidden_states", kwargs.get("context"))

    handle = layer.module.register_forward_pre_hook(keep_inputs, with_kwargs=True)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, channels, LATENT, LATENT, generator=g)
    context = torch.randn(2, TOKENS, CONTEXT_DIM, generator=g)
    events = []
    try:
        with torch.no_grad(), CrossAttentionCapture(unet, [layer], [events.append]) as capture:
            with capture.reading(StepInfo(0, 500, 1, BatchLayout(2))):
                UNetRunner(unet)(x, 500, context)
            expected = _expected_probs(seen["x"], seen["context"], layer.module.to_q, layer.module.to_k, layer.heads)
    finally:
        handle.remove()
    (event,) = events
    got = event.per_head().flatten(2, 3)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6)


def test_diffusers_attention_mask_is_honoured(diffusers_unet):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, LATENT, LATENT, generator=g)
    context = torch.randn(2, TOKENS, CONTEXT_DIM, generator=g)
    mask = torch.ones(2, TOKENS)
    mask[0, 4:] = 0
    layers = cross_attention_layers(diffusers_unet)
    events = []
    with torch.no_grad():
        reference = diffusers_unet(x, 100, encoder_hidden_states=context, encoder_attention_mask=mask).sample
        with CrossAttentionCapture(diffusers_unet, layers, [events.append]) as capture:
            with capture.reading(StepInfo(0, 100, 1, BatchLayout(2))):
                hooked = diffusers_unet(x, 100, encoder_hidden_states=context, encoder_attention_mask=mask).sample
    assert torch.allclose(hooked, reference, atol=1e-5, rtol=0)
    masked = events[0].per_head()[0, ..., 4:]
    assert masked.abs().max() < 1e-6
    assert events[0].per_head()[1, ..., 4:].min() > 0


# ---------------------------------------------------------------- streaming aggregation

TOKEN_SETS = {
    "all": None,
    "prompt": [[1, 2, 3, 4, 5]] * 3,
    "subset": [[1, 2, 3]] * 3,
    "per_sample": [[1], [2, 5], [0, 3, 4, 6]],
    # equal weight per word, whatever its number of sub-tokens (Dombrowski's per-word mean)
    "word_weighted": [{1: 1.0, 2: 0.5, 3: 0.5}, {2: 1.0}, {0: 1 / 3, 4: 1 / 3, 5: 1 / 3, 6: 1.0}],
}


@pytest.fixture(scope="module", params=["diffusers", "monai"])
def diffusers_noise_run(request, diffusers_unet, monai_unet):
    """One noise_gt run (3 samples, both halves read, 3 steps, all 7 layers) feeding many aggregators,
    on the tiny diffusers U-Net and on the tiny MONAI one."""
    unet, channels = (diffusers_unet, 4) if request.param == "diffusers" else (monai_unet, 3)
    schedule = NoiseSchedule.from_scheduler(_sd_scheduler())
    timesteps = scheduler_timesteps(_sd_scheduler(), 3)
    layers = cross_attention_layers(unet)
    native_layers = [layer.name for layer in layers if layer.resolution(LATENT) == (8, 8)]
    configs = {}
    for tokens_name, tokens in TOKEN_SETS.items():
        for minmax in (False, True) if tokens is not None else (False,):
            for half in ("cond", "uncond", "cond_minus_uncond"):
                configs[(tokens_name, minmax, half, 16)] = dict(tokens=tokens, minmax=minmax, half=half, grid=16)
        configs[(tokens_name, False, "cond", None)] = dict(tokens=tokens, half="cond", grid=None, layers=native_layers)
    configs["weighted"] = dict(tokens=TOKEN_SETS["per_sample"], minmax=True, half="cond", grid=32,
                               steps={1, 2}, step_weights={1: 0.25, 2: 2.0}, layer_weights={layers[0].name: 3.0})
    aggregators = {
        key: AttentionAggregator(
            samples=3, tokens=cfg["tokens"], half=cfg["half"], per_map_minmax=cfg.get("minmax", False),
            grid=cfg["grid"], layers=cfg.get("layers"),
            steps=StepSelection.at_indices(cfg["steps"]) if "steps" in cfg else None,
            step_weights=cfg.get("step_weights"), layer_weights=cfg.get("layer_weights"))
        for key, cfg in configs.items()
    }
    recorder = Recorder()
    clean = torch.randn(3, channels, LATENT, LATENT, generator=torch.Generator().manual_seed(6))
    with torch.no_grad(), CrossAttentionCapture(unet, layers, [recorder, *aggregators.values()]) as cap:
        noise_gt(UNetRunner(unet), schedule, clean, _conditioning(3), timesteps, StepSelection.every(),
                 sample_generators([1, 2, 3]), capture=cap, read_halves=("uncond", "cond"))
    return configs, aggregators, recorder


def test_streaming_aggregate_equals_brute_force(diffusers_noise_run):
    configs, aggregators, recorder = diffusers_noise_run
    assert len(recorder.records) == 3 * 7
    for key, cfg in configs.items():
        expected = brute_force(recorder.records, 3, tokens=cfg["tokens"], half=cfg["half"],
                               minmax=cfg.get("minmax", False), grid=cfg["grid"], steps=cfg.get("steps"),
                               layers=cfg.get("layers"), step_weights=cfg.get("step_weights"),
                               layer_weights=cfg.get("layer_weights"))
        got = aggregators[key].result().numpy()
        assert got.shape == expected.shape, key
        assert np.abs(got - expected).max() < 1e-6, key
    assert aggregators[("all", False, "cond", None)].result().shape == (3, 8, 8)
    native = configs[("all", False, "cond", None)]["layers"]
    assert len(native) in (3, 4)  # the 8x8 layers: 3 of the MONAI U-Net, 4 of the diffusers one
    assert len(aggregators[("all", False, "cond", None)].read) == 3 * len(native)
    assert len(aggregators["weighted"].read) == 2 * 7


def test_aggregate_variants_differ(diffusers_noise_run):
    """The token sets, halves and min-max really change the maps (so the equalities above bind).

    Averaged over every context position a map is the constant 1 / tokens (softmax rows sum to 1),
    which is why methods average prompt tokens and why min-max is not applied to that case.
    """
    _, aggregators, _ = diffusers_noise_run
    assert torch.allclose(aggregators[("all", False, "cond", 16)].result(), torch.tensor(1 / TOKENS).double(),
                          atol=1e-6)
    keys = [("prompt", False, "cond", 16), ("subset", False, "cond", 16), ("per_sample", False, "cond", 16),
            ("prompt", True, "cond", 16), ("prompt", False, "uncond", 16), ("word_weighted", False, "cond", 16)]
    maps = [aggregators[k].result() for k in keys]
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            assert (maps[i] - maps[j]).abs().max() > 1e-4, (keys[i], keys[j])
    minmaxed = aggregators[("prompt", True, "cond", 16)].result()
    assert minmaxed.min() >= 0 and minmaxed.max() <= 1


def test_native_accumulation_refuses_mixed_resolutions(diffusers_unet):
    aggregator = AttentionAggregator(samples=1)
    layers = cross_attention_layers(diffusers_unet)
    x = torch.randn(1, 4, LATENT, LATENT)
    with torch.no_grad(), CrossAttentionCapture(diffusers_unet, select_layers(layers, [0, 1]), [aggregator]) as c:
        with pytest.raises(ValueError, match="common grid"), c.reading(StepInfo(0, 10, 1, BatchLayout(1))):
            UNetRunner(diffusers_unet)(x, 10, torch.randn(1, TOKENS, CONTEXT_DIM))


def test_empty_token_set_gives_nan_map_for_that_sample_only(monai_unet):
    aggregator = AttentionAggregator(samples=2, tokens=[[], [1, 2]], grid=8)
    recorder = Recorder()
    layers = cross_attention_layers(monai_unet)
    schedule = NoiseSchedule.from_scheduler(_monai_scheduler())
    with torch.no_grad(), CrossAttentionCapture(monai_unet, layers, [aggregator, recorder]) as cap:
        invert(UNetRunner(monai_unet), schedule, torch.randn(2, 3, LATENT, LATENT), _conditioning(2),
               [0, 10, 20], StepSelection.every(), capture=cap)
    result = aggregator.result().numpy()
    assert np.isnan(result[0]).all()
    expected = brute_force(recorder.records, 2, tokens=[[1], [1, 2]], grid=8)[1]
    assert np.abs(result[1] - expected).max() < 1e-6


def test_bbm_product_streams_like_the_full_upsampled_product(diffusers_unet):
    """Pass 1 start-token maps x pass 2 token maps, against 16x16 upsampled per-token matrix products."""
    tokens = [[1, 2], [3], [2, 4, 5]]
    layers = cross_attention_layers(diffusers_unet)
    timesteps = scheduler_timesteps(_sd_scheduler(), 3)
    schedule = NoiseSchedule.from_scheduler(_sd_scheduler())
    runner = UNetRunner(diffusers_unet)
    conditioning = _conditioning(3)
    image_maps, pass1 = MapStore(samples=3), Recorder()
    clean = torch.randn(3, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(8))
    with torch.no_grad(), CrossAttentionCapture(diffusers_unet, layers, [image_maps, pass1]) as cap:
        noise_gt(runner, schedule, clean, conditioning, timesteps, StepSelection.every(),
                 sample_generators([4, 5, 6]), capture=cap)
    product = BbmProduct(image_maps, samples=3, tokens=tokens, grid=16)
    text_bias = AttentionAggregator(samples=3, tokens=tokens, grid=16)
    pass2 = Recorder()
    with torch.no_grad(), CrossAttentionCapture(diffusers_unet, layers, [product, text_bias, pass2]) as cap:
        sample(runner, schedule, (4, LATENT, LATENT), conditioning, timesteps, StepSelection.every(),
               sample_generators([4, 5, 6]), capture=cap, guidance=16.0)

    images = {(r.index, r.layer): r for r in pass1.records}
    expected = np.zeros((3, 16, 16))
    for rec in pass2.records:
        img_rec = images[(rec.index, rec.layer)]
        for i in range(3):
            p_img = _block_up(_sample_map(img_rec, "cond", i, [0]), 16)
            products = [p_img @ _block_up(_sample_map(rec, "cond", i, [n]), 16) for n in tokens[i]]
            expected[i] += np.mean(products, axis=0)
    expected /= len(pass2.records)
    assert len(pass2.records) == 3 * 7
    got = product.result().numpy()
    assert np.abs(got - expected).max() < 1e-6 * max(1.0, np.abs(expected).max())
    assert np.abs(got - text_bias.result().numpy()).max() > 1e-3


# ---------------------------------------------------------------- diffusion loops


def test_invert_stopping_early_and_skipping_halves_reads_the_same_maps(monai_unet):
    """MONAI v-prediction inversion; read window = loop indices 5..7 of a 12-step trailing walk."""
    schedule = NoiseSchedule.from_scheduler(_monai_scheduler())
    timesteps = trailing_timesteps(1000, 100)[::-1][:12]
    layers = select_layers(cross_attention_layers(monai_unet), [1, 2, 4])
    latents = torch.randn(2, 3, LATENT, LATENT, generator=torch.Generator().manual_seed(9))
    window = StepSelection.at_indices(range(5, 8))
    results = {}
    for as_coded in (False, True):
        agg = AttentionAggregator(samples=2, tokens=[[1, 2, 3], [4]], per_map_minmax=True)
        runner = UNetRunner(monai_unet)
        with torch.no_grad(), CrossAttentionCapture(monai_unet, layers, [agg]) as cap:
            run = invert(runner, schedule, latents, _conditioning(2), timesteps, window, capture=cap,
                         as_coded=as_coded)
        results[as_coded] = (agg.result(), run, agg.read)
    (early, run_early, read_early), (full, run_full, read_full) = results[False], results[True]
    assert torch.allclose(early, full, atol=1e-6)
    assert read_early == read_full == [(i, layer.name) for i in (5, 6, 7) for layer in layers]
    assert run_early.steps_run == 8 and run_full.steps_run == 12
    assert run_early.sample_evals_per_sample == 5 * 1 + 3 * 2
    assert run_full.sample_evals_per_sample == 12 * 2


def test_noise_gt_without_the_unread_uncond_half_reads_the_same_maps(diffusers_unet):
    timesteps = scheduler_timesteps(_sd_scheduler(), 5)
    schedule = NoiseSchedule.from_scheduler(_sd_scheduler())
    layers = cross_attention_layers(diffusers_unet)
    clean = torch.randn(2, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(10))
    results = {}
    for as_coded in (False, True):
        agg = AttentionAggregator(samples=2, tokens=[[1], [2, 3]], grid=16)
        with torch.no_grad(), CrossAttentionCapture(diffusers_unet, layers, [agg]) as cap:
            run = noise_gt(UNetRunner(diffusers_unet), schedule, clean, _conditioning(2), timesteps,
                           StepSelection.last_n(3), sample_generators([7, 8]), capture=cap, guidance=16.0,
                           as_coded=as_coded)
        results[as_coded] = (agg.result(), run, agg.read)
    assert torch.allclose(results[False][0], results[True][0], atol=1e-6)
    assert results[False][2] == results[True][2]
    assert {i for i, _ in results[False][2]} == {2, 3, 4}
    assert results[False][1].sample_evals_per_sample == 3
    assert results[True][1].sample_evals_per_sample == 5 * 2


def _noise_gt_maps(unet, seeds):
    """Fresh posterior sample per step (Nützel), per-sample generators."""
    layers = cross_attention_layers(unet)
    agg = AttentionAggregator(samples=len(seeds), tokens=[[1, 2]] * len(seeds), grid=16)
    mean = torch.zeros(len(seeds), 4, LATENT, LATENT)

    def posterior(generators):
        noise = torch.stack([torch.randn(4, LATENT, LATENT, generator=g) for g in generators])
        return (mean + 0.5 * noise) * 0.18215

    with torch.no_grad(), CrossAttentionCapture(unet, layers, [agg]) as cap:
        noise_gt(UNetRunner(unet), NoiseSchedule.from_scheduler(_sd_scheduler()), posterior,
                 _conditioning(len(seeds)), scheduler_timesteps(_sd_scheduler(), 4), StepSelection.last_n(2),
                 sample_generators(seeds), capture=cap)
    return agg.result()


def _sample_maps(unet, seeds):
    layers = select_layers(cross_attention_layers(unet), downsampling=2)
    agg = AttentionAggregator(samples=len(seeds), tokens=[[0, 3]] * len(seeds))
    with torch.no_grad(), CrossAttentionCapture(unet, layers, [agg]) as cap:
        sample(UNetRunner(unet), NoiseSchedule.from_scheduler(_sd_scheduler()), (4, LATENT, LATENT),
               _conditioning(len(seeds)), scheduler_timesteps(_sd_scheduler(), 4), StepSelection.at_indices([1, 2]),
               sample_generators(seeds), capture=cap, guidance=7.5)
    return agg.result()


@pytest.mark.parametrize("run", [_noise_gt_maps, _sample_maps], ids=["noise_gt", "sample"])
def test_seeds_reproduce_maps_per_sample(run, diffusers_unet):
    first = run(diffusers_unet, [11, 12])
    again = run(diffusers_unet, [11, 12])
    other = run(diffusers_unet, [99, 12])
    assert torch.equal(first, again)
    assert (first[0] - other[0]).abs().max() > 1e-4
    assert torch.allclose(first[1], other[1], atol=1e-6)


def _stub(latents, timesteps, context):
    return torch.zeros_like(latents)


def test_sample_eval_counts_at_published_lengths():
    """668 / 100 / 200 / 50 sample-evals as the published codes run them (`as_coded`, see
    adapters/ldm_frozen.toml and bench/methods/ldm/process.py), and the exact minimal costs."""
    latents = torch.zeros(1, 3, 4, 4)
    conditioning = Conditioning(torch.zeros(1, TOKENS, 8), torch.zeros(1, TOKENS, 8))
    monai = NoiseSchedule.from_scheduler(_monai_scheduler())
    inversion = trailing_timesteps(1000, 300)[::-1]
    assert len(inversion) == 334 and inversion[0] == 0 and inversion[-1] == 999
    assert (inversion[120], inversion[179]) == (360, 537)
    window = StepSelection.at_indices(range(120, 180))

    def cost(run, **kw):
        return run(UNetRunner(_stub), **kw).sample_evals_per_sample

    vil = dict(schedule=monai, latents=latents, conditioning=conditioning, timesteps=inversion, steps=window)
    assert cost(invert, **vil, as_coded=True) == 668
    assert cost(invert, **vil) == 120 * 1 + 60 * 2

    sd = NoiseSchedule.from_scheduler(_sd_scheduler())
    ts50 = scheduler_timesteps(_sd_scheduler(), 50)
    assert ts50[0] == 981 and ts50[-1] == 1 and len(ts50) == 50
    gens = sample_generators([0])
    gt = dict(schedule=sd, clean=torch.zeros(1, 4, 4, 4), conditioning=conditioning, timesteps=ts50, generators=gens)
    nutzel_pass1 = cost(noise_gt, **gt, steps=StepSelection.last_n(40), guidance=16.0, as_coded=True)
    assert nutzel_pass1 == 100
    assert cost(noise_gt, **gt, steps=StepSelection.last_n(40)) == 40
    bbm_pass1 = cost(noise_gt, **gt, steps=StepSelection.every())
    pass2 = dict(schedule=sd, shape=(4, 4, 4), conditioning=conditioning, timesteps=ts50, generators=gens,
                 steps=StepSelection.every(), guidance=16.0)
    assert nutzel_pass1 + cost(sample, **pass2, as_coded=True) == 200
    assert bbm_pass1 + cost(sample, **pass2) == 150
    assert cost(noise_gt, **gt, steps=StepSelection.last_n(40), guidance=1.0, as_coded=True) == 50


def test_step_selection_by_timestep_and_last_n():
    ts = [981, 761, 541, 321, 101]
    assert StepSelection.at_timesteps([541, 101]).resolve(ts) == [2, 4]
    assert StepSelection.last_n(2).resolve(ts) == [3, 4]
    assert StepSelection.at_indices([0, 3]).resolve(ts) == [0, 3]
    assert StepSelection.every().resolve(ts) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="not in the schedule"):
        StepSelection.at_timesteps([500]).resolve(ts)
    with pytest.raises(ValueError, match="outside"):
        StepSelection.at_indices([5]).resolve(ts)


# ---------------------------------------------------------------- schedule arithmetic


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddim_move_matches_diffusers_ddim_step(prediction):
    scheduler = _sd_scheduler(prediction)
    scheduler.set_timesteps(50)
    schedule = NoiseSchedule.from_scheduler(scheduler)
    g = torch.Generator().manual_seed(12)
    z, out = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    for t, t_to in ((981, 961), (501, 481), (1, None)):
        expected = scheduler.step(out, t, z).prev_sample
        assert torch.allclose(schedule.move(out, z, t, t_to).float(), expected, atol=1e-5)


def test_inversion_move_matches_monai_reversed_step():
    scheduler = _monai_scheduler()
    scheduler.set_timesteps(300)
    schedule = NoiseSchedule.from_scheduler(scheduler)
    assert schedule.prediction_type == "v_prediction"
    g = torch.Generator().manual_seed(13)
    z, out = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    for t in (0, 360, 537):
        expected = scheduler.reversed_step(out, t, z)[0]
        assert torch.allclose(schedule.move(out, z, t, t + 3).float(), expected, atol=1e-5)
