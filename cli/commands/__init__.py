"""The `lth` commands, one module per group; each module's `register(app)` adds its own."""
