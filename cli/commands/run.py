"""`lth run`: an IMP experiment on this machine, straight through the engine (no service)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

RUN_HELP = """Run iterative magnitude pruning from a JSON spec and save the winning tickets.

For every pruning level (level 0 is the dense network) it trains the ticket and the spec's
controls (random_reinit: same mask, fresh init; random_prune: random mask, same per-layer
sparsity), then prints per level the weights remaining, the early-stopping iteration (the
evaluation with minimum validation loss) and the test accuracy there.

Fields the spec leaves out take the paper's values for its model (Frankle & Carbin 2019):
lenet_300_100 (Adam 1.2e-3, batch 60, 50K iterations, fc 20% / output 10% per level),
conv2/conv4/conv6, vgg19 and resnet18 (SGD 0.1 with step drops, global 20%). The deep
networks (vgg19, resnet18) yield winning tickets only with a lower learning rate (0.01),
learning-rate warmup (training.warmup_iterations, e.g. 10000 for VGG-19, 20000 at lr 0.03
for ResNet) or rewinding (reset.mode "rewind" with reset.rewind_iteration k > 0).

Written to --out: spec.json, init.safetensors (theta_0), levels/NNN/mask.safetensors,
levels/NNN/runs/<run>.json (metrics and curve), levels/NNN/summary.json, results.json
(with the ticket rule's verdict per level), plots/*.png (the paper's three figures; --plots), and
ticket.safetensors (the sparsest level of the unbroken run of levels matching the dense
network on validation: its masks under mask/<name> and its initial weights under
init/<name>; trials/NNN/ holds each further trial's). Running again with the same
--out resumes at the first unfinished run and gives the same results.

Example spec:  {"model": "lenet_300_100", "dataset": {"name": "fashion_mnist"},
"training": {"iterations": 5000}, "pruning": {"levels": 5}}
"""


def register(app: typer.Typer) -> None:
    """Adds `lth run`, its help from RUN_HELP (longer than a docstring should be)."""
    app.command("run", help=RUN_HELP)(run)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set training.iterations=2000`: dotted keys, JSON values (bare words are strings)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise typer.BadParameter(f"{key}: {part} is not a section", param_hint="--set")
        node[parts[-1]] = value
    return data


def read_spec(spec_file: Path, overrides: list[str]) -> Any:
    """The spec file with `--set` overrides applied, parsed; an invalid one ends the command
    with one line per problem, each blamed on the file or on the `--set` that gave it."""
    from pydantic import ValidationError

    from lth_core.spec import parse_spec, short_budget
    from lth_core.spec.errors import problems

    try:
        data = json.loads(spec_file.read_text())
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{spec_file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{spec_file} must hold a JSON object")
    data = apply_overrides(data, overrides)
    try:
        spec = parse_spec(data)
    except ValidationError as exc:
        found = problems(exc)
        count = "1 problem" if len(found) == 1 else f"{len(found)} problems"
        lines = [f"invalid spec ({count}):"]
        for p in found:
            lines.append(f"  {p.line}  [{blame(p.loc, spec_file, overrides)}]")
        typer.secho("\n".join(lines), fg="red", err=True)
        raise typer.Exit(2) from None
    for note in short_budget.notes(data):
        typer.secho(f"note: {note}", fg="yellow", err=True)
    return spec


def print_cost_note(spec: Any, device: str) -> None:
    """The note a submit to the service would get (lth_core.results.prior, the same limit
    LTH_COST_NOTE_SECONDS), for the device class this run trains on: a typo of 150000 for
    1500 iterations is seen before hours go into it."""
    from lth_core.experiment import resolve_device
    from lth_core.registry.models.throughput import CPU, GPU
    from lth_core.results.prior import cost_note
    from store.settings import get_settings

    try:
        kind = resolve_device(device).type
    except (ValueError, RuntimeError):
        return  # the run itself says what is wrong with --device
    note = cost_note(
        spec,
        GPU if kind == "cuda" else CPU,
        get_settings().cost_note_seconds,
        remedy="stop it with Ctrl-C if that is not what you meant (the same command resumes)",
    )
    if note is not None:
        typer.secho(f"note: {note}", fg="yellow", err=True)


def blame(loc: tuple[str | int, ...], spec_file: Path, overrides: list[str]) -> str:
    """Which input a problem at `loc` came from: the last `--set` whose key covers it (or that
    it covers: a section's check over a value set there), else the file."""
    path = [str(p) for p in loc]
    for item in reversed(overrides):
        key = item.partition("=")[0].split(".")
        n = min(len(key), len(path))
        if n and key[:n] == path[:n]:
            return f"from --set {item}"
    return f"in {spec_file}"


PlotsOption = Annotated[
    str,
    typer.Option(
        help="Figures drawn to OUT/plots after the table: paper (the paper's three, and "
        "instability where measured), all (method_comparison too), none, or names "
        "separated by commas. `lth report --local OUT` draws any of them later."
    ),
]


def run(
    spec_file: Annotated[
        Path, typer.Argument(help="Experiment spec (JSON).", exists=True, dir_okay=False)
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for artifacts and metrics.")
    ] = Path("runs/latest"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    mask: Annotated[
        Path | None,
        typer.Option(help="Start from this mask (.safetensors: a level's mask or a ticket)."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec field, e.g. --set training.iterations=2000."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    plots: PlotsOption = "paper",
) -> None:
    """`lth run` (help: RUN_HELP). A failed start or a failure before any level finished
    leaves no new --out behind; an interrupt keeps it, for the same command to resume."""
    spec = read_spec(spec_file, set_ or [])
    figure_names = plot_names(plots)

    from rich.console import Console

    from cli.progress import RunProgress
    from lth_core import preflight
    from lth_core.experiment import Experiment, InitialMask
    from store.settings import get_settings

    # Everything the run reads is checked before anything is written (a failed start leaves
    # --out as it was); the data is loaded once, here.
    try:
        splits = preflight.check(spec, mask)
    except preflight.InputError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    print_cost_note(spec, device)
    console = Console(stderr=True)
    existed = out.exists()
    with RunProgress(spec, console=console, enabled=not quiet) as bar:
        try:
            experiment = Experiment(
                spec,
                out,
                device=device,
                initial_mask=InitialMask(mask, spec.mask) if mask is not None else None,
                progress=bar.update,
                splits=splits,
                repair=True,
                checkpoint_seconds=get_settings().checkpoint_seconds,
            )
            for corrupt in experiment.repaired:
                console.print(f"[yellow]{corrupt}; its run is trained again[/yellow]")
            bar.start(experiment)
            summaries = experiment.run()
            bar.finish(summaries)
        except (ValueError, RuntimeError, OSError) as exc:
            bar.stop()
            if not existed and not _has_finished_levels(out):
                import shutil

                shutil.rmtree(out, ignore_errors=True)
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            bar.stop()
            typer.secho(
                f"interrupted; run the same command again to resume from {out}",
                fg="yellow",
                err=True,
            )
            raise typer.Exit(130) from None
    show_results(spec, experiment.layout.results, summaries)
    if figure_names:
        write_plots(out, figure_names)
    typer.echo(f"artifacts in {out}")


def show_results(spec: Any, results_file: Path, summaries: Sequence[Any]) -> None:
    """The level table and the cost lines, read back from results.json so a finished run
    prints what its folder holds (the ticket rule's verdict included)."""
    from rich.console import Console

    from cli.render import cost_lines, level_table

    results = json.loads(results_file.read_text())
    Console().print(
        level_table(
            summaries,
            results.get("ticket_level"),
            title=spec.name,
            iterations=spec.training.iterations,
            decision=results.get("ticket"),
        )
    )
    for line in cost_lines(results):
        typer.echo(line)


def _has_finished_levels(out: Path) -> bool:
    """Whether a level finished in `out` (then the folder holds results worth keeping)."""
    from lth_core.storage.layout import Layout

    return bool(Layout(out).finished_levels())


#: `--plots paper`: what `lth run` has always drawn (README: the paper's three figures).
PAPER_PLOTS = ("accuracy_curves", "early_stop_iteration", "early_stop_accuracy", "instability")


def plot_names(value: str) -> tuple[str, ...]:
    """--plots as figure names (checked before anything is trained)."""
    from lth_core.report.figures import FIGURES
    from lth_core.report.instability import NAME

    known = (*FIGURES, NAME)
    if value == "paper":
        return PAPER_PLOTS
    if value == "all":
        return known
    if value == "none":
        return ()
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    for name in names:
        if name not in known:
            raise typer.BadParameter(
                f"unknown figure {name!r}; paper, all, none or of {', '.join(known)}",
                param_hint="--plots",
            )
    return names


def write_plots(out: Path, names: Sequence[str] = PAPER_PLOTS) -> None:
    """OUT/plots/*.png: the figures asked for, drawn by the one figures module after the table
    is printed (a figure that cannot be drawn is a warning: the results are already on disk)."""
    from lth_core.report import figures

    try:
        source = figures.source_from_run_dir(out)
        written = figures.write_figures([source], out / "plots", names=names)
    except Exception as exc:  # e.g. vl-convert missing on this machine
        typer.secho(f"warning: figures not written: {exc}", fg="yellow", err=True)
        return
    typer.echo(f"figures: {', '.join(str(p) for p in written)}")
