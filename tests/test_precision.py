"""Reduced precision of the diffusion methods: autocast, captured probabilities, batching, batch memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_unets import TINY, one_thread  # noqa: F401
from tiny_unets import tiny_method as _method

from bench.core.errors import BenchError
from bench.core.samples import Sample
from bench.datasets.base import Dataset
from bench.methods.ldm import memory
from bench.methods.ldm.precision import BATCH_ATOL, Precision, attention_probs
from bench.running.runner import batch_size_for


class ArrayDataset(Dataset):
    name = "arrays"

    def __init__(self) -> None:
        rng = np.random.default_rng(5)
        rows = [("a", 80, 96, "pleural effusion", "small left pleural effusion"),
                ("b", 72, 64, "pneumothorax", "right apical pneumothorax"),
                ("c", 64, 64, "lung opacity", "patchy opacity in the left lower lobe")]
        self._samples = [Sample(i, f"{i}.png", w, h, c, p, ((4.0, 4.0, 20.0, 20.0),)) for i, h, w, c, p in rows]
        self._arrays = {s.sample_id: rng.integers(0, 256, (s.height, s.width), dtype=np.uint8) for s in self._samples}

    def samples(self) -> list[Sample]:
        return list(self._samples)

    def load_image(self, sample: Sample) -> np.ndarray:
        return self._arrays[sample.sample_id]


DS = ArrayDataset()


@pytest.fixture(scope="module")
def fp32_maps() -> list[np.ndarray]:
    return [h.values for h in _method("cxrbert_ldm", ["precision=fp32"], batch_size=3).heatmaps(DS.samples(), DS)]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_a_batch_gives_each_sample_its_own_map_to_the_stated_rounding(precision: str, fp32_maps) -> None:
    batched = _method("cxrbert_ldm", [f"precision={precision}"], batch_size=3).heatmaps(DS.samples(), DS)
    single = _method("cxrbert_ldm", [f"precision={precision}"], batch_size=1)
    for sample, heatmap, full in zip(DS.samples(), batched, fp32_maps):
        alone = single.heatmaps([sample], DS)[0]
        assert np.abs(alone.values - heatmap.values).max() <= BATCH_ATOL[precision]
        if precision != "fp32":  # reduced precision really ran: the map moved away from float32's
            assert np.abs(heatmap.values - full).max() > 1e-4


def test_the_published_cxrbert_precision_is_fp16_autocast_and_recorded() -> None:
    method = _method("cxrbert_ldm")
    assert method.settings.precision == Precision("fp16", "autocast")
    method.prepare()
    record = method.provenance()
    assert (record["precision"], record["attention_precision"]) == ("fp16", "autocast")
    assert _method("ldm_frozen").settings.precision == Precision("fp32", "fp32")
    assert _method("clip_ldm").settings.precision == Precision("fp32", "fp32")


def test_autocast_probabilities_are_rounded_as_diffusers_keeps_them_and_fp32_ones_are_not() -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4, generator=g), torch.randn(2, 3, 6, 4, generator=g)
    exact = torch.softmax(q.double() @ k.double().transpose(-1, -2) * 0.5, dim=-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = attention_probs(q, k, 0.5, None, torch.float32)
        rounded = attention_probs(q, k, 0.5, None, None, autocast_dtype=torch.float16)
    assert kept.dtype == torch.float32 and rounded.dtype == torch.float16
    assert torch.allclose(kept.double(), exact, atol=1e-6)
    # float16 logits (one baddbmm), float32 softmax, float16 result
    logits = torch.baddbmm(torch.empty(6, 5, 6, dtype=torch.float16), q.reshape(6, 5, 4).half(),
                           k.reshape(6, 6, 4).half().transpose(-1, -2), beta=0, alpha=0.5)
    expected = logits.float().softmax(-1).half().reshape(2, 3, 5, 6)
    assert torch.equal(rounded, expected)
    assert 0 < (rounded.double() - exact).abs().max() < 2e-3


def test_a_device_without_autocast_stops_in_one_line(monkeypatch) -> None:
    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device_type: False)
    with pytest.raises(BenchError, match=r"^--precision bf16: torch .* has no autocast on cpu$"):
        Precision("bf16").check(torch.device("cpu"))
    Precision("fp32").check(torch.device("cpu"))  # fp32 needs no autocast


def test_batch_memory_from_two_probe_peaks() -> None:
    usage = memory.measure(lambda n: {1: 300, 2: 500}[n], free=1000)
    assert (usage.fixed, usage.per_sample) == (100, 200)
    assert usage.fits == 3  # (1000 * 0.85 - 100) / 200 = 3.75
    assert memory.fitting_batch(usage, "cuda:0") == 3
    tight = memory.measure(lambda n: {1: 300, 2: 500}[n], free=300)
    with pytest.raises(BenchError, match=r"one sample needs about 0\.0 GiB on cuda:0, 0\.0 GiB are free"):
        memory.fitting_batch(tight, "cuda:0")


class _Sized:
    def __init__(self, fits: int | None) -> None:
        self.fits = fits
        self.context = type("C", (), {"device": "cuda:0"})()

    def fitting_batch_size(self) -> int | None:
        return self.fits


def test_batch_size_auto_takes_what_fits_and_a_size_that_does_not_is_refused_naming_the_one_that_does() -> None:
    assert batch_size_for(_Sized(3), "auto") == 3
    assert batch_size_for(_Sized(None), "auto") == 8
    assert batch_size_for(_Sized(None), 64) == 64
    assert batch_size_for(_Sized(3), 2) == 2
    with pytest.raises(BenchError, match=r"^--batch-size 8 does not fit .* cuda:0: --batch-size 3 fits"):
        batch_size_for(_Sized(3), 8)


def test_the_probe_runs_the_model_at_batch_one_and_two_under_the_run_precision() -> None:
    method = _method("cxrbert_ldm", ["precision=bf16"], batch_size=2)
    method.prepare()
    sizes: list[int] = []

    def peak_of(n: int) -> int:
        method._probe(n)
        sizes.append(n)
        return 1000 * n + 500

    assert method.batch_fit(10_000, peak_of) == 8  # per sample 1000, fixed 500: (8500 - 500) / 1000
    assert sizes == [1, 2]
    assert method.fitting_batch_size() is None  # on a CPU nothing is measured


def test_precision_on_the_command_line_is_run_json_and_a_method_without_a_model_refuses_it(bench_cli, tmp_path) -> None:
    tiny = [x for item in TINY["cxrbert_ldm"] for x in ("--set", item)]
    out = tmp_path / "run"
    r = bench_cli("run", "-m", "cxrbert_ldm", "-d", "phantom", "-O", "n_test=4", "-O", "n_train=0", "--limit", "4",
                  "--random-weights", *tiny, "--precision", "bf16", "--batch-size", "auto", "--out", out)
    assert r.code == 0, r.err
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["method"]["params"]["precision"] == "bf16"
    assert run["provenance"]["precision"] == "bf16"
    r = bench_cli("run", "-m", "uniform", "-d", "phantom", "--precision", "bf16", "--out", tmp_path / "u")
    assert r.code != 0 and "--precision: uniform runs no model with a precision setting" in r.err
    r = bench_cli("run", "-m", "cxrbert_ldm", "-d", "phantom", "--precision", "fp8", "--out", tmp_path / "x")
    assert r.code != 0 and "--precision fp8: expected one of fp32, fp16, bf16" in r.err
    r = bench_cli("run", "-m", "uniform", "-d", "phantom", "--batch-size", "many", "--out", tmp_path / "y")
    assert r.code != 0 and "--batch-size many: expected a number of samples or auto" in r.err


def test_a_leaderboard_entry_names_a_reduced_precision_and_keeps_fp32_runs_as_they_were(tmp_path) -> None:
    import pandas as pd

    from bench.leaderboard.results import Entry

    def entry(record: dict, modified=()) -> Entry:
        return Entry("cxrbert_ldm", "phantom", None, tmp_path, record, pd.DataFrame(), pd.DataFrame(), list(modified))

    assert entry({"provenance": {"precision": "bf16"}}).label == "cxrbert_ldm [bf16]"
    assert entry({"provenance": {"precision": "fp16"}}, ["samples.csv"]).label == "cxrbert_ldm [fp16] [modified]"
    assert entry({"provenance": {"precision": "fp32"}}).label == "cxrbert_ldm"
    assert entry({"provenance": {}}).label == "cxrbert_ldm"  # runs from before --precision ran in fp32
