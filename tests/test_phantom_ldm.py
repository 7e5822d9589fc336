"""`phantom_ldm`: the shipped demonstration diffusion model loads offline, its training script runs,
and its cross-attention maps are grounded on the phantom test split: they beat the per-category
box prior on pointing game and CNR, and swapping left and right in a phrase moves the map across.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.datasets.phantom import PhantomDataset, flip_side
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score
from bench.methods import RunContext, backend_class
from bench.methods.ldm.phantom.train import main as train_main
from bench.methods.ldm.settings import METHODS_DIR, parse_settings
from bench.methods.specs import apply_overrides, load_method_spec

MODEL_DIR = METHODS_DIR / "phantom_ldm"
N_TEST = 24  # 3 per category


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, before))
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> PhantomDataset:
    return PhantomDataset(tmp_path_factory.mktemp("phantom"), {"n_test": str(N_TEST), "n_train": "400"})


def _method(name: str, dataset: PhantomDataset, overrides=()):
    spec = apply_overrides(load_method_spec(name), list(overrides))
    samples = dataset.samples()
    tests = [s for s in samples if s.split == "test"]
    method = backend_class(spec["backend"])(spec, RunContext(all_samples=samples, eval_samples=tests))
    method.prepare(dataset)
    return method, tests


@pytest.fixture(scope="module")
def ldm_maps(phantom):
    method, tests = _method("phantom_ldm", phantom)
    return method, tests, method.heatmaps(tests, phantom)


def _mean_scores(heatmaps, samples, backend: str) -> dict[str, float]:
    protocol = load_protocol("default")
    rows = [score(h, s, protocol, backend) for h, s in zip(heatmaps, samples)]
    return {k: float(np.mean([r[k] for r in rows])) for k in ("pointing_game", "cnr", "miou")}


def test_shipped_checkpoint_is_small_and_loads_offline(ldm_maps) -> None:
    method, _, _ = ldm_maps
    files = [p for p in MODEL_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 5_000_000
    assert {p.parent.name for p in files if p.suffix == ".safetensors"} == {"unet", "vae", "text_encoder"}
    models = method.models
    assert models.sources == {"package_dir": str(MODEL_DIR)}
    assert models.unet.config.cross_attention_dim == models.text.hidden_size == 64
    tokenizer = models.text.tokenizer
    # whole words: one token each, so "all" tokens are the phrase's words
    assert tokenizer.tokenize("small right pleural effusion") == ["small", "right", "pleural", "effusion"]
    training = json.loads((MODEL_DIR / "training.json").read_text())
    assert method.settings.scale_factor == pytest.approx(training["scaling_factor"], rel=1e-4)
    names = [layer.name for layer in method.layers]
    assert [n.split(".transformer_blocks")[0] for n in names] == list(method.settings.layers)


def test_maps_are_on_the_latent_grid_of_the_centre_crop(ldm_maps) -> None:
    _, tests, maps = ldm_maps
    for h, s in zip(maps, tests):
        assert h.values.shape == (16, 16)
        assert np.isfinite(h.values).all() and h.values.min() == 0.0 and h.values.max() == 1.0
        side = min(s.width, s.height)
        assert (h.geometry.height, h.geometry.width) == (side, side)


def test_maps_beat_the_box_prior_on_pointing_game_and_cnr(phantom, ldm_maps) -> None:
    _, tests, maps = ldm_maps
    ldm = _mean_scores(maps, tests, "ldm")
    prior, _ = _method("box_prior", phantom)
    base = _mean_scores(prior.heatmaps(tests, phantom), tests, "box_prior")
    assert ldm["pointing_game"] > base["pointing_game"] + 0.1, (ldm, base)
    assert ldm["cnr"] > base["cnr"], (ldm, base)


def _left_share(values: np.ndarray) -> float:
    """Share of the map's mass on the image's left half (the patient's right)."""
    half = values.shape[1] // 2
    return float(values[:, :half].sum() / values.sum())


def test_swapping_left_and_right_moves_the_map_across(phantom, ldm_maps) -> None:
    method, tests, maps = ldm_maps
    one_sided = [(s, h) for s, h in zip(tests, maps) if s.extra["side"] in ("right", "left")]
    assert len(one_sided) >= 10
    flipped = method.heatmaps([dataclasses.replace(s, phrase=flip_side(s.phrase)) for s, _ in one_sided], phantom)
    moved = 0
    for (s, h), f in zip(one_sided, flipped):
        before, after = _left_share(h.values), _left_share(f.values)
        toward_left = s.extra["side"] == "left"  # the phrase now says right: the image's left
        moved += (after > before) == toward_left
    assert moved >= 0.8 * len(one_sided)


@pytest.mark.slow
def test_full_test_split_beats_the_box_prior(tmp_path: Path) -> None:
    dataset = PhantomDataset(tmp_path, {"n_test": "200", "n_train": "400"})
    method, tests = _method("phantom_ldm", dataset)
    ldm = _mean_scores(method.heatmaps(tests, dataset), tests, "ldm")
    prior, _ = _method("box_prior", dataset)
    base = _mean_scores(prior.heatmaps(tests, dataset), tests, "box_prior")
    assert ldm["pointing_game"] > base["pointing_game"] + 0.2, (ldm, base)
    assert ldm["cnr"] > 1.5 * base["cnr"], (ldm, base)


def test_training_script_writes_a_loadable_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "model"
    code = train_main(["--out", str(out), "--n-train", "8", "--vae-steps", "2", "--steps", "2", "--batch", "4",
                       "--threads", "1"])
    assert code == 0
    record = json.loads((out / "training.json").read_text())
    assert record["args"]["steps"] == 2 and record["scaling_factor"] > 0
    spec = apply_overrides(load_method_spec("phantom_ldm"),
                           [f"weights.package_dir={json.dumps(str(out))}",
                            f"scale_factor={record['scaling_factor']}", "num_inference_steps=2"])
    method = backend_class("ldm")(spec, RunContext())
    dataset = PhantomDataset(tmp_path / "images", {"n_test": "2", "n_train": "0"})
    maps = method.heatmaps(dataset.samples(), dataset)
    assert [m.values.shape for m in maps] == [(16, 16), (16, 16)]
    assert parse_settings(spec).package_dir == out


def test_training_script_rejects_bad_sizes(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        train_main(["--out", "x", "--size", "30"])
    assert exc.value.code == 2
    assert "--size must be a multiple of 4" in capsys.readouterr().err


def test_bench_run_phantom_ldm_offline_writes_a_leaderboard_ready_run(bench_cli, tmp_path: Path) -> None:
    """What a new user runs: the shipped weights, no download, a complete run directory with real weights."""
    out = tmp_path / "run"
    r = bench_cli("run", "--method", "phantom_ldm", "--dataset", "phantom", "-O", "n_test=8", "-O", "n_train=8",
                  "--out", out)
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["random_weights"] is False and run["skipped"] == []
    assert run["provenance"]["sample_evals_per_sample"] == 10.0  # 10 re-noised steps, conditional half only
    assert sorted(c["file"] for c in run["provenance"]["checkpoints"]) == [
        "text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors"]
    assert {c["source"] for c in run["provenance"]["checkpoints"]} == {"package"}
    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) == 8 and samples[["miou", "cnr", "auc_roc", "pointing_game"]].notna().all().all()
    assert samples["auc_roc"].mean() > 0.6


def test_attention_term_can_leave_out_the_location_words() -> None:
    from transformers import BertTokenizer

    from bench.datasets.anatomy import load_rules
    from bench.methods.ldm.phantom.train import tokenize

    tokenizer = BertTokenizer.from_pretrained(str(MODEL_DIR / "tokenizer"))
    phrases = ["small right lower lobe atelectasis", "cardiomegaly", "left pneumothorax along the lateral chest wall"]
    _, mask, every = tokenize(tokenizer, phrases, 16)
    _, _, finding = tokenize(tokenizer, phrases, 16, load_rules().location_words)
    # [CLS] small right lower lobe atelectasis [SEP]: the phrase's 5 words, or "small" and "atelectasis"
    assert every[0, :7].tolist() == [0, 1, 1, 1, 1, 1, 0] and finding[0, :7].tolist() == [0, 1, 0, 0, 0, 1, 0]
    assert finding[1, :3].tolist() == [0, 1, 0]  # a one-word pathology term is never a location word
    assert finding[2].sum() == every[2].sum() - 1  # only "left" goes
    assert torch.equal(mask, tokenize(tokenizer, phrases, 16, frozenset({"left"}))[1])
