"""The control registry: one line per control (each control's class is its file in
lth_core/controls/, on lth_core.controls.base.Control). The spec's allowed `controls` are
these names; a pruning-at-initialization method is a control like the others."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth_core.registry import Registry
from lth_core.registry.plugins import CONTROLS_GROUP

if TYPE_CHECKING:
    from lth_core.controls.base import Control

CONTROLS: Registry[type[Control]] = Registry(
    "control",
    {
        "random_reinit": "lth_core.controls.random_reinit:RandomReinit",
        "random_prune": "lth_core.controls.random_prune:RandomPrune",
        "sign_preserving_reinit": "lth_core.controls.sign_preserving_reinit:SignPreservingReinit",
        "supermask": "lth_core.controls.supermask:Supermask",
        "supermask_same_sign": "lth_core.controls.supermask:SupermaskSameSign",
        "supermask_signed_constant": "lth_core.controls.supermask:SupermaskSignedConstant",
        "snip": "lth_core.controls.snip:Snip",
        "grasp": "lth_core.controls.grasp:GraSP",
        "synflow": "lth_core.controls.synflow:SynFlow",
        "magnitude_init": "lth_core.controls.magnitude_init:MagnitudeInit",
    },
    group=CONTROLS_GROUP,
)
#: The built-in names (plugins too: CONTROLS.names()).
CONTROL_NAMES: tuple[str, ...] = CONTROLS.builtin_names()


def control(name: str) -> Control:
    """The control called `name` (ValueError naming the known ones otherwise)."""
    return CONTROLS.get_entry(name)()


def draws(name: str, repeats: int, variant: str | None = None) -> int:
    """How many draws of control `name` (under `variant`) a level makes when `repeats` are
    asked for."""
    return repeats if control(name).variant_repeatable(variant) else 1
