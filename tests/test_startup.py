"""What a command costs before its first sample: the cached image checks, and no model stack where none is needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bench.core.cache import cache_root
from bench.datasets import images
from bench.datasets.chestxray14 import ChestXray14Dataset

ROOT = Path(__file__).resolve().parents[1]


def _tree(root: Path) -> Path:
    """A ChestX-ray14 folder of three release-size images, one finding each."""
    root.mkdir(parents=True)
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,x,y,w,h\n"
                                             "a.png,Mass,10,20,30,40\nb.png,Nodule,5,5,10,10\nc.png,Effusion,1,2,3,4\n")
    for name in "abc":
        Image.new("L", (1024, 1024), 40).save(root / f"{name}.png")
    return root


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The paths `check_images` decodes, in order, with the cache under tmp_path."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    seen: list[str] = []
    real = images.decoded_size

    def counted(path):
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(images, "decoded_size", counted)
    return seen


def test_second_check_reads_no_image_and_an_edited_image_is_read_again(tmp_path: Path, decodes: list[str]) -> None:
    ds = ChestXray14Dataset(_tree(tmp_path / "nih"))
    samples = ds.samples()
    assert ds.check_images(samples) == {} and sorted(decodes) == ["a.png", "b.png", "c.png"]
    cached = json.loads(images.check_cache_file("chestx-ray14").read_text())
    assert cached["version"] == images.CHECK_CACHE_VERSION
    assert cached["files"][str(tmp_path / "nih" / "a.png")][2] == [1024, 1024]
    decodes.clear()
    assert ChestXray14Dataset(tmp_path / "nih").check_images(samples) == {} and decodes == []
    # same bytes, newer modification time: read again; the others are not
    st = os.stat(tmp_path / "nih" / "b.png")
    os.utime(tmp_path / "nih" / "b.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ds.check_images(samples) == {} and decodes == ["b.png"]
    # replaced by an image of another size: found, whatever the cache said of the old file
    decodes.clear()
    Image.new("L", (512, 1024), 40).save(tmp_path / "nih" / "c.png")
    problems = ds.check_images(samples)
    assert decodes == ["c.png"] and list(problems) == ["c-effusion"]
    assert "is 512x1024, but the dataset records 1024x1024" in problems["c-effusion"]
    decodes.clear()
    assert ds.check_images(samples) == problems and decodes == []  # the problem is cached too


@pytest.mark.parametrize("content", [
    b"not json at all {",
    b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the JSON reader recurses
    json.dumps(["a", "list"]).encode(),
    json.dumps({"version": 1, "files": {}}).encode(),  # another layout
    None,  # valid layout, hostile entries: wrong types, a bool for a size, a negative size, a huge reason
])
def test_a_corrupt_or_hostile_cache_is_ignored(tmp_path: Path, decodes: list[str], content: bytes | None) -> None:
    root = _tree(tmp_path / "nih")
    ds = ChestXray14Dataset(root)
    samples = ds.samples()
    if content is None:
        a, b, c = (str(root / f"{n}.png") for n in "abc")
        st = {p: os.stat(p) for p in (a, b, c)}
        content = json.dumps({"version": images.CHECK_CACHE_VERSION, "files": {
            a: [True, st[a].st_mtime_ns, [1024, 1024]], b: [st[b].st_size, st[b].st_mtime_ns, [-1024, 1024]],
            c: [st[c].st_size, st[c].st_mtime_ns, "x" * 100_000], "other": "nonsense"}}).encode()
    path = images.check_cache_file("chestx-ray14")
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert ds.check_images(samples) == {} and sorted(decodes) == ["a.png", "b.png", "c.png"]
    decodes.clear()
    assert ds.check_images(samples) == {} and decodes == []  # rewritten in the harness's own layout


def test_an_oversized_cache_is_not_read(tmp_path: Path, decodes: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    root = _tree(tmp_path / "nih")
    ds = ChestXray14Dataset(root)
    ds.check_images(ds.samples())
    monkeypatch.setattr(images, "MAX_CHECK_CACHE_BYTES", images.check_cache_file("chestx-ray14").stat().st_size - 1)
    decodes.clear()
    assert ds.check_images(ds.samples()) == {} and len(decodes) == 3


def test_cache_folder_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "b"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "b"
    assert images.check_cache_file("../odd name") == tmp_path / "b" / "image-checks" / "_odd_name.json"
    monkeypatch.delenv("BENCH_CACHE")
    assert cache_root() == tmp_path / "x" / "cxr-grounding-bench"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # not absolute: ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "cxr-grounding-bench"


def test_a_corrupt_cache_leaves_bench_run_clean(tmp_path: Path, bench_cli) -> None:
    root = _tree(tmp_path / "nih")
    path = images.check_cache_file("chestx-ray14")  # bench_cli has set BENCH_CACHE
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 2, "files": {"x": [1, 2, {"a": "b"}]}, "junk": ' + "[" * 50_000)
    r = bench_cli("run", "-m", "uniform", "-d", "chestx-ray14", "--data-root", root, "--out", tmp_path / "run")
    assert r.code == 0 and "Traceback" not in r.err, r.err
    assert len(json.loads(path.read_text())["files"]) == 3


#: runs `bench ARGS` in-process and prints which packages of the model stack (and pandas) it imported
PROBE = """
import json, sys
sys.argv = ["bench", *sys.argv[1:]]
from bench.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "transformers", "diffusers",
                                                        "health_multimodal", "monai", "sklearn", "pandas"})
print(json.dumps({"code": code, "heavy": heavy}))
"""


def _probe(tmp_path: Path, *args: object) -> dict:
    env = {**os.environ, "BENCH_QUIET": "1", "HF_HUB_OFFLINE": "1", "BENCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], env=env, capture_output=True, text=True,
                         check=False, cwd=ROOT, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_light_commands_import_no_model_stack(tmp_path: Path) -> None:
    """With every model package installed, --help, the baselines and scoring stored maps leave them unimported,
    and pandas too (its import costs more than scoring a hundred samples under these protocols)."""
    small = ["-d", "phantom", "-O", "n_test=6", "-O", "n_train=6"]
    assert _probe(tmp_path, "--help") == {"code": 0, "heavy": []}
    assert _probe(tmp_path, "run", "--help") == {"code": 0, "heavy": []}
    for method in ("box_prior", "uniform", "oracle_gaussian"):
        assert _probe(tmp_path, "run", "-m", method, *small, "--out", tmp_path / method) == {"code": 0, "heavy": []}
    for protocol in ("default", "vilouras2024", "vilouras2025"):
        assert _probe(tmp_path, "score", "--heatmaps", tmp_path / "box_prior", *small, "-p", protocol, "--skip-bad",
                      "--out", tmp_path / f"s_{protocol}") == {"code": 0, "heavy": []}  # vilouras2024: train split too
    # a GMM protocol needs scikit-learn (the mixture) for its samples, and only then; its GT resize comes from
    # the interpolation weights, PyTorch only deciding a pixel where float32 and exact arithmetic part
    for protocol in ("dombrowski2024", "nutzel2025"):
        gmm = _probe(tmp_path, "score", "--heatmaps", tmp_path / "box_prior", *small, "-p", protocol,
                     "--skip-bad", "--out", tmp_path / f"s_{protocol}")  # its sample set holds the train split too
        assert gmm["code"] == 0 and "sklearn" in gmm["heavy"] and "torch" not in gmm["heavy"]
