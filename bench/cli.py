"""The `bench` command line: list, dataset, run, score, compare, view, leaderboard, weights, tune."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from .core.errors import BenchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[default: ...]" in them must show as written
    help="Score chest X-ray phrase-grounding methods under one explicit, reproducible protocol.",
)

DATA_ROOT = typer.Option(None, "--data-root", help="Dataset folder (MIMIC-CXR-JPG root for ms-cxr, the box-list folder for chestx-ray14; phantom: a folder of its PNGs to read instead of drawing them).")
OUTSIDE_ROOT = typer.Option(False, "--allow-outside-root", help="Let the dataset's table name images outside the data root (absolute paths, '..', links elsewhere); refused otherwise.")
OPTION = typer.Option([], "--option", "-O", help="Dataset option KEY=VALUE, repeatable (e.g. -O size=mimic for phantom).")
SPEC_PATH = typer.Option([], "--spec-path", help="Folder of extra specs (FOLDER/adapters/*.toml, FOLDER/protocols/*.toml), repeatable; searched before BENCH_SPEC_PATH.")


def _spec_path(folders: List[Path]) -> None:
    from .core.specs import set_spec_path

    set_spec_path(folders)


class Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer (which turns a KeyboardInterrupt into a silent exit)."""


def _resumable(command: Callable) -> Callable:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise Interrupted() from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"cxr-grounding-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output (as BENCH_QUIET=1)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="A progress line for every step, also on a terminal."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Score chest X-ray phrase-grounding methods under one explicit, reproducible protocol.

    Progress goes to stderr: a bar on a terminal, a line per tenth of the work in a log or pipe
    (SLURM, nohup). Environment: BENCH_QUIET=1 silences progress (like -q); BENCH_CACHE is the
    folder for caches [default: $XDG_CACHE_HOME/cxr-grounding-bench, else ~/.cache/cxr-grounding-bench]; HF_HOME the
    Hugging Face cache the checkpoints are read from.
    """
    from .running.progress import QUIET, VERBOSE, set_verbosity

    if quiet and verbose:
        raise BenchError("-q and -v: choose one")
    set_verbosity(QUIET if quiet else VERBOSE if verbose else None)


def _options(items: List[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"--option {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command("list")
@_resumable
def list_cmd(what: str = typer.Argument(..., help="methods, datasets or protocols"),
             spec_path: List[Path] = SPEC_PATH) -> None:
    """List the registered methods, datasets or protocols with a one-line description."""
    from .reporting.report import print_table

    _spec_path(spec_path)
    if what == "methods":
        from .methods.specs import load_method_spec, method_names

        rows = [[n, load_method_spec(n).get("kind", "method"), load_method_spec(n)["description"]] for n in method_names()]
        print_table("methods", ["name", "kind", "description"], rows, wrap_last=True)
    elif what == "datasets":
        from .datasets import dataset_class, dataset_names

        rows = [[n, dataset_class(n).description] for n in dataset_names()]
        print_table("datasets", ["name", "description"], rows, wrap_last=True)
    elif what == "protocols":
        from .evaluation.protocols import load_protocol, protocol_names

        protocols = [load_protocol(n) for n in protocol_names()]
        rows = [[p.name, f"{p.description}\nreproduces: {p.reproduces}"] for p in protocols]
        print_table("protocols", ["name", "description"], rows, wrap_last=True)
    else:
        raise BenchError(f"cannot list {what!r}: choose methods, datasets or protocols")


@app.command("dataset")
@_resumable
def dataset_cmd(
    name: str = typer.Argument(..., help="Dataset name (see `bench list datasets`), or a sample table (.csv / .jsonl)."),
    data_root: Optional[Path] = DATA_ROOT,
    option: List[str] = OPTION,
    out: Path = typer.Option(..., "--out", help="CSV file to write the sample list to (JSON lines when it ends in .jsonl)."),
    allow_outside_root: bool = OUTSIDE_ROOT,
) -> None:
    """Write the dataset's sample list: sample_id, image_path, width, height, category, phrase, boxes, split
    (and mask, points when its samples have them); CSV, or JSON lines for an --out ending in .jsonl."""
    from .core import atomic
    from .datasets import get_dataset
    from .datasets.file_dataset import table_text

    if out.is_dir():
        raise BenchError(f"--out {out} is a folder; give the CSV file to write")
    ds = get_dataset(name, data_root, _options(option), allow_outside_root)
    samples = ds.samples()
    if hasattr(ds, "materialise"):
        ds.materialise(samples)
    atomic.write_text(out, table_text(samples, jsonl=out.suffix.lower() == ".jsonl"))
    for note in ds.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{len(samples)} samples of {name} written to {out}")


@app.command("run")
@_resumable
def run_cmd(
    method: str = typer.Option(..., "--method", "-m", help="Method name (see `bench list methods`) or the path of a method spec file (.toml)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (see `bench list datasets`), or the path of a sample table (.csv / .jsonl)."),
    protocol: str = typer.Option("default", "--protocol", "-p", help="Evaluation protocol (see `bench list protocols`) or the path of a protocol spec file (.toml)."),
    data_root: Optional[Path] = DATA_ROOT,
    option: List[str] = OPTION,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory [default: runs/DATASET__METHOD__PROTOCOL]."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score only the first N samples of the protocol's set."),
    device: str = typer.Option("cpu", "--device", help="Torch device for model methods (cpu, cuda, cuda:1...)."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Real architecture, random weights (smoke tests and timing; never enters a leaderboard)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local checkpoint folder instead of the Hugging Face cache."),
    set_: List[str] = typer.Option([], "--set", help="Override a method spec field, KEY=VALUE (e.g. --set sigma=2.0), repeatable."),
    batch_size: str = typer.Option("8", "--batch-size", help="Samples per model forward, or auto: the largest that fits the free GPU memory (8 on a CPU)."),
    precision: Optional[str] = typer.Option(None, "--precision", help="fp32, fp16 or bf16: the U-Net and text encoder of a model method under autocast at that precision [default: the method spec's, fp32 unless the published code used another]."),
    seed: int = typer.Option(0, "--seed", help="Seed for methods with randomness."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Record failing samples in run.json under `skipped` and go on."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Do only part INDEX/COUNT of the samples (INDEX from 0 to COUNT-1, e.g. 0/4 ... 3/4; split by sorted sample_id). Merge by running the same command without --shard."),
    gmm_seeds: Optional[int] = typer.Option(None, "--gmm-seeds", help="Under a GMM protocol (nutzel2025, dombrowski2024): refit the mask with K seeds and report the across-seed spread of every GMM metric (summary.csv `seed_spread`) [default: the protocol's gmm_seeds]."),
    spec_path: List[Path] = SPEC_PATH,
    allow_outside_root: bool = OUTSIDE_ROOT,
) -> None:
    """Run a method over a dataset, score every heatmap and print the per-pathology table.

    Interrupted runs resume: re-run the same command and nothing already done is recomputed.

    Several processes: give each one --shard INDEX/COUNT (shards are numbered from 0, so a job array
    0..COUNT-1 maps onto them) and the same --out; then the same command without --shard merges the
    shard results into samples.csv, summary.csv and run.json, exactly as one unsharded run, without
    recomputing them. Under `accelerate launch` or `torchrun` (WORLD_SIZE > 1) each process takes the
    shard of its rank and its own GPU for --device cuda, and the main process merges when all are done.
    """
    from .running.runner import RunRequest, ShardResult, run
    from .running.shards import parse_shard

    _spec_path(spec_path)
    result = run(RunRequest(method=method, dataset=dataset, protocol=protocol, data_root=data_root,
                            dataset_options=_options(option), out=out, limit=limit, device=device,
                            random_weights=random_weights, weights=weights, overrides=list(set_),
                            skip_bad=skip_bad, batch_size=_batch_size(batch_size), seed=seed, precision=precision,
                            shard=parse_shard(shard) if shard is not None else None, gmm_seeds=gmm_seeds,
                            allow_outside_root=allow_outside_root))
    if isinstance(result, ShardResult):
        skipped = len(result.record.get("skipped", []))
        then = ("the main process merges" if result.launched
                else "merge with the same command without --shard once every shard is done")
        typer.echo(f"shard {result.shard}: {result.scored} sample(s) scored, {skipped} skipped, in {result.root}; {then}")
        return
    _report(result, f"{result.record['method']} on {dataset} ({result.record['protocol']['name']} protocol)")


def _batch_size(text: str) -> int | str:
    """--batch-size: a positive integer or "auto"."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise BenchError(f"--batch-size {text}: expected a number of samples or auto") from None


def _report(result, title: str) -> None:
    from .evaluation.protocols import Protocol
    from .reporting.report import print_summary

    protocol = Protocol.from_dict(result.record["protocol"])
    if result.record.get("random_weights"):
        title += " [random weights]"
    print_summary(title, result.summary_data, protocol.columns)
    for note in result.record.get("dataset_notes", []):
        typer.echo(f"note: {note}", err=True)
    unscored = result.record.get("unscored_files") or {}
    if unscored:
        reasons = "; ".join(f"{n} {why}" for why, n in unscored.items())
        typer.echo(f"{sum(unscored.values())} heatmap file(s) not scored: {reasons}", err=True)
    skipped = result.record.get("skipped", [])
    if skipped:
        typer.echo(f"{len(skipped)} sample(s) skipped; reasons in {result.root / 'run.json'}", err=True)
    typer.echo(f"results in {result.root}")


@app.command("score")
@_resumable
def score_cmd(
    heatmaps: Optional[Path] = typer.Option(None, "--heatmaps", help="A run directory, its heatmaps/ folder, or a folder of <sample_id>.npy maps at the original image size (NaN outside the field of view)."),
    boxes: Optional[Path] = typer.Option(None, "--boxes", help="Box predictions instead of maps: a JSONL file, one line per sample {\"sample_id\": ..., \"boxes\": [[x, y, w, h], ...] in original pixels, \"scores\": [...] (optional)}, or a box run's directory."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset the heatmaps (or boxes) belong to (a name, or the path of a sample table)."),
    protocol: str = typer.Option("default", "--protocol", "-p", help="Evaluation protocol (a name or a spec file path)."),
    data_root: Optional[Path] = DATA_ROOT,
    option: List[str] = OPTION,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for samples.csv, summary.csv and run.json."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Record failing samples and go on."),
    name: Optional[str] = typer.Option(None, "--name", help="Method name of the scored maps [default: the run's method when the maps are the ones its run.json records, else external]; needed for maps in a run's folder that are not that run's."),
    model_crop: Optional[int] = typer.Option(None, "--model-crop", help="The model's centre crop at the protocol's model_input (512 for the LDMs, 480 BioViL, 448 BioViL-T; 0: the model sees the whole image), which decides the boxes a drop_boxes protocol (vilouras2024) drops [default: the source run's method spec, else each map's NaN frame; required for original-size maps finite everywhere]."),
    gmm_seeds: Optional[int] = typer.Option(None, "--gmm-seeds", help="Under a GMM protocol (nutzel2025, dombrowski2024): refit the mask with K seeds and report the across-seed spread of every GMM metric (summary.csv `seed_spread`) [default: the protocol's gmm_seeds]."),
    spec_path: List[Path] = SPEC_PATH,
    allow_outside_root: bool = OUTSIDE_ROOT,
) -> None:
    """Score stored heatmaps under a protocol without running a model (bring your own maps, or re-score a run).

    Maps in a run's folder keep that run's method name only when they are the maps its run.json
    records (the heatmap set's digest); any other maps there are your own and need --name.
    """
    from .running.runner import score_folder

    _spec_path(spec_path)
    if (heatmaps is None) == (boxes is None):
        raise BenchError("bench score: give one of --heatmaps DIR and --boxes FILE")
    if boxes is not None:
        from .running.score_boxes import score_boxes

        if gmm_seeds is not None:
            raise BenchError("--gmm-seeds: box predictions are scored without a GMM mask")
        result = score_boxes(boxes, dataset, protocol, out, data_root, _options(option), skip_bad, name=name,
                             allow_outside_root=allow_outside_root, model_crop=model_crop)
        _report(result, f"{result.record['method']} on {dataset} ({result.record['protocol']['name']} protocol)")
        return
    result = score_folder(heatmaps, dataset, protocol, out, data_root, _options(option), skip_bad, name=name,
                          model_crop=model_crop, gmm_seeds=gmm_seeds, allow_outside_root=allow_outside_root)
    _report(result, f"{result.record['method']} on {dataset} ({result.record['protocol']['name']} protocol)")


@app.command("compare")
@_resumable
def compare_cmd(
    runs: List[Path] = typer.Argument(..., help="Two or more run directories scored under the same protocol; the first is the reference (with --protocols: one or more runs)."),
    group: str = typer.Option("macro", "--group", help="What the table and the paired test are on: macro, micro or a category name (e.g. Effusion)."),
    metric: List[str] = typer.Option([], "--metric", help="Metric columns to compare [default: all]; with --protocols: each protocol's headline metrics, shown for the protocols that have them."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the comparison tables as CSV files into this folder."),
    protocols: Optional[str] = typer.Option(None, "--protocols", help="Protocol sensitivity: re-score every run's heatmaps under each of these comma-separated protocols (names or spec file paths) and show how numbers and ranks (on --group) move; one or more runs."),
    format_: str = typer.Option("text", "--format", help="text (terminal tables), or latex (booktabs) / markdown: only the table of --group means [95% CI] with the best value in bold, for a paper (with --out also written there as table.tex / table.md)."),
    allow_modified: bool = typer.Option(False, "--allow-modified", help="Read runs whose samples.csv, summary.csv or heatmaps differ from the digests their run.json records (refused otherwise); they are labelled NAME [modified]."),
    spec_path: List[Path] = SPEC_PATH,
) -> None:
    """Compare runs on their common samples: CIs per run and paired bootstrap differences with p-values.

    Runs on different sample lists (other dataset fingerprints: boxes, phrases, splits, options) are
    refused. Runs that scored different samples of the same list (skipped samples, protocol drops)
    are compared on the samples they share, with a WARNING line on stderr saying so.

    With --protocols: the runs' stored heatmaps under each protocol, per pathology, with ranks.

    Every run's tables (and, with --protocols, its maps) are checked against the digests its
    run.json records; a file changed since the run was written is refused unless --allow-modified.
    """
    from .core import atomic
    from .reporting.compare import compare_runs
    from .reporting.report import format_ci, format_p, headline_metrics, print_table

    _spec_path(spec_path)
    if format_ not in ("text", "latex", "markdown"):
        raise BenchError(f"--format {format_!r}: choose text, latex or markdown")
    if out is not None and out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file, not a folder; choose another --out")
    if protocols is not None:
        from .reporting.sensitivity import compare_protocols

        if format_ != "text":
            raise BenchError("--format latex/markdown exports the comparison of runs under one protocol; "
                             "drop --protocols, or compare runs scored under one protocol")
        compare_protocols(runs, protocols, metric or None, group, out, allow_modified)
        return
    summaries, diffs, protocol = compare_runs(runs, group, metric or None, allow_modified=allow_modified)
    if format_ != "text":
        from .reporting.export import comparison_table

        table = comparison_table(summaries, diffs, protocol, group, format_, metric or None)
        typer.echo(table, nl=False)
        if out:
            atomic.write_text(Path(out) / "summaries.csv", summaries.to_csv(index=False, float_format="%.10g"))
            atomic.write_text(Path(out) / "differences.csv", diffs.to_csv(index=False, float_format="%.10g"))
            atomic.write_text(Path(out) / ("table.tex" if format_ == "latex" else "table.md"), table)
            typer.echo(f"tables written to {out}", err=True)
        return
    metrics = list(metric) if metric else headline_metrics(protocol.columns)
    agg = summaries[summaries["group"] == group]
    rows = []
    for run_name in dict.fromkeys(summaries["run"]):
        part = agg[agg["run"] == run_name].set_index("metric")
        rows.append([run_name] + [format_ci(part.at[m, "mean"], part.at[m, "ci_low"], part.at[m, "ci_high"]) for m in metrics])
    n = int(diffs["n"].iloc[0]) if len(diffs) else 0
    print_table(f"{group} mean on {n} common samples ({protocol.name} protocol)", ["run", *metrics], rows)
    rows = []
    for run_name in dict.fromkeys(diffs["run"]):
        part = diffs[diffs["run"] == run_name].set_index("metric")
        rows.append([f"{run_name} - {part['reference'].iloc[0]}"] +
                    [f"{format_ci(part.at[m, 'difference'], part.at[m, 'ci_low'], part.at[m, 'ci_high'])}{format_p(part.at[m, 'p_value'])}"
                     for m in metrics])
    print_table("paired bootstrap difference against the first run", ["difference", *metrics], rows)
    if out:
        atomic.write_text(Path(out) / "summaries.csv", summaries.to_csv(index=False, float_format="%.10g"))
        atomic.write_text(Path(out) / "differences.csv", diffs.to_csv(index=False, float_format="%.10g"))
        typer.echo(f"tables written to {out}")


@app.command("view")
@_resumable
def view_cmd(
    runs: List[Path] = typer.Argument(..., help="One or more run directories on the same sample list and protocol (the first is the reference of the differences)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the viewer to (index.html; an earlier viewer there is replaced)."),
    allow_modified: bool = typer.Option(False, "--allow-modified", help="Read runs whose tables or heatmaps differ from the digests their run.json records (refused otherwise); they are labelled NAME [modified]."),
) -> None:
    """Write a static HTML viewer of every scored sample: overlays, phrase, category, every metric.

    Opens from file:// without a server or network. Sorts by any metric (the first click on a
    header puts the worst first) and filters by category and phrase text; with two or more runs
    they are shown side by side on their common samples with the per-sample differences against
    the first run. Overlays are cached under BENCH_CACHE/view, so a rebuild makes none again.
    """
    from .viewer.build import build_view

    result = build_view(runs, out, allow_modified)
    typer.echo(f"{result.samples} samples of {', '.join(result.labels)} ({result.made} overlays made, "
               f"{result.overlays - result.made} cached) in {result.out / 'index.html'}")


@app.command("leaderboard")
@_resumable
def leaderboard_cmd(
    results: Path = typer.Option(Path("results"), "--results", help="Folder of committed runs (one entry per run)."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Folder the pages, tables and figures go to."),
    reported: Path = typer.Option(Path("reported"), "--reported", help="Folder of the papers' published numbers."),
    check: bool = typer.Option(False, "--check", help="Build in memory and exit 1 if --out differs from it."),
    add: Optional[Path] = typer.Option(None, "--add", help="Copy this finished run directory into --results first (checked whole before anything is copied)."),
    name: Optional[str] = typer.Option(None, "--name", help="Entry name for --add [default: the method name]."),
    replace: bool = typer.Option(False, "--replace", help="Let --add replace an entry of the same name (it says what it replaces and how the headline numbers move)."),
    allow_modified: bool = typer.Option(False, "--allow-modified", help="Read runs and entries whose samples.csv, summary.csv or heatmaps/ differ from the digests their run.json records (refused otherwise); the pages mark them NAME [modified]."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write the leaderboards as a static HTML site (sortable tables, figures, a spec page per method) into this folder."),
    view: Optional[List[Path]] = typer.Option(None, "--view", help="With --html: a run folder of a leaderboard entry (matched by its heatmap digest); the site gets its bench view viewer and links the method to it. Repeat for more runs."),
) -> None:
    """Build the leaderboards (per dataset and protocol: tables with CIs, ranks, figures) from the results folder.

    Every entry's tables are checked against the digests its run.json records; --add checks the run
    and the page it joins before it copies anything into --results.
    """
    from .leaderboard import build as leaderboard

    if view and html is None:
        raise BenchError("--view builds viewers into the site: give --html DIR too")
    if add is not None:
        from .leaderboard.results import add_run

        added = add_run(add, results, name, replace, allow_modified,
                        check=lambda entries: leaderboard.check_page(entries, results))
        if added.replaced:
            typer.echo(f"replaced: {added.replaced}")
        note = "" if added.example else " (no example map: its heatmaps or images are not at hand)"
        typer.echo(f"added {add} as {added.entry}{note}")
    built = leaderboard.build(results, reported, allow_modified)
    if html is not None:
        from .leaderboard.site import write_site

        pages = write_site(built, html, view or (), allow_modified)
        typer.echo(f"{pages} pages in {html / 'index.html'}")
    if check:
        problems = leaderboard.check(built, out)
        if problems:
            typer.echo("\n".join(problems), err=True)
            typer.echo(leaderboard.summary_line(problems), err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date with {results}")
        return
    written = leaderboard.write(built, out)
    typer.echo(f"{len(built.texts) + len(built.figures)} files in {out} ({written} written)")


@app.command("weights")
@_resumable
def weights_cmd(
    method: str = typer.Argument(..., help="Method name (see `bench list methods`) or the path of a method spec file."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local checkpoint folder (or file), as for bench run."),
    check: bool = typer.Option(False, "--check", help="Only verify what is there (no download); exit non-zero when a part is missing or is not the published model."),
    set_: List[str] = typer.Option([], "--set", help="Override a spec field as for bench run, e.g. --set weights.text.repo=OWNER/NAME or --set weights.text.local_dir=PATH."),
    spec_path: List[Path] = SPEC_PATH,
) -> None:
    """List every external model part a method reads, download the missing ones, verify their content.

    Per part: its source (repository@revision, or a folder), the files the method reads (published
    sizes where known), whether each is present, and the content checks: sha256 against the
    published value, key fields of the configuration, token ids and encoder output on a fixed
    prompt. A check whose reference value is not shipped says "unverified: no reference value
    shipped". Missing files of Hugging Face Hub repositories are downloaded into the Hugging Face
    cache (only those files, with huggingface_hub's progress bars) unless HF_HUB_OFFLINE is set or
    --check is given. A part of a withdrawn repository (SD 2 / 2.1-base) is read from a copy named
    with --set weights.<part>.repo=OWNER/NAME or a folder (--set weights.<part>.local_dir=PATH,
    or --weights DIR holding DIR/<repo name>/), and is accepted when its content checks pass.
    """
    from .methods.artifacts import describe, size_of
    from .methods.specs import apply_overrides, load_method_spec
    from .methods.weights import hf_cache_dir, hub_offline, withdrawn_hint

    _spec_path(spec_path)
    spec = apply_overrides(load_method_spec(method), list(set_))
    statuses = describe(spec, weights, fetch=not check)
    if not statuses:
        typer.echo(f"{spec['name']} reads no external checkpoint (nothing to fetch or verify)")
        return
    typer.echo(f"{spec['name']}: {len(statuses)} part(s); Hugging Face cache {hf_cache_dir()}")
    for st in statuses:
        a = st.artifact
        where = (f"folder {a.folder}" if a.folder is not None
                 else "Hugging Face cache" if a.component.on_hub() else "no folder given")
        typer.echo(f"  {a.part} ({a.what}): {a.component.repo}@{a.component.revision}, {where}: {st.state}")
        found = {f.filename: f for f in st.found}
        for spec_file in a.files:
            names = (spec_file,) if isinstance(spec_file, str) else tuple(spec_file)
            hit = next((found[n] for n in names if n in found), None)
            label = hit.filename if hit is not None else " or ".join(names)
            size = size_of(a, label)
            state = (f"present ({hit.source}{', downloaded' if hit.filename in st.fetched else ''})"
                     if hit is not None else "missing")
            typer.echo(f"      {label}{f'  [{size}]' if size else ''}: {state}")
        for c in st.checks:
            typer.echo(f"      check {c['check']}: {c['status'] if c['status'] != 'unverified' else ''}"
                       f"{': ' if c['status'] != 'unverified' else ''}{c['detail']}")
        if a.note:
            typer.echo(f"      note: {a.note}")
        if st.error:
            typer.echo(f"      {st.error}")
    bad = next((st for st in statuses if st.state == "mismatch"), None)
    if bad is not None:
        c = next(c for c in bad.checks if c["status"] == "mismatch")
        raise BenchError(f"{spec['name']} {bad.artifact.part} is not {c['content']}: {c['check']}: {c['detail']}")
    missing = [st for st in statuses if st.state == "missing"]
    if missing:
        parts = ", ".join(st.artifact.part for st in missing)
        reasons: list[str] = []
        for st in missing:
            a = st.artifact
            gone = withdrawn_hint(a.component.repo, [m.artifact.part for m in missing
                                                     if m.artifact.component.repo == a.component.repo], spec["name"])
            if st.error or gone:
                why = gone or st.error
            elif a.fetchable() and hub_offline() and not check:
                why = "HF_HUB_OFFLINE is set, so nothing was downloaded: unset it to fetch the Hub parts"
            else:
                why = a.note or ("run without --check to download" if a.fetchable() else "give its folder with --weights")
            if why not in reasons:
                reasons.append(why)
        why = "; ".join(reasons)
        raise BenchError(f"{spec['name']}: {len(missing)} of {len(statuses)} part(s) missing ({parts}); {why}")
    typer.echo(f"all {len(statuses)} part(s) present; "
               f"{sum(st.state == 'verified' for st in statuses)} verified against published values")


tune_app = typer.Typer(no_args_is_help=True, help="Train what a method needs and nobody published "
                       "(the anatomy_ldm location codebook and its anatomical priors), and CheXlocalize's "
                       "per-category thresholds of a method's maps.")
app.add_typer(tune_app, name="tune")


@tune_app.command("lut")
@_resumable
def tune_lut_cmd(
    gold: Path = typer.Option(..., "--gold", help="Chest ImaGenome gold-standard box table (CSV: image_id, bbox_name, x1, y1, x2, y2)."),
    out: Path = typer.Option(..., "--out", help="TOML file to write the anatomical prior table to."),
    coordinate_size: float = typer.Option(224.0, "--coordinate-size", help="Side of the square frame the corners are given on (without image_width/image_height columns)."),
) -> None:
    """Build the location -> Gaussian table of anatomy_ldm from anatomical boxes (mu = centre, sigma = side / 6)."""
    from .datasets.anatomy_lut import build_lut, read_imagenome_gold, save_lut

    records, counts = read_imagenome_gold(gold, coordinate_size)
    lut = build_lut(records, provenance={"source": f"Chest ImaGenome gold standard ({gold.name})", **counts})
    save_lut(lut, out)
    typer.echo(f"{len(lut.gaussians)} locations from {counts['boxes']} boxes of {counts['images']} images written to {out}")


@tune_app.command("anatomy")
@_resumable
def tune_anatomy_cmd(
    spec: str = typer.Option(..., "--spec", help="Tuning spec: a built-in name (anatomy_ldm, anatomy_phantom) or a TOML path."),
    out: Path = typer.Option(..., "--out", help="Output folder: the codebook, losses.csv, loss_curve.png, tune.json, checkpoints/ (an existing one resumes)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder of the method's checkpoints (as for bench run)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ..."),
    random_weights: bool = typer.Option(False, "--random-weights", help="The method's architecture with random weights (smoke tests, timing)."),
) -> None:
    """Tune the location-token codebook of an anatomy_ldm method; writes the file its adapter reads."""
    from .core.devices import check_device
    from .methods.ldm.anatomy.tune import CodebookTuner
    from .methods.ldm.anatomy.tune_spec import load_tune_spec

    check_device(device, allow_auto=True)
    tuner = CodebookTuner(load_tune_spec(spec), out, device=device, random_weights=random_weights, weights=weights)
    result = tuner.run()
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.final.items())
    typer.echo(f"codebook after {result.steps} steps written to {result.codebook} ({losses}; {result.seconds:.0f} s)")


@tune_app.command("thresholds")
def tune_thresholds_cmd(
    heatmaps: Path = typer.Option(..., "--heatmaps", help="The validation maps: a run directory, its heatmaps/ folder, or a folder of maps as bench score reads them."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset the maps belong to."),
    out: Path = typer.Option(..., "--out", "-o", help="Protocol file to write (.toml; its stem names the protocol)."),
    protocol: str = typer.Option("chexlocalize2022", "--protocol", "-p", help="The protocol whose mask rule is replaced by tuned thresholds."),
    split: str = typer.Option("val", "--split", help="The split to tune on."),
    data_root: Optional[Path] = DATA_ROOT,
    option: List[str] = OPTION,
) -> None:
    """CheXlocalize's per-category thresholds (m > t, t in 0.2 ... 0.8, the best mean IoU) tuned on validation maps;
    writes a protocol file for scoring the test split with them."""
    from .running.threshold_tuning import tune_threshold_protocol

    tuned, _ = tune_threshold_protocol(heatmaps, dataset, out, protocol, split, data_root, _options(option))
    table = ", ".join(f"{k} {v:g}" for k, v in tuned.seg_thresholds.items())
    typer.echo(f"thresholds {table} written to {out} (bench score --protocol {out})")


INTERRUPTED = "interrupted; run the same command again to resume"


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2; Ctrl-C says how to resume."""
    try:
        app()
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, Interrupted):
        typer.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except ImportError as exc:
        from .core.optional import missing_model_package, models_message

        package = missing_model_package(exc)
        if package is None:
            raise
        typer.echo(f"error: {models_message(package, 'this command')}", err=True)
        sys.exit(2)
    except OSError as exc:  # a path the user gave that cannot be written or read as asked
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(2)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C into a silent exit 130
            typer.echo(INTERRUPTED, err=True)
        raise


if __name__ == "__main__":
    main()
