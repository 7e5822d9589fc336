"""Tables for papers: `bench compare --format latex|markdown` and the leaderboard's table files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SMALL_PHANTOM

from bench.reporting.export import Cell, latex_escape, mark_best, render

ROOT = Path(__file__).resolve().parents[1]
PDFLATEX = shutil.which("pdflatex")


def test_best_is_the_best_printed_value_and_lower_wins_for_distance() -> None:
    assert mark_best([0.2, 0.6754, 0.6751, float("nan")], "miou") == [False, True, True, False]  # both print 0.675
    assert mark_best([0.2, 0.6754, 0.6741], "miou") == [False, True, False]
    assert mark_best([12.0, 3.5, 3.5004], "distance") == [False, True, True]
    assert mark_best([float("nan")], "miou") == [False]


def test_latex_escapes_and_keeps_booktabs_structure() -> None:
    assert latex_escape("a_b & 50% #1 {x} ~^\\") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    tex = render([("m_1", [Cell(0.5, 0.4, 0.6, best=True), None])], ["miou", "cnr_abs"], "cap_tion 95%", "latex",
                 table_label="tab:x")
    assert tex.splitlines() == [
        r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering", r"\caption{cap\_tion 95\%}",
        r"\label{tab:x}", r"\begin{tabular}{lrr}", r"\toprule", r"method & miou & cnr\_abs \\", r"\midrule",
        r"m\_1 & \textbf{0.500 [0.400, 0.600]} & -- \\", r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    md = render([("a|b", [Cell(0.5, 0.4, 0.6, significant=True)])], ["miou"], "cap", "markdown")
    assert md == "| method | miou |\n| --- | ---: |\n| a\\|b | 0.500 [0.400, 0.600] † |\n\nTable: cap\n"


def test_an_undefined_mean_is_a_dash_in_terminal_latex_and_markdown() -> None:
    """A metric no sample defines (a region metric on points-only GT) has a NaN mean: a dash, never 'nan [nan, nan]'."""
    from bench.reporting.report import format_ci

    nan = float("nan")
    assert format_ci(nan, nan, nan) == "—"
    assert format_ci(0.25, nan, nan) == "0.250 [no CI, n<2]"
    assert format_ci(0.25, 0.1, 0.4) == "0.250 [0.100, 0.400]"
    tex = render([("m", [Cell(nan, nan, nan)])], ["cnr"], "c", "latex")
    assert r"m & --- \\" in tex
    assert "| m | — |" in render([("m", [Cell(nan, nan, nan)])], ["cnr"], "c", "markdown")


def _compile(tmp_path: Path, table: str) -> None:
    doc = tmp_path / "table.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + table +
                   "\\end{document}\n")
    out = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "table.pdf").stat().st_size > 0


def test_compare_prints_a_latex_table_that_compiles(bench_cli, tmp_path: Path) -> None:
    for method in ("oracle_gaussian", "uniform"):
        assert bench_cli("run", "-m", method, "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / method).code == 0
    r = bench_cli("compare", tmp_path / "uniform", tmp_path / "oracle_gaussian", "--format", "latex")
    assert r.code == 0, r.err
    from bench.evaluation.protocols import load_protocol

    lines = r.out.splitlines()
    assert lines[1] == r"\begin{table}[t]" and r"\toprule" in lines and r"\bottomrule" in lines
    assert f"protocol default (fingerprint {load_protocol('default').fingerprint()})" in r.out
    assert lines[lines.index(r"\midrule") + 1].startswith(r"uniform & 0.000 [0.000, 0.000] &")
    assert lines[lines.index(r"\midrule") + 2].startswith(r"oracle\_gaussian & \textbf{0.67")
    r2 = bench_cli("compare", tmp_path / "uniform", tmp_path / "oracle_gaussian", "--format", "latex",
                   "--out", tmp_path / "tables")
    assert r2.out == r.out and (tmp_path / "tables" / "table.tex").read_text() == r.out
    assert (tmp_path / "tables" / "differences.csv").is_file()
    r = bench_cli("compare", tmp_path / "uniform", tmp_path / "oracle_gaussian", "--format", "html")
    assert r.code == 2 and "--format 'html': choose text, latex or markdown" in r.err
    if PDFLATEX is None:
        pytest.skip("no pdflatex: the table's structure is checked, not its compilation")
    _compile(tmp_path, bench_cli("compare", tmp_path / "uniform", tmp_path / "oracle_gaussian",
                                 "--format", "latex").out)


@pytest.mark.skipif(PDFLATEX is None, reason="no pdflatex")
def test_the_committed_leaderboard_tables_compile(tmp_path: Path) -> None:
    tables = sorted((ROOT / "leaderboards").glob("*/table.tex"))
    assert tables
    _compile(tmp_path, "".join(t.read_text() for t in tables[:3]))
