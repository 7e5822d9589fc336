"""The codebook tuner: the losses of eqs. 2-4, the spec file, and a short seeded, resumable run."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from bench.core.errors import BenchError
from bench.datasets.anatomy import load_rules
from bench.methods.ldm.anatomy.codebook import codebook_provenance, load_codebook, location_vocabulary
from bench.methods.ldm.anatomy.tune import CodebookTuner, diversity_loss, localisation_loss
from bench.methods.ldm.anatomy.tune_spec import load_tune_spec


def test_diversity_loss_is_the_mean_squared_cosine_of_token_pairs():
    a = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # tokens: e1, e2, (e1 + e2)
    # cos(1,2) = 0, cos(1,3) = cos(2,3) = 1/sqrt(2): six ordered pairs, squares 0, 0.5, 0.5 twice each
    assert float(diversity_loss(a)) == pytest.approx((0 + 0.5 + 0.5) * 2 / 6)
    assert float(diversity_loss(a[:, :1])) == 0.0


def test_localisation_loss_uses_the_stop_gradient_target():
    attention = torch.tensor([[0.2, 0.4], [0.6, 0.2], [0.0, 0.2]], requires_grad=True)  # 3 positions, 2 tokens
    gaussian = torch.tensor([1.0, 0.5, 0.0])
    loss = localisation_loss(attention, gaussian, alpha=0.1, epsilon=1e-5)
    a_sp = torch.tensor([0.3, 0.4, 0.1])
    target = torch.tensor([0.3 + 0.1, 0.4 + 0.05, 0.0])  # outside G > eps the target is 0
    expected = 1 - float(a_sp @ target) / (float(a_sp.norm()) * float(target.norm()))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()  # the gradient flows through A_sp only, not through the target
    a = a_sp.clone().requires_grad_(True)
    (1 - torch.nn.functional.cosine_similarity(a, target, dim=0)).backward()
    assert torch.allclose(attention.grad, a.grad[:, None].expand(3, 2) / 2)


def _spec(tmp_path: Path, **train) -> Path:
    extra = "\n".join(f"{k} = {v}" for k, v in train.items())
    path = tmp_path / "tiny.toml"
    path.write_text(f"""
method = "anatomy_phantom_ldm"
[data]
options = {{ n_train = "3", n_test = "0" }}
parser = "rules"
[train]
steps = 2
batch = 1
lr = 0.01
{extra}
[diffusion]
num_inference_steps = 10
steps = [4]
[output]
checkpoint_every = 1
""")
    return path


def test_spec_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1\n")
    with pytest.raises(BenchError, match="unknown field train.learning_rate"):
        load_tune_spec(bad)
    bad.write_text("[train]\nbatch = 'two'\n")
    with pytest.raises(BenchError, match="^[^\n]*train.batch = 'two' is not an integer$"):
        load_tune_spec(bad)
    bad.write_text("[train]\noptimizer = 'lbfgs'\n")
    with pytest.raises(BenchError, match="not one of adam, adamw, sgd"):
        load_tune_spec(bad)
    with pytest.raises(BenchError, match="unknown tuning spec 'nope'"):
        load_tune_spec("nope")
    paper = load_tune_spec("anatomy_ldm")
    assert (paper.train["batch"], paper.train["lr"], paper.train["alpha"], paper.train["epsilon"],
            paper.diffusion["num_inference_steps"], paper.diffusion["steps"]) == (1, 1e-4, 0.1, 1e-5, 100, "30:60")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    spec = load_tune_spec(_spec(tmp))
    tuner = CodebookTuner(spec, tmp / "out", device="cpu")
    return tmp, spec, tuner, tuner.run(progress=False)


def test_tuned_codebook_is_what_anatomy_ldm_reads_with_its_provenance(tiny_run):
    tmp, spec, tuner, result = tiny_run
    assert result.codebook.name == "anatomy_codebook.safetensors"
    book = load_codebook(result.codebook, 64)
    # one row per word of the 27 location names (the phantom tokenizer's vocabulary is whole words)
    assert book.tokens == location_vocabulary(tuner.method.models.text.tokenizer) and book.embeddings.shape == (24, 64)
    record = codebook_provenance(result.codebook)
    assert record["spec"]["train"]["lr"] == 0.01 and record["seed"] == 0
    assert record["data"]["parser"].startswith("rules") and record["data"]["counts"]["triplets"] == 3
    assert record["lut"]["provenance"]["source"].startswith("phantom generator")
    assert record["timesteps_read"] == [501] and set(record["versions"]) >= {"torch", "bench"}
    assert (tmp / "out" / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    lines = (tmp / "out" / "losses.csv").read_text().splitlines()
    assert lines[0] == "step,loss,diversity,localisation" and len(lines) == 3


def test_only_the_trained_rows_move_and_a_resumed_run_matches(tiny_run):
    tmp, spec, tuner, result = tiny_run
    first = load_codebook(result.codebook, 64)
    moved = (first.embeddings - tuner.initial.embeddings).abs().sum(dim=1) > 0
    rules = load_rules()
    used = {word for step in (0, 1) for i in tuner.batch_indices(step) for key in tuner.triplets[i].locations
            for word in rules.find(key).name.split()}
    assert {t for t, m in zip(first.tokens, moved) if m} == used
    # resume: keep only the first checkpoint, rerun, get the same codebook
    for ck in (tmp / "out" / "checkpoints").glob("step-0000002.pt"):
        ck.unlink()
    again = CodebookTuner(spec, tmp / "out", device="cpu").run(progress=False)
    assert torch.equal(load_codebook(again.codebook, 64).embeddings, first.embeddings)
    other = load_tune_spec(_spec(tmp, alpha=0.5))
    with pytest.raises(BenchError, match="checkpoints of another tuning spec"):
        CodebookTuner(other, tmp / "out", device="cpu").run(progress=False)
    # a resume file holding Python objects is not unpickled
    planted = tmp / "out" / "checkpoints" / "step-9999999.pt"
    torch.save({"step": 1, "history": [], "payload": Path("anything")}, planted)
    with pytest.raises(BenchError, match=f"{planted} is not a checkpoint of `bench tune anatomy`"):
        CodebookTuner(spec, tmp / "out", device="cpu").run(progress=False)
    planted.unlink()
    assert math.isfinite(result.final["loss"])


def _tiny_anatomy_ldm(tmp_path: Path) -> Path:
    """anatomy_ldm's adapter (MONAI U-Net, CLIP text encoder, DDIM inversion) on the tiny MONAI and CLIP
    configurations, as a spec file outside the package."""
    from bench.methods.specs import method_spec_file

    text = method_spec_file("anatomy_ldm").text()
    text = re.sub(r"^layers = \[.*?\]$", 'layers = ["down_blocks.2.attentions.0", "middle_block.attention"]', text,
                  flags=re.M | re.S)
    for key, value in {"resize": "64", "crop": "64", "architecture": '"tiny_monai"',
                       "text_config": '"ldm_config/text/tiny_clip.json"'}.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    text = re.sub(r'^content = ".*?"', 'content = ""', text, flags=re.M)  # tiny replicas, not the published parts
    path = tmp_path / "anatomy_ldm.toml"
    path.write_text(text)
    return path


def test_tuning_the_monai_clip_model_through_ddim_inversion(tmp_path):
    adapter = _tiny_anatomy_ldm(tmp_path)
    spec_file = _spec(tmp_path)
    spec_file.write_text(spec_file.read_text().replace('method = "anatomy_phantom_ldm"', f'method = "{adapter}"'))
    spec = load_tune_spec(spec_file)
    tuner = CodebookTuner(spec, tmp_path / "out", device="cpu", random_weights=True)
    assert tuner.method.settings.process == "invert" and tuner.method.models.text.kind == "clip"
    # CLIP's BPE knows every location word: the rows are existing tokens, nothing is added
    tokenizer = tuner.method.models.text.tokenizer
    assert not set(tokenizer.added_tokens_encoder) & set(tuner.initial.tokens)
    result = tuner.run(progress=False)
    book = load_codebook(result.codebook)
    assert book.tokens == location_vocabulary(tokenizer) and "right</w>" in book.tokens
    assert (book.embeddings - tuner.initial.embeddings).abs().sum() > 0
    assert math.isfinite(result.final["loss"]) and codebook_provenance(result.codebook)["process"] == "invert"


def test_the_documented_commands_tune_a_codebook_that_bench_run_reads(tmp_path, bench_cli, monkeypatch):
    """README: `bench tune anatomy --weights BUNDLE --out BUNDLE/codebook`, then `bench run --weights BUNDLE
    --set weights.codebook=codebook/...` (here on the tiny MONAI/CLIP model, saved as a bundle folder)."""
    import json
    import shutil

    from bench.methods import RunContext, backend_class
    from bench.methods.ldm.settings import METHODS_DIR
    from bench.methods.specs import apply_overrides, load_method_spec

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    adapter = _tiny_anatomy_ldm(tmp_path)
    spec = apply_overrides(load_method_spec(str(adapter)), ["location_tokens=words"])
    random = backend_class("anatomy_ldm")(spec, RunContext(random_weights=True))
    random.prepare()
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    torch.save(random.models.unet.state_dict(), bundle / "models" / "diffusion_model.pth")
    torch.save(random.models.vae.state_dict(), bundle / "models" / "autoencoder.pth")
    text = bundle / "stable-diffusion-2-1-base"
    random.models.text.model.save_pretrained(text / "text_encoder")
    shutil.copytree(METHODS_DIR / "ldm_config" / "clip_tokenizer", text / "tokenizer")
    (text / "tokenizer" / "special_tokens_map.json").write_text(json.dumps({"pad_token": "!"}))
    tune_spec = _spec(tmp_path)
    tune_spec.write_text(tune_spec.read_text().replace('method = "anatomy_phantom_ldm"', f'method = "{adapter}"'))

    r = bench_cli("tune", "anatomy", "--spec", tune_spec, "--weights", bundle, "--out", bundle / "codebook")
    assert r.code == 0, r.err
    assert "codebook after 2 steps written to" in r.out and (bundle / "codebook" / "location_codebook.safetensors").is_file()
    runs = {}
    for tokens in ("codebook", "words"):
        out = tmp_path / tokens
        r = bench_cli("run", "--method", adapter, "--dataset", "phantom", "-O", "n_test=2", "-O", "n_train=0",
                      "--weights", bundle, "--set", "weights.codebook=codebook/location_codebook.safetensors",
                      "--set", f"location_tokens={tokens}", "--out", out)
        assert r.code == 0, r.err
        runs[tokens] = json.loads((out / "run.json").read_text())
    record = runs["codebook"]
    assert record["random_weights"] is False
    assert record["provenance"]["codebook"] == str(bundle / "codebook" / "location_codebook.safetensors")
    assert runs["words"]["provenance"]["codebook"] is None


class _Planted:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_checkpoint_never_runs(tiny_run, tmp_path):
    tmp, spec, tuner, result = tiny_run
    out = tmp_path / "evil"
    (out / "checkpoints").mkdir(parents=True)
    marker = tmp_path / "pwned"
    torch.save({"step": 1, "payload": _Planted(marker)}, out / "checkpoints" / "step-9999999.pt")
    with pytest.raises(BenchError, match="not a checkpoint of `bench tune anatomy`.*not loaded") as info:
        CodebookTuner(spec, out, device="cpu").run(progress=False)
    assert not marker.exists()
    assert "\n" not in str(info.value) and "weights_only" not in str(info.value)
