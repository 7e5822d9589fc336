"""The reproduction page and the ms-cxr pages: a committed MS-CXR run fills the rows of the numbers it reproduces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_datasets import fake_ms_cxr
from test_reported import GOOD, write_rows

from bench.reporting.reported import load_reported

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity", "Pleural Effusion", "Pneumonia",
              "Pneumothorax"]


def ms_cxr_rows(seed: int = 3) -> list[list]:
    """Two image-phrase pairs per MS-CXR category (v1.0.0 CSV rows: no split), boxes well inside small images."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, cat in enumerate(CATEGORIES):
        for k in range(2):
            dicom = f"{c:02d}{k}" + "a" * 40
            width, height = int(rng.integers(60, 90)), int(rng.integers(60, 90))
            w, h = int(rng.integers(12, 24)), int(rng.integers(12, 24))
            x, y = int(rng.integers(12, width - w - 12)), int(rng.integers(12, height - h - 12))
            rows.append([dicom, cat, f"{cat.lower()} number {k}", f"files/p10/p{c}{k}/s1/{dicom}.jpg", x, y, w, h,
                         width, height])
    return rows


@pytest.fixture(scope="module")
def oracle_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, run dir): oracle_gaussian scored under vilouras2024 on a synthetic MS-CXR set."""
    from typer.testing import CliRunner

    from bench.cli import app

    root = tmp_path_factory.mktemp("ms-cxr")
    fake_ms_cxr(root / "data", "1.0.0", ms_cxr_rows())
    run = root / "run"
    result = CliRunner().invoke(app, ["run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--protocol",
                                      "vilouras2024", "--data-root", str(root / "data"), "--out", str(run)])
    assert result.exit_code == 0, result.output
    return root / "data", run


def test_a_committed_ms_cxr_run_fills_its_page_and_reproduction_rows(oracle_run, tmp_path: Path, bench_cli) -> None:
    _, run = oracle_run
    assert json.loads((run / "run.json").read_text())["random_weights"] is False  # a real method: it may enter
    summary = pd.read_csv(run / "summary.csv").set_index(["group", "metric"])
    macro = summary.loc[("macro", "miou")]
    atel = summary.loc[("atelectasis", "cnr")]
    reported = tmp_path / "reported"
    shutil.copytree(REPO / "reported", reported)
    # published values for the oracle: one inside the run's macro-miou interval, one below the atelectasis CNR one
    inside, outside = round(float(macro["mean"]), 3), round(float(atel["ci_low"]) - 0.5, 2)
    assert macro["ci_low"] <= inside <= macro["ci_high"]
    base = {**GOOD, "paper": "Oracle et al. 2099", "method_reported": "Oracle", "method": "oracle_gaussian",
            "dataset": "ms-cxr", "protocol": "vilouras2024", "spread_kind": "none", "spread": "", "headline": "yes"}
    write_rows(reported / "oracle2099.csv", [
        {**base, "category": "macro", "metric": "miou", "value": f"{inside}", "printed": f"{inside * 100:.1f}"},
        {**base, "category": "atelectasis", "metric": "cnr", "value": f"{outside}", "printed": f"{outside}"},
        {**base, "category": "micro", "metric": "miou", "value": "0.5", "printed": "50.0"}])
    results, out = tmp_path / "results", tmp_path / "leaderboards"
    added = bench_cli("leaderboard", "--add", run, "--results", results, "--reported", reported, "--out", out)
    assert added.code == 0, added.err
    assert (results / "ms-cxr" / "vilouras2024" / "oracle_gaussian" / "summary.csv").is_file()

    page = (out / "ms-cxr__vilouras2024.md").read_text()
    measured, published = page.split("## Reported by the papers (not measured here)")
    assert "## Measured: ranking (macro mean)" in measured
    ranking = next(ln for ln in measured.splitlines() if ln.startswith("| 1 | oracle_gaussian | 16 | "))
    assert f"{macro['mean']:.3f} [{macro['ci_low']:.3f}, {macro['ci_high']:.3f}]" in ranking
    # the paper's rows stay under the reproducing protocol, linked to the harness methods
    assert "### Vilouras et al. 2024 (JBHI), Table I" in published
    assert "| BioViL-T | [biovil_t](../adapters/biovil_t.toml) | miou | 0.290 | 0.126 | 0.302 |" in published

    lines = (out / "reproduction.md").read_text().splitlines()
    section = lines[lines.index("### Oracle ([oracle_gaussian](../adapters/oracle_gaussian.toml); ms-cxr, "
                                "vilouras2024 protocol)"):]
    assert section[2] == ("Reproduce: `bench run --method oracle_gaussian --dataset ms-cxr --protocol vilouras2024 "
                          "--data-root MIMIC_CXR_JPG --out runs/ms-cxr/vilouras2024/oracle_gaussian` then "
                          "`bench leaderboard --add runs/ms-cxr/vilouras2024/oracle_gaussian`")
    rows = {tuple(c.strip() for c in ln.strip("|").split("|"))[:2]: [c.strip() for c in ln.strip("|").split("|")]
            for ln in section[4:9] if ln.startswith("| ") and not ln.startswith("| category")}
    assert rows[("macro", "miou")] == [
        "macro", "miou", f"{inside:.3f}", f"{macro['mean']:.3f} [{macro['ci_low']:.3f}, {macro['ci_high']:.3f}]",
        f"{macro['mean'] - inside:.3f}", "yes", "measured: inside the 95% CI"]
    assert rows[("atelectasis", "cnr")] == [
        "atelectasis", "cnr", f"{outside:.3f}", f"{atel['mean']:.3f} [{atel['ci_low']:.3f}, {atel['ci_high']:.3f}]",
        f"{atel['mean'] - outside:.3f}", "no", "measured: outside the 95% CI"]
    # vilouras2024 summarises the macro mean only: a micro number is not measured, with the reason
    assert rows[("micro", "miou")][3:6] == ["—", "—", "—"]
    assert "does not report it" in rows[("micro", "miou")][6]
    text = "\n".join(lines)
    head = load_reported(reported)
    n_head = int((head["headline"] == "yes").sum())
    assert f"{n_head} headline numbers; 2 measured, 1 of them with the published value inside the 95% CI." in text
    # the papers' own rows have no committed run: not measured, and why
    assert ("Not measured: no committed run of biovil_t on ms-cxr under vilouras2024; dataset credentialed: MS-CXR "
            "and MIMIC-CXR-JPG are PhysioNet credentialed downloads.") in text
    assert "Not measured: MedRPG is not a harness method." in text
    assert "codebook not published" in text

    check = bench_cli("leaderboard", "--check", "--results", results, "--reported", reported, "--out", out)
    assert check.code == 0, check.err


def test_the_committed_reproduction_page_lists_every_headline_number() -> None:
    head = load_reported(REPO / "reported")
    head = head[head["headline"] == "yes"]
    text = (REPO / "leaderboards" / "reproduction.md").read_text()
    assert f"{len(head)} headline numbers;" in text
    sections = text[text.index("\n## "):]
    body = [ln for ln in sections.splitlines() if ln.startswith("| ") and not ln.startswith(("| category |", "| --- "))]
    assert len(body) == len(head)
    # nothing is measured on the credentialed datasets yet, and every row says so
    assert all(ln.endswith("| — | — | — | not measured |") for ln in body)
    for paper, table in head[["paper", "table"]].drop_duplicates().itertuples(index=False):
        assert f"## {paper}, {table}" in text


@pytest.mark.parametrize("text, message", [
    ("[datasets.ms_cxr]\naccess = 'x'\n", "unknown dataset 'ms_cxr' in [datasets]"),
    ("[methods.biovil-t]\nargs = ''\n", "unknown method 'biovil-t' in [methods]"),
    ("[methods.biovil]\nblockers = ''\n", "[methods.biovil] field 'blockers' is unknown or not a string"),
    ("[checkpoints]\n", "unknown table 'checkpoints'"),
    ("[methods\n", "not valid TOML"),
])
def test_a_bad_reproduction_guide_is_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    from bench.core.errors import BenchError
    from bench.leaderboard.reproduction import load_guide

    (tmp_path / "reproduction.toml").write_text(text)
    with pytest.raises(BenchError) as info:
        load_guide(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / 'reproduction.toml'}: ")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_committed_guide_names_every_headline_dataset() -> None:
    from bench.leaderboard.reproduction import load_guide

    guide = load_guide(REPO / "reported")
    head = load_reported(REPO / "reported")
    assert set(head.loc[head["headline"] == "yes", "dataset"]) <= set(guide["datasets"])


def test_a_reproduce_command_carries_the_options_its_dataset_and_method_need() -> None:
    from bench.leaderboard.reproduction import load_guide, run_command

    guide = load_guide(REPO / "reported")
    vindr = run_command("biovil", "vindr-cxr", "vilouras2025", guide)
    assert ("`bench run --method biovil --dataset vindr-cxr --protocol vilouras2025 --data-root VINDR_CXR "
            "-O lut=CHEST_IMAGENOME_LUT.toml --out runs/vindr-cxr/vilouras2025/biovil`") in vindr
    ldm = run_command("ldm_frozen", "vindr-cxr", "vilouras2025", guide)
    assert "-O lut=CHEST_IMAGENOME_LUT.toml --weights MONAI_CXR_LDM_BUNDLE --out" in ldm
    assert "-O lut" not in run_command("biovil", "ms-cxr", "vilouras2024", guide)
