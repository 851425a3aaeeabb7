"""The `lth` command line: one typer app whose commands live in small modules by concern."""
