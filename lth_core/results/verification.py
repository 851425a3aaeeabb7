"""The decision actually taken: which level is finally the ticket, verification included
(torch-free). The engine's results.json and the service (store.experiments, the API's
presenters) all decide here, so they cannot disagree.

Without `verify` it is the ticket rule (lth_core.results.ticket_rule) over every level. With
it, the cheap levels (patience, early-bird, fewer levels) only propose a mask: the final level,
the verification level, trains it under the paper's rule, and the rule asked about the dense
level 0 and the verification level alone (both trained under that rule) decides. Until it has
run, nothing is called a ticket; the cheap levels' own verdicts are kept for reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lth_core.results.ticket_rule import ticket_decision
from lth_core.spec.experiment_spec import verification_level


def verify_level(spec: Mapping[str, Any]) -> int | None:
    """The verification level of a spec (as JSON), or None when it does not verify."""
    return verification_level(spec.get("verify", False), spec.get("pruning", {}).get("levels", 0))


def pruned_network_only(spec: Mapping[str, Any]) -> bool:
    """Whether the levels are pruned networks compared with the dense one rather than lottery
    tickets: `finetune` and `lr_rewind` keep the trained weights instead of resetting them."""
    return spec.get("reset", {}).get("mode") in ("finetune", "lr_rewind")


def decision(spec: Mapping[str, Any], summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The decision block of results.json and the API: the rule's answer (with `verify`, the
    verification's, its comparisons under `verification`), each level's verdict and why."""
    summaries = list(summaries)
    tolerance = float(spec.get("ticket_tolerance", 0.0))
    metric = str(spec.get("ticket_metric", "early_stop"))
    not_proof = None
    if pruned_network_only(spec):
        not_proof = {
            "random_reinit": "not proof here: a reinitialized copy trained on the fine-tuning "
            "schedule starts from scratch with a short schedule; random_prune on the same "
            "schedule is the control that compares like with like"
        }
    full = ticket_decision(summaries, tolerance, metric, not_proof)
    full["decided_by"] = "rule"
    if not_proof is not None:
        full["names"] = "pruned network"
        full["note"] = (
            f"reset.mode {spec['reset']['mode']!r} keeps trained weights: the levels are pruned "
            "networks compared with the dense one, not winning tickets (no reset to theta_0); "
            "random_reinit is reported, not required (random_prune on the same schedule is the "
            "control to add)"
        )
    level = verify_level(spec)
    if level is None:
        return full
    by_level = {int(s["level"]): s for s in summaries}
    full["decided_by"] = "verification"
    for record in full["levels"]:
        if record["level"] not in (0, level):
            record["reasons"].append("cheap level: it only proposes the mask; verification decides")
    if 0 not in by_level or level not in by_level:
        full.update(
            level=None,
            verdict=None,
            reason="the verification level has not run: the cheap levels only propose a mask",
            verification=None,
        )
        return full
    verifying = ticket_decision([by_level[0], by_level[level]], tolerance, metric, not_proof)
    record = verifying["levels"][-1]
    full.update(
        level=verifying["level"],
        verdict=verifying["verdict"],
        reason=f"verification: {verifying['reason']}",
        verification=record,
    )
    return full


def final_ticket(spec: Mapping[str, Any], summaries: Iterable[Mapping[str, Any]]) -> int | None:
    """The ticket's level (None: none yet, no pruned level qualifies, or verification failed)."""
    return decision(spec, summaries)["level"]


def verified(spec: Mapping[str, Any], summaries: Iterable[Mapping[str, Any]]) -> bool | None:
    """Whether the final mask was verified a winning ticket, every comparison yes (None: no
    verification, or not run yet; False also when the verification is inconclusive)."""
    found = decision(spec, summaries)
    if found.get("verification") is None:
        return None
    return found["verdict"] == "yes"
