"""What a method's external model parts are, where they are found, and whether they hold the right content.

Every external part of a method spec (`[weights.<part>]`: repository, revision, sub-folder or file,
an optional own folder) is an `Artifact`. Its expected content comes from `artifacts.toml` under the
name the spec gives (`content = "..."`), not from the repository name, so a mirror or a local copy
is accepted exactly when it holds the same model: published sha256 of a file where one exists,
else key fields of the configuration and a small numerical fingerprint (token ids of a fixed
prompt; summary numbers of the encoder output on them). Checks whose reference value could not be
established are reported as such, never passed silently. `bench weights METHOD` lists, fetches and
verifies through this module; `bench run` applies the same checks before any sample.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core.errors import BenchError
from .weights import Component, FileSpec, WeightFile, file_sha256, hub_offline, local_folder, lookup_files

ARTIFACTS_FILE = Path(__file__).resolve().with_name("artifacts.toml")
UNVERIFIED = "unverified: no reference value shipped"
#: tolerance of the numerical fingerprint of an encoder output (absolute, on float32 summaries)
FINGERPRINT_ATOL = 1e-3
_tables: dict[tuple[str, float], dict] = {}


def table() -> dict:
    """The parsed artifacts table (ARTIFACTS_FILE), read once per file version."""
    path = Path(ARTIFACTS_FILE)
    key = (str(path), path.stat().st_mtime)
    if key not in _tables:
        try:
            _tables[key] = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BenchError(f"cannot read the artifacts table {path}: {exc}") from None
    return _tables[key]


def withdrawn(repo_id: str) -> str | None:
    """Why `repo_id` is no longer on the Hub, if it was taken off."""
    return table().get("withdrawn", {}).get(repo_id)


def mirrors(repo_id: str) -> list[str]:
    """Public Hub repositories reported to hold copies of `repo_id`."""
    return list(table().get("mirrors", {}).get(repo_id, []))


def expected(content: str) -> dict | None:
    """The expected content entry named `content`, or None when the table has none."""
    return table().get("content", {}).get(content)


@dataclass(frozen=True)
class Artifact:
    """One external part of a method: its source, the files it reads, where they are looked up."""

    part: str
    what: str
    component: Component
    files: tuple[FileSpec, ...]
    folder: Path | None = None          # None: the Hugging Face cache
    exact_folder: bool = False          # the folder is the part's own (no `<repo name>` sub-folder)
    kind: str = ""                      # text encoder kind for the fingerprint ("clip", "cxr_bert", "bert")
    note: str = ""

    def fetchable(self) -> bool:
        return self.folder is None and self.component.on_hub()


@dataclass
class ArtifactStatus:
    """An artifact as found: present files, missing files, checks, what was downloaded."""

    artifact: Artifact
    found: list[WeightFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    checks: list[dict] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def state(self) -> str:
        """missing, mismatch, verified, or present (some checks without a reference value)."""
        if self.missing or self.error:
            return "missing"
        if any(c["status"] == "mismatch" for c in self.checks):
            return "mismatch"
        if self.checks and all(c["status"] == "ok" for c in self.checks):
            return "verified"
        return "present, unverified"


# ---------------------------------------------------------------- checks

def _relative(name: str, subfolder: str) -> str:
    prefix = subfolder.strip("/") + "/" if subfolder.strip("/") else ""
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _check(part: str, content: str, check: str, status: str, detail: str) -> dict:
    return {"part": part, "content": content, "check": check, "status": status, "detail": detail}


def _config_check(part: str, comp: Component, files: Sequence[WeightFile], spec: dict) -> dict:
    name = spec.get("file", "config.json")
    hit = next((f for f in files if _relative(f.filename, comp.subfolder) == name), None)
    if hit is None:
        return _check(part, comp.content, f"config {name}", "mismatch", f"{name} is not among the files read")
    try:
        config = json.loads(hit.path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return _check(part, comp.content, f"config {name}", "mismatch", f"cannot read {hit.path}: {exc}")
    for key, value in spec.items():
        if key != "file" and config.get(key) != value:
            return _check(part, comp.content, f"config {name}", "mismatch",
                          f"{name} has {key} = {config.get(key)!r}, expected {value!r}")
    return _check(part, comp.content, f"config {name}", "ok", f"{len(spec) - ('file' in spec)} fields as expected")


def tokenizer_fingerprint(kind: str, folder: Path, prompt: str) -> dict:
    """Token ids of `prompt` (with the special tokens) by the tokenizer in `folder`."""
    from .ldm.loading import _tokenizer

    tokenizer = _tokenizer(kind, folder)
    return {"prompt": prompt, "token_ids": [int(i) for i in tokenizer(prompt)["input_ids"]]}


def encoder_fingerprint(kind: str, folder: Path, token_ids: Sequence[int]) -> dict:
    """Summary of the text encoder's last hidden state on `token_ids`: shape, mean, std and the first
    four values of the last position."""
    import torch

    from .ldm.loading import _pretrained_text, _quiet

    with _quiet():
        model = _pretrained_text(kind, folder).float().eval()
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([list(token_ids)])).last_hidden_state[0].double()
    return {"token_ids": [int(i) for i in token_ids], "shape": list(hidden.shape), "mean": float(hidden.mean()),
            "std": float(hidden.std()), "head": [float(v) for v in hidden[-1, :4]]}


def _fingerprint_check(part: str, comp: Component, files: Sequence[WeightFile], kind: str, spec: dict | None) -> dict:
    check = "fingerprint"
    if not spec:
        return _check(part, comp.content, check, "unverified", UNVERIFIED)
    folder = files[0].path.parent
    if "shape" in spec:
        got = encoder_fingerprint(kind, folder, spec["token_ids"])
        if got["shape"] != list(spec["shape"]):
            return _check(part, comp.content, check, "mismatch", f"output shape {got['shape']}, expected {spec['shape']}")
        pairs = [("mean", got["mean"], spec["mean"]), ("std", got["std"], spec["std"])]
        pairs += [(f"head[{i}]", g, e) for i, (g, e) in enumerate(zip(got["head"], spec["head"]))]
        for label, value, ref in pairs:
            if abs(value - ref) > FINGERPRINT_ATOL:
                return _check(part, comp.content, check, "mismatch",
                              f"encoder output {label} = {value:.6g} on the reference tokens, expected {ref:.6g}")
        return _check(part, comp.content, check, "ok", "encoder output on the reference tokens as expected")
    got = tokenizer_fingerprint(kind, folder, spec["prompt"])
    if got["token_ids"] != list(spec["token_ids"]):
        return _check(part, comp.content, check, "mismatch",
                      f"token ids of {spec['prompt']!r} are {got['token_ids']}, expected {list(spec['token_ids'])}")
    return _check(part, comp.content, check, "ok", f"token ids of {spec['prompt']!r} as expected")


def content_checks(part: str, comp: Component, files: Sequence[WeightFile], kind: str = "") -> list[dict]:
    """Every check of one part's files against its expected content (no exception on a mismatch)."""
    if not comp.content:
        return [_check(part, "", "content", "unverified", "no expected content named (not a published model)")]
    entry = expected(comp.content)
    if entry is None:
        raise BenchError(f"weights.{part}.content = {comp.content!r} is not in {ARTIFACTS_FILE.name} "
                         f"(known: {', '.join(sorted(table().get('content', {})))})")
    refs = entry.get("files", {})
    config_file = entry.get("config", {}).get("file", "config.json") if entry.get("config") else None
    out = []
    for f in files:
        rel = _relative(f.filename, comp.subfolder)
        ref = refs.get(rel, {}).get("sha256")
        if not ref and rel == config_file:
            continue  # its fields are checked below
        if not ref:
            out.append(_check(part, comp.content, f"sha256 {rel}", "unverified", UNVERIFIED))
            continue
        digest = file_sha256(f.path)
        status = "ok" if digest == ref else "mismatch"
        detail = "as published" if status == "ok" else f"{f.path} has sha256 {digest[:12]}..., expected {ref[:12]}..."
        out.append(_check(part, comp.content, f"sha256 {rel}", status, detail))
    if entry.get("config"):
        out.append(_config_check(part, comp, files, entry["config"]))
    if kind and part in ("text", "tokenizer"):
        out.append(_fingerprint_check(part, comp, files, kind, entry.get("fingerprint")))
    return out


def verify_part(method: str, part: str, comp: Component, files: Sequence[WeightFile], kind: str = "") -> list[dict]:
    """content_checks, raising BenchError (one line) on the first mismatch: a copy that is not the model."""
    checks = content_checks(part, comp, files, kind)
    bad = next((c for c in checks if c["status"] == "mismatch"), None)
    if bad is not None:
        source = f"{comp.repo}@{comp.revision}" if files and files[0].source != "local" else str(files[0].path.parent)
        raise BenchError(f"{method} {part} ({source}) is not {comp.content}: {bad['check']}: {bad['detail']}; "
                         f"point weights.{part}.repo or weights.{part}.local_dir at a copy of the published files "
                         f"(or --set weights.{part}.content='' to read another model knowingly)")
    return checks


# ---------------------------------------------------------------- inventory

def _ldm_artifacts(spec: dict, weights: Path | None) -> list[Artifact]:
    from .ldm.loading import PART_NAMES, _Finder, components, part_files, single_file_unet
    from .ldm.settings import parse_settings

    settings = parse_settings(spec)
    if settings.package_dir is not None and weights is None:
        return []
    finder = _Finder(settings, weights)
    comps = components(settings)
    out = []
    single = single_file_unet(settings, weights)
    if single is not None:
        finder.main = None
        out.append(Artifact("unet", PART_NAMES["unet"], Component(repo=single.name, revision="local"),
                            (single.name,), single.parent, True, note="one original-layout checkpoint file"))
    for part, names in part_files(settings).items():
        if part == "unet" and single is not None:
            continue
        comp = comps[part]
        folder = finder.folder_for(comp)
        note = "" if folder is not None or comp.on_hub() else (settings.missing_hint or "not on the Hub: give its folder")
        out.append(Artifact(part, PART_NAMES[part], comp, tuple(names), folder, comp.folder() is not None,
                            settings.text_encoder if part in ("text", "tokenizer") else "", note))
    codebook = spec.get("weights", {}).get("codebook")
    if spec.get("backend") == "anatomy_ldm" and codebook:
        base = weights or settings.local_dir or settings.package_dir or Path.cwd()
        out.append(Artifact("codebook", "location codebook", Component(repo="local", revision="tuned"),
                            (codebook,), Path(base), True, note="not public: made by `bench tune anatomy`"))
    return out


def _biovil_artifacts(spec: dict, weights: Path | None) -> list[Artifact]:
    from .biovil import TEXT_FILES, parse_settings

    s = parse_settings(spec)
    main = weights or s.local_dir
    out = []
    for part, comp, files, kind in (("text", s.text, TEXT_FILES, "cxr_bert"), ("image", s.image, (s.image.file,), "")):
        own = comp.folder()
        folder = own if own is not None else (local_folder(main, comp.repo) if main is not None else None)
        out.append(Artifact(part, "text model" if part == "text" else "image model", comp, tuple(files), folder,
                            own is not None, kind))
    return out


def _maira2_artifacts(spec: dict, weights: Path | None) -> list[Artifact]:
    from .box_grounders.maira2 import MODEL_FILES, parse_settings

    s = parse_settings(spec)
    own = s.model.folder()
    main = weights or s.local_dir
    folder = own if own is not None else (local_folder(main, s.model.repo) if main is not None else None)
    return [Artifact("model", "MAIRA-2 model and tokenizer", s.model, MODEL_FILES, folder, own is not None,
                     note="gated: accept the licence on the model page and log in; the weight shards are those "
                          "model.safetensors.index.json names")]


def method_artifacts(spec: dict, weights: Path | None = None) -> list[Artifact]:
    """Every external part `spec` reads with checkpoints, as located with `--weights` = `weights`."""
    backend = spec.get("backend")
    if backend in ("ldm", "anatomy_ldm"):
        return _ldm_artifacts(spec, weights)
    if backend == "biovil":
        return _biovil_artifacts(spec, weights)
    if backend == "maira2":
        return _maira2_artifacts(spec, weights)
    return []


def inspect(artifact: Artifact, fetch: bool = False) -> ArtifactStatus:
    """Locate an artifact's files (downloading the missing ones of a Hub repository when `fetch` and
    online) and run its content checks."""
    from .fetch import fetch_files
    from .weights import withdrawn_hint

    comp = artifact.component
    status = ArtifactStatus(artifact)
    if artifact.folder is not None and not artifact.folder.is_dir():
        status.error = f"folder {artifact.folder} does not exist"
        status.missing = [" or ".join(_names(s)) for s in artifact.files]
        return status
    folder = artifact.folder
    if folder is not None and not artifact.exact_folder:
        folder = local_folder(folder, comp.repo)
    hits = lookup_files(comp.repo, comp.revision, artifact.files, folder, artifact.part)
    todo = [s for s, h in zip(artifact.files, hits) if h is None]
    if todo and fetch and artifact.fetchable() and not hub_offline():
        try:
            status.fetched = fetch_files(comp.repo, comp.revision, todo, what=f"{artifact.what}",
                                         hint=withdrawn_hint(comp.repo, artifact.part, ""))
        except BenchError as exc:
            status.error = str(exc)
        hits = lookup_files(comp.repo, comp.revision, artifact.files, folder, artifact.part)
    status.found = [h for h in hits if h is not None]
    status.missing = [" or ".join(_names(s)) for s, h in zip(artifact.files, hits) if h is None]
    if not status.missing and artifact.part != "codebook":
        status.checks = content_checks(artifact.part, comp, status.found, artifact.kind)
    return status


def _names(spec: FileSpec) -> tuple[str, ...]:
    return (spec,) if isinstance(spec, str) else tuple(spec)


def size_of(artifact: Artifact, name: str) -> str:
    """The published size of a file of the artifact, where the table knows it."""
    entry = expected(artifact.component.content) if artifact.component.content else None
    if not entry:
        return ""
    return str(entry.get("files", {}).get(_relative(name, artifact.component.subfolder), {}).get("size", ""))


def describe(spec: dict, weights: Path | None = None, fetch: bool = False) -> list[ArtifactStatus]:
    """The status of every artifact of a method (see `inspect`)."""
    return [inspect(a, fetch) for a in method_artifacts(spec, weights)]


def as_record(statuses: Sequence[ArtifactStatus]) -> list[dict[str, Any]]:
    """JSON-ready rows of `describe`'s result."""
    rows = []
    for st in statuses:
        a = st.artifact
        rows.append({"part": a.part, "repo": a.component.repo, "revision": a.component.revision,
                     "folder": str(a.folder) if a.folder is not None else None, "state": st.state,
                     "files": [f.record() for f in st.found], "missing": st.missing, "checks": st.checks,
                     "fetched": st.fetched, "error": st.error})
    return rows


__all__ = ["ARTIFACTS_FILE", "Artifact", "ArtifactStatus", "UNVERIFIED", "as_record", "content_checks", "describe",
           "encoder_fingerprint", "expected", "inspect", "method_artifacts", "mirrors", "size_of", "table",
           "tokenizer_fingerprint", "verify_part", "withdrawn"]
