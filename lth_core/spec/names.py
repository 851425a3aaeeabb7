"""The spec's registry names (model, dataset, controls, pruning strategy): a built-in's or an
installed plugin's, checked when a spec is validated, not fixed when the module loads.

An unknown name is a ``literal_error`` listing every allowed name, so lth_core.spec.errors
words it as for any other choice (with "did you mean" over built-ins and plugins alike). The
JSON schema names the built-ins only: it must not depend on what one server has installed
(GET /registry lists that). Torch-free.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from lth_core.registry import Registry
from lth_core.registry.controls import CONTROLS
from lth_core.registry.datasets import DATASETS
from lth_core.registry.models import MODELS
from lth_core.registry.strategies import STRATEGIES


def expected(names: tuple[str, ...]) -> str:
    """pydantic's wording of a Literal's choices: ``'a', 'b' or 'c'``."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _checked(registry: Registry[object]) -> AfterValidator:
    def check(name: str) -> str:
        names = registry.names()
        if name not in names:
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}", {"expected": expected(names)}
            )
        return name

    return AfterValidator(check)


def _schema(registry: Registry[object], what: str) -> WithJsonSchema:
    builtins = ", ".join(registry.builtin_names())
    return WithJsonSchema(
        {
            "type": "string",
            "description": f"A built-in {what} ({builtins}) or one an installed plugin adds "
            "(GET /registry lists them).",
        }
    )


ModelName = Annotated[str, _checked(MODELS), _schema(MODELS, "model")]
DatasetName = Annotated[str, _checked(DATASETS), _schema(DATASETS, "dataset")]
ControlName = Annotated[str, _checked(CONTROLS), _schema(CONTROLS, "control")]
StrategyName = Annotated[str, _checked(STRATEGIES), _schema(STRATEGIES, "pruning strategy")]


def plugin_packages(model: str, dataset: str, controls: list[str], strategy: str) -> dict[str, str]:
    """``{"model:NAME": "package==version", ...}`` for the names a spec uses that plugins
    provide (the spec's `plugins`, which a worker reads to name what it lacks)."""
    used = [
        ("model", MODELS, [model]),
        ("dataset", DATASETS, [dataset]),
        ("control", CONTROLS, controls),
        ("strategy", STRATEGIES, [strategy]),
    ]
    return {
        f"{what}:{name}": plugin.requirement
        for what, registry, names in used
        for name in names
        if (plugin := registry.origin(name)) is not None
    }


def missing_plugins(data: object) -> str | None:
    """For a stored spec (JSON) this environment cannot parse: the plugin names it uses that
    are not installed here and the packages its `plugins` record for them, as one line
    (None: nothing missing)."""
    if not isinstance(data, dict):
        return None
    dataset = data.get("dataset") if isinstance(data.get("dataset"), dict) else {}
    pruning = data.get("pruning") if isinstance(data.get("pruning"), dict) else {}
    controls = data.get("controls") if isinstance(data.get("controls"), list) else []
    used = [
        ("model", MODELS, [data.get("model")]),
        ("dataset", DATASETS, [dataset.get("name")]),
        ("control", CONTROLS, controls),
        ("strategy", STRATEGIES, [pruning.get("strategy")]),
    ]
    recorded = data.get("plugins") if isinstance(data.get("plugins"), dict) else {}
    missing = [
        f"{what} {name!r} ("
        + (
            f"package {recorded[key]}"
            if key in recorded
            else f"no package recorded; entry-point group {registry.group}"
        )
        + ")"
        for what, registry, names in used
        for name in names
        if isinstance(name, str) and name not in registry and (key := f"{what}:{name}")
    ]
    if not missing:
        return None
    return (
        f"{'; '.join(missing)}: not installed here; install the plugin package into this "
        "environment (the API's, the workers' and the CLI's alike) and resume the experiment"
    )
