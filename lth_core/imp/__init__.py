"""Iterative magnitude pruning, job by job, ordered by the façade lth_core.experiment:
`folder` (which experiment a store holds, theta_0 per trial), `masks` (each level's masks,
the pruning they use), `plans` (what each run starts from), `runner` (training a level's
runs), `finish` (summaries, results, the ticket file, diagnostics); `run_plan` (a run's
inputs and the one way a finished run is published) and `mask_source` (the mask level 0 may
start from)."""
