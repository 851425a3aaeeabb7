"""An example lth plugin (examples/plugin): kept import-free, so that reading its facts
(lth_example_plugin.facts) imports no torch."""
