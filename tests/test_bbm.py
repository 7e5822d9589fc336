"""Bimodal Bias Merging: streaming equals the published computation on every stored map; SSIM,
8-bit quantisation and the Bézier merge against hand-computed values and scikit-image."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from tiny_unets import CONTEXT_DIM, LATENT, TOKENS, one_thread, tiny_diffusers_unet, tiny_monai_unet  # noqa: F401

from bench.methods.ldm import (
    Conditioning,
    CrossAttentionCapture,
    NoiseSchedule,
    StepSelection,
    UNetRunner,
    cross_attention_layers,
    noise_gt,
    sample,
    sample_generators,
    scheduler_timesteps,
)
from bench.methods.ldm.bbm import (
    BbmCollector,
    bezier_merge,
    merge,
    merge_sample,
    minmax_half,
    quantise_uint8,
    ssim,
)

STEPS = 4
ACTIVATION_LAST = 3
PHRASE_TOKENS = [[1, 2], [3, 4, 5]]


def _sd_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, steps_offset=1, set_alpha_to_one=False, clip_sample=False)


class Recorder:
    """Keeps every map: (step, layer) -> (samples, tokens, h, w) head-mean cond-half probabilities."""

    def __init__(self) -> None:
        self.maps: dict[tuple[int, str], np.ndarray] = {}

    def __call__(self, event) -> None:
        layout = event.step.layout
        rows = event.per_head().double().numpy()[layout.half_rows("cond")]
        self.maps[(event.step.index, event.layer.name)] = rows.mean(axis=1).transpose(0, 3, 1, 2)


def _stack(recorder: Recorder, layers: list[str], grid: int) -> np.ndarray:
    """(samples, steps, layers, tokens, grid, grid): every map, block-upsampled as the published code does."""
    steps = sorted({i for i, _ in recorder.maps})
    out = []
    for i in steps:
        per_layer = []
        for name in layers:
            m = recorder.maps[(i, name)]
            f = grid // m.shape[-1]
            per_layer.append(np.repeat(np.repeat(m, f, axis=-2), f, axis=-1))
        out.append(np.stack(per_layer, axis=1))
    return np.stack(out, axis=1)


def _published_merge(activation: np.ndarray, image_bias: np.ndarray, text_bias: np.ndarray,
                     product: np.ndarray) -> tuple[np.ndarray, float]:
    """The published arithmetic in torch float16 with scikit-image's SSIM (the reference)."""
    def scale(x, to_uint8=True):
        t = torch.as_tensor(x).to(torch.float16)
        t = (t - t.min()) / (t.max() - t.min())
        return (t * 255).to(torch.uint8) if to_uint8 else t

    s = max(structural_similarity(scale(image_bias).numpy(), scale(text_bias).numpy()), 0)
    m = scale(scale(product), False)
    a = scale(activation, False)
    merged = 2 * (1 - s) * s * ((m + a + (m * a)) / 2) + ((1 - s) ** 2) * a + (s**2) * m
    return merged.double().numpy(), s


def _run_two_passes(unet, channels: int):
    layers = cross_attention_layers(unet)
    names = [layer.name for layer in layers]
    grid = LATENT // min(layer.downsampling for layer in layers)
    scheduler = _sd_scheduler()
    schedule = NoiseSchedule.from_scheduler(scheduler)
    timesteps = scheduler_timesteps(scheduler, STEPS)
    g = torch.Generator().manual_seed(5)
    conditioning = Conditioning(torch.randn(2, TOKENS, CONTEXT_DIM, generator=g),
                                torch.randn(1, TOKENS, CONTEXT_DIM, generator=g))
    clean = torch.randn(2, channels, LATENT, LATENT, generator=g)
    collector = BbmCollector(2, PHRASE_TOKENS, grid=grid, activation_steps=StepSelection.last_n(ACTIVATION_LAST))
    runner = UNetRunner(unet)
    pass1, pass2 = Recorder(), Recorder()
    with torch.no_grad():
        with CrossAttentionCapture(unet, layers, [*collector.pass1_sinks, pass1]) as cap:
            noise_gt(runner, schedule, clean, conditioning, timesteps, StepSelection.every(),
                     sample_generators([3, 4]), capture=cap)
        with CrossAttentionCapture(unet, layers, [*collector.pass2_sinks, pass2]) as cap:
            sample(runner, schedule, (channels, LATENT, LATENT), conditioning, timesteps, StepSelection.every(),
                   sample_generators([3, 4]), capture=cap, guidance=16.0)
    return collector, _stack(pass1, names, grid), _stack(pass2, names, grid), len(names)


@pytest.mark.parametrize("model", ["diffusers", "monai"])
def test_streaming_bbm_equals_the_published_computation_on_all_stored_maps(model):
    unet, channels = (tiny_diffusers_unet(), 4) if model == "diffusers" else (tiny_monai_unet(), 3)
    collector, att1, att2, n_layers = _run_two_passes(unet, channels)
    assert att1.shape[1:3] == att2.shape[1:3] == (STEPS, n_layers)
    streamed = collector.maps()
    for i, tokens in enumerate(PHRASE_TOKENS):
        p_img = att1[i][:, :, [0]]
        p_txt = att2[i][:, :, tokens]
        expected = {
            "activation": att1[i][-ACTIVATION_LAST:, :, tokens].mean(axis=(0, 1, 2)),
            "image_bias": p_img.mean(axis=(0, 1, 2)),
            "text_bias": p_txt.mean(axis=(0, 1, 2)),
            "product": np.matmul(p_img, p_txt).mean(axis=(0, 1, 2)),
        }
        for name, value in expected.items():
            got = getattr(streamed, name)[i]
            assert got.shape == value.shape, name
            assert np.abs(got - value).max() <= 1e-6 * max(1.0, np.abs(value).max()), (model, name)
        merged, s = merge_sample(*(getattr(streamed, k)[i] for k in expected))
        ref_merged, ref_s = _published_merge(*expected.values())
        assert s == pytest.approx(ref_s, abs=1e-9)
        assert s >= 0
        assert np.abs(merged - ref_merged).max() < 2e-3
    merged_all, s_all = collector.result()
    assert merged_all.shape == (2, *streamed.activation.shape[1:])
    assert np.all(s_all >= 0)
    as_tensors = SimpleNamespace(**{k: torch.from_numpy(v) for k, v in vars(streamed).items()})
    hooked = merge(as_tensors)
    assert hooked.dtype == torch.float64
    assert np.array_equal(hooked.numpy(), merged_all)


def test_ssim_matches_scikit_image_defaults_on_uint8():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, (64, 64)), 0, 255).astype(np.uint8)
    expected = structural_similarity(a, b)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    assert 0.3 < expected < 0.99
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_one_window_by_hand():
    """A 7x7 image is one window: a = 0..48, b = 255 - a.

    mu_a = 24, mu_b = 231, sample variance of 0..48 = 200 * 49/48, cov = -that;
    C1 = (0.01 * 255)^2 = 6.5025, C2 = (0.03 * 255)^2 = 58.5225.
    """
    a = np.arange(49, dtype=np.uint8).reshape(7, 7)
    b = (255 - a).astype(np.uint8)
    var = 200 * 49 / 48
    c1, c2 = 6.5025, 58.5225
    expected = (2 * 24 * 231 + c1) * (-2 * var + c2) / ((24**2 + 231**2 + c1) * (2 * var + c2))
    assert expected == pytest.approx(-0.1541059, abs=1e-6)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="7x7 window"):
        ssim(a[:6, :6], b[:6, :6])


def test_quantise_uint8_truncates_float16_values():
    values = np.array([2.0, 3.0, 2.0 + 1 / 3, 2.999, 2.5])
    # float16: 2 + 1/3 -> 2.333984375, 2.999 -> 2.998046875; min-max: 0, 1, 0.333984375, 0.998046875, 0.5;
    # times 255 in float16: 0, 255, 85.1875, 254.5, 127.5; truncated (in float64, 1/3 * 255 would give 84)
    assert quantise_uint8(values).tolist() == [0, 255, 85, 254, 127]
    assert quantise_uint8(np.full((3, 3), 7.0)).tolist() == [[0] * 3] * 3


def test_bezier_merge_by_hand():
    a = np.array([[0.0, 1.0], [0.5, 0.25]])
    m = np.array([[1.0, 0.0], [0.5, 1.0]])
    # C = (A + M + A*M) / 2 = [[0.5, 0.5], [0.625, 0.75]]; s = 0.5: 0.25 A + 0.5 C + 0.25 M
    assert np.allclose(bezier_merge(a, m, 0.5), [[0.5, 0.5], [0.5625, 0.6875]], atol=1e-12)
    # s = 0.2: 0.64 A + 0.32 C + 0.04 M
    assert np.allclose(bezier_merge(a, m, 0.2), [[0.2, 0.8], [0.54, 0.44]], atol=1e-12)
    assert bezier_merge(a, m, 0.0).tolist() == a.tolist()
    assert bezier_merge(a, m, 1.0).tolist() == m.tolist()


def test_merge_weights_by_bias_similarity():
    rng = np.random.default_rng(1)
    activation = rng.random((16, 16))
    product = rng.random((16, 16))
    bias = rng.random((16, 16))
    same, s_same = merge_sample(activation, bias, bias, product)
    assert s_same == pytest.approx(1.0)
    assert np.allclose(same, minmax_half(quantise_uint8(product)), atol=1e-12)
    opposite, s_opposite = merge_sample(activation, bias, -bias, product)
    assert s_opposite == 0.0
    assert np.allclose(opposite, minmax_half(activation), atol=1e-12)
    nan_map, s_nan = merge_sample(np.full((16, 16), np.nan), bias, bias, product)
    assert np.isnan(nan_map).all() and np.isnan(s_nan)


def test_merge_matches_the_published_float16_arithmetic_for_partial_similarity():
    rng = np.random.default_rng(2)
    activation, product, bias = rng.random((3, 32, 32))
    text_bias = bias + 0.5 * rng.random((32, 32))
    merged, s = merge_sample(activation, bias, text_bias, product)
    ref_merged, ref_s = _published_merge(activation, bias, text_bias, product)
    assert 0.2 < s < 0.9
    assert s == pytest.approx(ref_s, abs=1e-12)
    assert np.abs(merged - ref_merged).max() < 2e-3
    assert np.abs(merged - minmax_half(activation)).max() > 0.1
    assert np.abs(merged - minmax_half(quantise_uint8(product))).max() > 0.1


# ---------------------------------------------------------------- cxrbert_ldm+bbm end to end

TINY_CXRBERT = ["resize=64", "crop=64", "num_inference_steps=4", "steps=-2:", "grid=8", "architecture=tiny_sd",
                "text_config=ldm_config/text/tiny_bert.json"]


def test_cxrbert_ldm_bbm_random_weights_end_to_end(bench_cli, tmp_path):
    from bench.core.heatmap import Heatmap

    out = tmp_path / "run"
    overrides = [x for item in TINY_CXRBERT for x in ("--set", item)]
    r = bench_cli("run", "--method", "cxrbert_ldm+bbm", "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0",
                  "--limit", "2", "--random-weights", "--out", out, *overrides)
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["method"] == "cxrbert_ldm+bbm" and run["n_samples"] == 2
    assert run["provenance"]["bbm"] is True
    # pass 1 reads every one of the 4 steps (image bias), pass 2 samples 4 steps with both CFG halves
    assert run["provenance"]["sample_evals_per_sample"] == 4 + 4 * 2
    for path in sorted((out / "heatmaps").glob("*.npz")):
        values = Heatmap.load(path).values
        assert values.shape == (8, 8)
        assert np.isfinite(values).all() and values.min() == 0 and values.max() == 1


def test_ldm_backend_merges_the_streamed_parts_with_this_merge(tmp_path, monkeypatch):
    from bench.datasets.phantom import PhantomDataset
    from bench.methods import RunContext, backend_class
    from bench.methods.ldm import bbm
    from bench.methods.specs import apply_overrides, load_method_spec

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path))
    spec = apply_overrides(load_method_spec("cxrbert_ldm+bbm"), TINY_CXRBERT)
    method = backend_class(spec["backend"])(spec, RunContext(random_weights=True))
    method.prepare()
    assert method.bbm_merge is bbm.merge
    seen = []

    def recording_merge(parts, settings):
        seen.append(parts)
        return bbm.merge(parts, settings)

    method.bbm_merge = recording_merge
    dataset = PhantomDataset(options={"n_test": "1", "n_train": "0"})
    (heatmap,) = method.heatmaps(dataset.samples(), dataset)
    (parts,) = seen
    assert tuple(parts.product.shape) == tuple(parts.activation.shape) == (1, 8, 8)
    merged = merge(parts)[0].numpy()
    expected = (merged - merged.min()) / (merged.max() - merged.min())
    assert np.abs(heatmap.values - expected).max() < 1e-6
