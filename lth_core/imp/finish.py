"""Finishing a level: its summary (with the diagnostics the spec asks for), the experiment's
results so far, and the winning ticket's file, written when all the level's runs are done."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from lth_core import pruning
from lth_core.diagnostics.base import LevelContext
from lth_core.imp.masks import LevelMasks
from lth_core.imp.plans import Planner
from lth_core.pruning import Mask
from lth_core.registry.diagnostics import DIAGNOSTICS
from lth_core.results import cost
from lth_core.results.paired import level_tables
from lth_core.results.summaries import level_summary
from lth_core.results.verification import decision
from lth_core.runs import TICKET, is_ticket, run_id
from lth_core.spec import ExperimentSpec
from lth_core.storage.files import get_json, put_json
from lth_core.storage.layout import KEYS, Keys, finished_levels
from lth_core.storage.store import ArtifactStore
from lth_core.storage.ticket_file import write_ticket


class LevelFinisher:
    def __init__(
        self,
        spec: ExperimentSpec,
        store: ArtifactStore,
        masks: LevelMasks,
        planner: Planner,
        parameter_count: int,
        normalization: Callable[[], dict[str, list[float]]],
    ) -> None:
        """`normalization()`: the inputs' (mean, std) a ticket's user needs (loads the data)."""
        self.spec, self.store, self.masks, self.planner = spec, store, masks, planner
        self.parameter_count, self.normalization = parameter_count, normalization

    def summaries(self) -> list[dict[str, Any]]:
        return [get_json(self.store, KEYS.summary(level)) for level in finished_levels(self.store)]

    def finish_level(self, level: int, context: LevelContext) -> dict[str, Any]:
        runs = {
            kind: get_json(self.store, KEYS.run_metrics(level, kind))
            for kind in self.planner.runs_at_level(level)
        }
        masks = [self.masks.of_trial(level, t) for t in range(self.spec.trials)]
        extras: dict[str, Any] = {
            "weights": self._weights(masks[0]),
            "mask_distance": self._mask_distance(level, masks),
        }
        extras.update(self.diagnostics(level, context))
        summary = level_summary(
            level,
            runs,
            pruning.counts(masks[0]),
            report_iterations=self.spec.training.report_iterations,
            extras=extras,
        )
        summary.update(self._cheap_fields(level, runs, extras))
        summary["paired"] = self._paired(level, runs)
        put_json(self.store, KEYS.summary(level), summary)
        self._write_results(level)
        return summary

    def diagnostics(self, level: int, context: LevelContext) -> dict[str, Any]:
        """Every diagnostic the spec asks for, measured once per level and kept beside it."""
        out = {}
        for name in DIAGNOSTICS:
            diagnostic = DIAGNOSTICS[name]()
            if not diagnostic.enabled(self.spec):
                continue
            key = KEYS.diagnostic(level, name)
            if not self.store.exists(key):
                put_json(self.store, key, diagnostic.measure(context, level))
            out[name] = get_json(self.store, key)
        return out

    def _write_results(self, finished: int) -> None:
        """results.json: every finished level, the rule's verdict over them (lth_core.results.summaries),
        and the ticket itself — lth_core.results.verification's answer, which with `verify`
        asks the same rule about level 0 and the verification level only."""
        summaries = self.summaries()
        spec_json = self.spec.model_dump(mode="json")
        decided = decision(spec_json, summaries)
        ticket_level = decided["level"]
        if ticket_level is not None:
            for trial in range(self.spec.trials):
                self.export_ticket(
                    ticket_level,
                    self.store,
                    Keys.of_trial(trial).ticket,
                    trial=trial,
                    provisional=finished < self.spec.last_level,
                )
        else:  # no winning ticket (yet): no file may say otherwise
            for trial in range(self.spec.trials):
                key = Keys.of_trial(trial).ticket
                if self.store.exists(key):
                    self.store.delete(key)
        results: dict[str, Any] = {
            "spec": spec_json,
            "ticket_level": ticket_level,
            "levels": summaries,
            "ticket": decided,
            "cost": cost.experiment_cost(
                summaries, range(self.spec.last_level + 1), self.planner.runs_at_level
            ),
            "time_to_ticket": cost.time_to_ticket(summaries, ticket_level),
        }
        if self.spec.pruning.target_weights is not None:
            results["pruning_rates"] = self.masks.rates_used()
        if self.spec.verify_rule is not None:
            found = decided.get("verification")
            results["verified"] = None if found is None else decided["verdict"] == "yes"
            results["verification_verdict"] = None if found is None else found["verdict"]
        put_json(self.store, KEYS.results, results)

    def _paired(self, level: int, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The tables the one-unit verdicts need (lth_core.results.paired.level_tables)."""
        dense = None
        if level > 0:
            names = [n for n in self.planner.runs_at_level(0) if is_ticket(n)]
            dense = {
                n: get_json(self.store, KEYS.run_metrics(0, n))
                for n in names
                if self.store.exists(KEYS.run_metrics(0, n))
            }
        return level_tables(runs, dense)

    def _cheap_fields(
        self, level: int, runs: dict[str, dict[str, Any]], extras: dict[str, Any]
    ) -> dict[str, Any]:
        """What a level adds for cheap tickets: its cost (its runs and what its diagnostics
        trained), where early-bird drew its mask, where patience stopped, whether it is the
        verification level."""
        analysis = {
            name: value["cost"]
            for name, value in extras.items()
            if isinstance(value, dict) and isinstance(value.get("cost"), dict)
        }
        out: dict[str, Any] = {"cost": cost.level_cost(runs, analysis)}
        ticket = runs[TICKET]
        for field in ("mask_drawn_at", "stopped_at"):
            if field in ticket:
                out[field] = ticket[field]
        if level == self.spec.verify_level:
            out["verification"] = True
        return out

    def export_ticket(
        self,
        level: int,
        store: ArtifactStore,
        key: str,
        *,
        trial: int = 0,
        provisional: bool = False,
    ) -> None:
        """Masks and the weights the ticket starts from, with the spec and metrics as metadata
        (`provisional`: written before the last level finished, so a later level may replace
        it; the metadata says so and the API serves it only when asked for as provisional).

        `init/<name>` holds every state-dict entry unmasked (theta_0, or theta_k when rewinding);
        multiply the weights named in `mask/<name>` by their mask to get the ticket itself.
        """
        plan = self.planner.plan(level, run_id(TICKET, trial))
        summary = get_json(self.store, KEYS.summary(level))
        metadata = {
            "level": str(level),
            "start_iteration": str(plan.start_iteration),
            "spec": self.spec.model_dump_json(),
            # The level's numbers; its cost (wall seconds) is the experiment's, not the ticket's.
            "metrics": json.dumps({k: v for k, v in summary.items() if k != "cost"}),
            # What a user needs to use the ticket in their own code (lth_core.tickets): the
            # registry's model name and the inputs' normalization, (x - mean) / std.
            "model": self.spec.model,
            "dataset": self.spec.dataset.name,
            "normalization": json.dumps(self.normalization()),
            "provisional": "true" if provisional else "false",
        }
        if trial:
            metadata["trial"] = str(trial)
        write_ticket(store, key, plan.mask, plan.start, metadata)

    def _weights(self, mask: Mask) -> dict[str, Any]:
        """Weights remaining: of the prunable weights (what `weights_remaining` counts), of
        all parameters (biases, batch norm and excluded layers included), and per layer."""
        pruned = sum(m.numel() - int(m.sum()) for m in mask.values())
        return {
            "of_prunable": pruning.fraction_remaining(mask),
            "of_all": (self.parameter_count - pruned) / self.parameter_count,
            "layers": {n: int(m.sum()) / m.numel() for n, m in mask.items()},
        }

    def _mask_distance(self, level: int, masks: Sequence[Mask]) -> dict[str, Any] | None:
        """Normalized Hamming distance to the previous level's mask, per layer and overall
        (mean over trials; each trial's overall distance under `trials`). None at level 0."""
        if level == 0:
            return None
        per_trial = [
            pruning.hamming(self.masks.of_trial(level - 1, t), masks[t])
            for t in range(self.spec.trials)
        ]
        n = len(per_trial)
        return {
            "to_level": level - 1,
            "overall": sum(d["overall"] for d in per_trial) / n,
            "layers": {
                name: sum(d["layers"][name] for d in per_trial) / n
                for name in per_trial[0]["layers"]
            },
            "trials": [d["overall"] for d in per_trial],
        }
