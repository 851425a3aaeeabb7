"""Diagnostics of finished levels, one class each on `base.Diagnostic`, registered in
lth_core.registry.diagnostics: `instability` (Frankle et al. 2020's error barrier)."""
