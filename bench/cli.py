"""The `bench` command line: list, dataset, run, score, compare, leaderboard, tune."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .core.errors import BenchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Score chest X-ray phrase-grounding methods under one explicit, reproducible protocol.",
)

DATA_ROOT = typer.Option(None, "--data-root", help="Dataset folder (MIMIC-CXR-JPG root for ms-cxr, the box-list folder for chestx-ray14; phantom: image cache).")
OPTION = typer.Option([], "--option", "-O", help="Dataset option KEY=VALUE, repeatable (e.g. -O size=mimic for phantom).")


def _options(items: List[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise BenchError(f"--option {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@app.command("list")
def list_cmd(what: str = typer.Argument(..., help="methods, datasets or protocols")) -> None:
    """List the registered methods, datasets or protocols with a one-line description."""
    from .reporting.report import print_table

    if what == "methods":
        from .methods.specs import load_method_spec, method_names

        rows = [[n, load_method_spec(n).get("kind", "method"), load_method_spec(n)["description"]] for n in method_names()]
        print_table("methods", ["name", "kind", "description"], rows, wrap_last=True)
    elif what == "datasets":
        from .datasets import DATASETS, dataset_class

        rows = [[n, dataset_class(n).description] for n in sorted(DATASETS)]
        print_table("datasets", ["name", "description"], rows, wrap_last=True)
    elif what == "protocols":
        from .evaluation.protocols import load_protocol, protocol_names

        protocols = [load_protocol(n) for n in protocol_names()]
        rows = [[p.name, f"{p.description}\nreproduces: {p.reproduces}"] for p in protocols]
        print_table("protocols", ["name", "description"], rows, wrap_last=True)
    else:
        raise BenchError(f"cannot list {what!r}: choose methods, datasets or protocols")


@app.command("dataset")
def dataset_cmd(
    name: str = typer.Argument(..., help="Dataset name (see `bench list datasets`)."),
    data_root: Optional[Path] = DATA_ROOT,
    option: List[str] = OPTION,
    out: Path = typer.Option(..., "--out", help="CSV file to write the sample list to."),
) -> None:
    """Write the dataset's sample list: sample_id, image_path, width, height, category, phrase, boxes, split."""
    import pandas as pd

    from .core import atomic
    from .datasets import get_dataset

    ds = get_dataset(name, data_root, _options(option))
    samples = ds.samples()
    if hasattr(ds, "materialise"):
        ds.materialise(samples)
    table = pd.DataFrame([{"sample_id": s.sample_id, "image_path": s.image_path, "width": s.width, "height": s.height,
                           "category": s.category, "phrase": s.phrase, "boxes": s.boxes_json(), "split": s.split}
                          for s in samples])
    atomic.write_text(out, table.to_csv(index=False))
    typer.echo(f"{len(samples)} samples of {name} written to {out}")


@app.command("run")
def run_cmd(
    method: str = typer.Option(..., "--method", "-m", help="Method name (see `bench list methods`)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (see `bench list datasets`)."),
    protocol: str = typer.Option("default", "--protocol", "-p", help="Evaluation protocol (see `bench list protocols`)."),
    data_root: Optional[Path] = DATA_ROOT,
    option: List[str] = OPTION,
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory [default: runs/DATASET__METHOD__PROTOCOL]."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score only the first N samples of the protocol's set."),
    device: str = typer.Option("cpu", "--device", help="Torch device for model methods (cpu, cuda, cuda:1...)."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Real architecture, random weights (smoke tests and timing; never enters a leaderboard)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Local checkpoint folder instead of the Hugging Face cache."),
    set_: List[str] = typer.Option([], "--set", help="Override a method spec field, KEY=VALUE (e.g. --set sigma=2.0), repeatable."),
    batch_size: int = typer.Option(8, "--batch-size", help="Samples per model forward."),
    seed: int = typer.Option(0, "--seed", help="Seed for methods with randomness."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Record failing samples in run.json under `skipped` and go on."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Do only part INDEX/COUNT of the samples (INDEX from 0 to COUNT-1, e.g. 0/4 ... 3/4; split by sorted sample_id). Merge by running the same command without --shard."),
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

    result = run(RunRequest(method=method, dataset=dataset, protocol=protocol, data_root=data_root,
                            dataset_options=_options(option), out=out, limit=limit, device=device,
                            random_weights=random_weights, weights=weights, overrides=list(set_),
                            skip_bad=skip_bad, batch_size=batch_size, seed=seed,
                            shard=parse_shard(shard) if shard is not None else None))
    if isinstance(result, ShardResult):
        skipped = len(result.record.get("skipped", []))
        then = ("the main process merges" if result.launched
                else "merge with the same command without --shard once every shard is done")
        typer.echo(f"shard {result.shard}: {result.scored} sample(s) scored, {skipped} skipped, in {result.root}; {then}")
        return
    _report(result, f"{method} on {dataset} ({protocol} protocol)")


def _report(result, title: str) -> None:
    from .evaluation.protocols import Protocol
    from .reporting.report import print_summary

    protocol = Protocol.from_dict(result.record["protocol"])
    if result.record.get("random_weights"):
        title += " [random weights]"
    print_summary(title, result.summary, protocol.columns)
    skipped = result.record.get("skipped", [])
    if skipped:
        typer.echo(f"{len(skipped)} sample(s) skipped; reasons in {result.root / 'run.json'}", err=True)
    typer.echo(f"results in {result.root}")


@app.command("score")
def score_cmd(
    heatmaps: Path = typer.Option(..., "--heatmaps", help="A run directory, its heatmaps/ folder, or a folder of <sample_id>.npy maps at the original image size (NaN outside the field of view)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset the heatmaps belong to."),
    protocol: str = typer.Option("default", "--protocol", "-p", help="Evaluation protocol."),
    data_root: Optional[Path] = DATA_ROOT,
    option: List[str] = OPTION,
    out: Path = typer.Option(..., "--out", "-o", help="Directory for samples.csv, summary.csv and run.json."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Record failing samples and go on."),
) -> None:
    """Score stored heatmaps under a protocol without running a model (bring your own maps, or re-score a run)."""
    from .running.runner import score_folder

    result = score_folder(heatmaps, dataset, protocol, out, data_root, _options(option), skip_bad)
    _report(result, f"{result.record['method']} on {dataset} ({protocol} protocol)")


@app.command("compare")
def compare_cmd(
    runs: List[Path] = typer.Argument(..., help="Two or more run directories scored under the same protocol; the first is the reference (with --protocols: one or more runs)."),
    group: str = typer.Option("macro", "--group", help="Aggregate the paired test is on: macro, micro or a category name... (macro/micro)."),
    metric: List[str] = typer.Option([], "--metric", help="Metric columns to compare [default: all]."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the comparison tables as CSV files into this folder."),
    protocols: Optional[str] = typer.Option(None, "--protocols", help="Protocol sensitivity: re-score every run's heatmaps under each of these comma-separated protocols and show how numbers and ranks (on --group) move; one or more runs."),
) -> None:
    """Compare runs on their common samples: CIs per run and paired bootstrap differences with p-values.

    With --protocols: the runs' stored heatmaps under each protocol, per pathology, with ranks.
    """
    from .core import atomic
    from .reporting.compare import compare_runs
    from .reporting.report import format_ci, headline_metrics, print_table

    if protocols is not None:
        from .reporting.sensitivity import compare_protocols

        compare_protocols(runs, protocols, metric or None, group, out)
        return
    if group not in ("macro", "micro"):
        raise BenchError(f"--group {group!r}: choose macro or micro")
    summaries, diffs, protocol = compare_runs(runs, group, metric or None)
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
                    [f"{format_ci(part.at[m, 'difference'], part.at[m, 'ci_low'], part.at[m, 'ci_high'])} p={part.at[m, 'p_value']:.4f}"
                     for m in metrics])
    print_table("paired bootstrap difference against the first run", ["difference", *metrics], rows)
    if out:
        atomic.write_text(Path(out) / "summaries.csv", summaries.to_csv(index=False, float_format="%.10g"))
        atomic.write_text(Path(out) / "differences.csv", diffs.to_csv(index=False, float_format="%.10g"))
        typer.echo(f"tables written to {out}")


@app.command("leaderboard")
def leaderboard_cmd(
    results: Path = typer.Option(Path("results"), "--results", help="Folder of committed runs (one entry per run)."),
    out: Path = typer.Option(Path("leaderboards"), "--out", help="Folder the pages, tables and figures go to."),
    reported: Path = typer.Option(Path("reported"), "--reported", help="Folder of the papers' published numbers."),
    check: bool = typer.Option(False, "--check", help="Build in memory and exit 1 if --out differs from it."),
    add: Optional[Path] = typer.Option(None, "--add", help="Copy this finished run directory into --results first."),
    name: Optional[str] = typer.Option(None, "--name", help="Entry name for --add [default: the method name]."),
) -> None:
    """Build the leaderboards (per dataset and protocol: tables with CIs, ranks, figures) from the results folder."""
    from .leaderboard import build as leaderboard

    if add is not None:
        from .leaderboard.results import add_run

        entry = add_run(add, results, name)
        note = "" if (entry / "example.npz").is_file() else " (no example map: its heatmaps or images are not at hand)"
        typer.echo(f"added {add} as {entry}{note}")
    built = leaderboard.build(results, reported)
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


tune_app = typer.Typer(no_args_is_help=True, help="Train what a method needs and nobody published "
                       "(the anatomy_ldm location codebook and its anatomical priors).")
app.add_typer(tune_app, name="tune")


@tune_app.command("lut")
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
def tune_anatomy_cmd(
    spec: str = typer.Option(..., "--spec", help="Tuning spec: a built-in name (anatomy_ldm, anatomy_phantom) or a TOML path."),
    out: Path = typer.Option(..., "--out", help="Output folder: the codebook, losses.csv, loss_curve.png, tune.json, checkpoints/ (an existing one resumes)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Folder of the method's checkpoints (as for bench run)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:1, ..."),
    random_weights: bool = typer.Option(False, "--random-weights", help="The method's architecture with random weights (smoke tests, timing)."),
) -> None:
    """Tune the location-token codebook of an anatomy_ldm method; writes the file its adapter reads."""
    from .methods.ldm.anatomy_tune import CodebookTuner
    from .methods.ldm.tune_spec import load_tune_spec

    tuner = CodebookTuner(load_tune_spec(spec), out, device=device, random_weights=random_weights, weights=weights)
    result = tuner.run()
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.final.items())
    typer.echo(f"codebook after {result.steps} steps written to {result.codebook} ({losses}; {result.seconds:.0f} s)")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; run the same command again to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
