"""Per-example validation correctness: how a run keeps it and how two runs are paired on it
(numpy only, torch-free; the engine writes it, lth_core.results.verdicts reads the tables).

Every run's metrics carry `val_correct`, the per-example correctness of its validation set at
its early-stopping evaluation, packed to bits (5,000 examples: 625 bytes). A level summary keeps
only the tables of two runs' agreement (`paired_table`): all a paired test over the shared
examples needs.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def pack_correct(correct: np.ndarray, iteration: int) -> dict[str, Any]:
    """A run's per-example validation correctness (bools) as strict JSON: n and base64 bits."""
    bits = np.packbits(np.asarray(correct, dtype=bool))
    return {
        "iteration": int(iteration),
        "examples": int(correct.size),
        "bits": base64.b64encode(bits.tobytes()).decode(),
    }


def unpack_correct(packed: Mapping[str, Any]) -> np.ndarray:
    """The bools `pack_correct` wrote."""
    raw = np.frombuffer(base64.b64decode(packed["bits"]), dtype=np.uint8)
    return np.unpackbits(raw, count=int(packed["examples"])).astype(bool)


# Units with verification repeats: unit (trial t, repeat r) is t + r * REPEAT_STRIDE, so that
# repeat 0 of trial t is unit t, the unit a level without repeats has for that trial.
REPEAT_STRIDE = 1000


def unit_key(trial: int, repeat: int, repeated: bool) -> int:
    """The paired unit of a run: its trial, or at a level whose tickets repeat (the
    verification and the dense level 0 under `verify`) its trial and repeat, whose data order
    the ticket and each control's draw of that repeat share. Elsewhere a control's draws are
    averaged within their trial."""
    return trial + repeat * REPEAT_STRIDE if repeated else trial


def paired_table(a: np.ndarray, others: Sequence[np.ndarray]) -> list[list[int]]:
    """table[x][j]: examples where A is right (x = 1) or wrong (0) and j of `others` are right.

    With one other run this is McNemar's 2x2 table; it is all a paired comparison over the
    shared examples needs, so summaries keep it instead of the predictions."""
    hits = np.sum(np.stack([np.asarray(o, dtype=bool) for o in others]), axis=0)
    a = np.asarray(a, dtype=bool)
    k = len(others)
    return [[int(np.sum((a == x) & (hits == j))) for j in range(k + 1)] for x in (0, 1)]


def level_tables(
    runs: Mapping[str, Mapping[str, Any]], dense: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """A level summary's `paired`: per unit (trial) the level's ticket against the dense level
    0's ticket of the same unit (`dense`, None at level 0) and against each control's draws of
    that unit. `runs` and `dense` are run metrics keyed by run id (lth_core.runs)."""
    from lth_core.runs import TICKET, parse_run_id, run_id

    repeated = any(parse_run_id(n)[0] == TICKET and parse_run_id(n)[2] > 0 for n in runs)
    by_unit: dict[int, dict[str, list[np.ndarray]]] = {}
    for name, run in runs.items():
        if run.get("val_correct"):
            kind, trial, repeat = parse_run_id(name)
            by_unit.setdefault(unit_key(trial, repeat, repeated), {}).setdefault(kind, []).append(
                unpack_correct(run["val_correct"])
            )
    units: dict[str, dict[str, Any]] = {}
    examples = None
    for unit, kinds in sorted(by_unit.items()):
        if TICKET not in kinds:
            continue
        (ticket,) = kinds[TICKET]
        examples = int(ticket.size)
        tables = {k: paired_table(ticket, draws) for k, draws in kinds.items() if k != TICKET}
        trial, repeat = unit % REPEAT_STRIDE, unit // REPEAT_STRIDE
        reference = (dense or {}).get(run_id(TICKET, trial, repeat), {}).get("val_correct")
        if reference:
            tables["dense"] = paired_table(ticket, [unpack_correct(reference)])
        units[str(unit)] = tables
    return {"examples": examples, "units": units}
