"""The networks (`models`) and data (`data`) the registries name."""
