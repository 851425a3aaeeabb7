"""The spec's `control_options` and what the controls ask of a spec: options validated per
control (each control class declares the options it takes, lth_core.controls.base.Control),
the controls that cannot apply to a spec refused, and the control runs a level has with the
variants the options ask for (`snip.shuffle`). Torch-free: the control classes import torch
only where they compute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lth_core.registry.controls import control, draws
from lth_core.runs import run_id, variant_kind

if TYPE_CHECKING:
    from lth_core.spec.experiment_spec import ExperimentSpec

HELP = (
    "Options per control named in `controls`, e.g. "
    '{"snip": {"ablation": "shuffle"}}: a pruning-at-initialization method (snip, grasp, '
    "synflow, magnitude_init) also runs under each ablation given (shuffle: its mask "
    "shuffled within each layer; reinit: its mask from a fresh init; invert: the lowest "
    "scores kept), as runs of their own (`snip.shuffle`) reported beside the plain one."
)


def validate(cls: type, options: dict[str, Any], info: Any) -> dict[str, Any]:
    """ExperimentSpec's validator of `control_options` (fields validate in order: `controls`
    first; None there means `controls` is wrong, and its own error says so)."""
    named = info.data.get("controls")
    return options if named is None else check_options(named, options)


def check_options(named: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """`options` if every entry names a control of `named` that takes those options (a
    one-line ValueError naming what is allowed otherwise)."""
    takers = [n for n in named if control(n).options]
    for name, given in options.items():
        if name not in named:
            raise ValueError(
                f"{name!r} is not among controls {named}; options go to the controls the "
                "spec runs that take them: " + (", ".join(takers) or "none of them do")
            )
        control(name).check_options(name, given)
    return options


def check_applies(spec: ExperimentSpec) -> None:
    """A one-line ValueError for the first control that cannot apply to `spec`."""
    for name in spec.controls:
        reason = control(name).refuses(spec)
        if reason is not None:
            raise ValueError(f"controls: {name} cannot apply: {reason}")


def ablations(spec: ExperimentSpec, name: str) -> list[str]:
    """The ablations control `name` also runs under, in the order given."""
    given = spec.control_options.get(name, {}).get("ablation", [])
    return list(given) if isinstance(given, list) else [given]


def control_runs(spec: ExperimentSpec, repeats: int) -> list[str]:
    """Every control run of a level with controls: per trial, each control's draws (up to
    `repeats`: control_repeats, or the verification's paired units), then its variants'
    draws (run ids, lth_core.runs)."""
    return [
        run_id(variant_kind(kind, variant), t, r)
        for t in range(spec.trials)
        for kind in spec.controls
        for variant in (None, *ablations(spec, kind))
        for r in range(draws(kind, repeats, variant))
    ]
