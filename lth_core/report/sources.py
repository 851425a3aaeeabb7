"""What the figures and the CSV read: one experiment as a `Source` (its spec, finished level
summaries and run curves), read from its artifact store, and experiments grouped into repeats
(specs differing only in seed, name or tags). Torch-free (the service imports it)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lth_core.runs import is_run_id
from lth_core.storage.json_files import get_json
from lth_core.storage.layout import KEYS, finished_levels
from lth_core.storage.store import ArtifactStore, LocalStore

# Spec keys that do not change what is trained: experiments differing only here are repeats
# (how often a run is checkpointed changes no bit of it).
REPEAT_KEYS = frozenset({"seed", "name", "tags", "training.checkpoint_every"})
CSV_FIELDS = (
    "level",
    "kind",
    "ticket",
    "weights_remaining",
    "early_stop_iteration",
    "early_stop_val_loss",
    "early_stop_val_accuracy",
    "early_stop_test_accuracy",
    "final_test_accuracy",
)


@dataclass
class Source:
    """One experiment as the figures see it: its spec, finished level summaries and curves."""

    label: str
    spec: Mapping[str, Any]
    levels: list[Mapping[str, Any]]
    curves: dict[int, dict[str, list[Mapping[str, Any]]]] = field(default_factory=dict)
    ticket_level: int | None = None


def runs_of(summary: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """kind -> headline numbers of one level summary (the ticket first, then each control)."""
    out: dict[str, Mapping[str, Any]] = {"ticket": summary}
    controls = summary.get("controls")
    if isinstance(controls, Mapping):
        out.update({str(k): v for k, v in controls.items() if isinstance(v, Mapping)})
    return out


def source_from_store(store: ArtifactStore, label: str) -> Source:
    """An experiment's artifacts: finished levels only, every run's curve (every trial's)."""
    spec = get_json(store, KEYS.spec) if store.exists(KEYS.spec) else {}
    levels, curves = [], {}
    for level in finished_levels(store):
        levels.append({**get_json(store, KEYS.summary(level)), "level": level})
        runs_dir = KEYS.runs_dir(level) + "/"
        curves[level] = {}
        for key in store.list(KEYS.runs_dir(level)):
            name = key.removeprefix(runs_dir).removesuffix(".json")
            if key.endswith(".json") and is_run_id(name):
                curves[level][name] = get_json(store, key).get("curve", [])
    ticket = (
        get_json(store, KEYS.results).get("ticket_level") if store.exists(KEYS.results) else None
    )
    return Source(label or str(spec.get("name") or ""), spec, levels, curves, ticket)


def source_from_run_dir(root: Path, label: str | None = None) -> Source:
    """An `lth run` (or bench seed) folder."""
    source = source_from_store(LocalStore(Path(root)), label or "")
    source.label = source.label or Path(root).name
    return source


def levels_csv(levels: Iterable[Mapping[str, Any]], ticket_level: int | None) -> str:
    """One row per level and run kind: the summary metrics (and any extra numbers, e.g. std)."""
    rows: list[dict[str, Any]] = []
    extra: set[str] = set()
    for summary in sorted(levels, key=lambda s: int(s["level"])):
        for kind, run in runs_of(summary).items():
            row = {"level": summary["level"], "kind": kind}
            row["ticket"] = str(kind == "ticket" and summary["level"] == ticket_level).lower()
            for key, value in run.items():
                if (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and key != "level"
                ):
                    row[key] = value
                    if key not in CSV_FIELDS:
                        extra.add(key)
            rows.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=[*CSV_FIELDS, *sorted(extra)], extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


# ----------------------------------------------------------------------------- grouping


def _flatten(spec: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = json.dumps(value, sort_keys=True) if isinstance(value, list) else value
    return out


def _identity(spec: Mapping[str, Any]) -> str:
    flat = _flatten(spec)
    return json.dumps({k: v for k, v in flat.items() if k not in REPEAT_KEYS}, sort_keys=True)


def spec_differences(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Dotted spec keys (REPEAT_KEYS aside) whose values are not the same in all specs."""
    flats = [_flatten(s) for s in specs]
    keys = sorted({k for f in flats for k in f} - REPEAT_KEYS)
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]


def _short(key: str, keys: Sequence[str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    return leaf if sum(k.rsplit(".", 1)[-1] == leaf for k in keys) == 1 else key


def _seeds(group: Sequence[Source]) -> str:
    seeds = sorted({s.spec.get("seed") for s in group if isinstance(s.spec.get("seed"), int)})
    return f" · seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else ""


def _shared_name(group: Sequence[Source]) -> str:
    """What a group's members share: their one name, else the names' common start where it
    says something (``nw-seed0``, ``nw-seed1`` -> ``nw``), else model · dataset; never one
    member's name, which would pass the group off as that member."""
    names = [str(s.spec.get("name") or s.label) for s in group]
    if len(set(names)) == 1:
        return names[0]
    shortest = min(map(len, names))
    same = next((i for i in range(shortest) if len({n[i] for n in names}) > 1), shortest)
    prefix = names[0][:same].rstrip(" -_.·")
    prefix = re.sub(r"[-_. ]*seed\d*$", "", prefix, flags=re.IGNORECASE).rstrip(" -_.·")
    if len(prefix) >= 2:
        return prefix
    spec = group[0].spec
    dataset = spec.get("dataset")
    dataset = dataset.get("name") if isinstance(dataset, Mapping) else dataset
    return " · ".join(str(x) for x in (spec.get("model"), dataset) if x) or names[0]


def group_sources(sources: Sequence[Source]) -> list[tuple[str, list[Source]]]:
    """Repeats (same spec but for the seed) together, each group labelled by what sets it apart.

    One experiment is labelled by itself; one group of several by what its members share and
    their seeds (``nw · seeds 0, 1 (n=2)``); several groups by the differing spec values
    (``learning_rate 0.1`` vs ``learning_rate 0.01``), or by what they share where nothing differs.
    """
    groups: dict[str, list[Source]] = {}
    for source in sources:
        groups.setdefault(_identity(source.spec), []).append(source)
    members = list(groups.values())
    if len(members) == 1:
        only = members[0]
        if len(only) == 1:
            return [(only[0].label, only)]
        return [(f"{_shared_name(only)}{_seeds(only)} (n={len(only)})", only)]
    keys = spec_differences([g[0].spec for g in members])[:3]
    out = []
    for group in members:
        flat = _flatten(group[0].spec)
        label = ", ".join(f"{_short(k, keys)} {_fmt(flat.get(k))}" for k in keys)
        label = label or (group[0].label if len(group) == 1 else _shared_name(group))
        out.append((f"{label} (n={len(group)})" if len(group) > 1 else label, group))
    return out
