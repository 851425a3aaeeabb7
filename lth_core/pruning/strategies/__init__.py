"""Pruning strategies, one class each on `base.Strategy`; registered in
lth_core.registry.strategies."""
