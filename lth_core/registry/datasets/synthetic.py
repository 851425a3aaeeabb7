"""Synthetic: class prototypes plus noise, any shape and size (dataset.synthetic says which)."""

from lth_core.registry import DatasetEntry

ENTRY = DatasetEntry(
    name="synthetic",
    loader="lth_core.nn.data.synthetic:load_synthetic",
    input_shape=None,
    num_classes=None,
    train_size=None,
    test_size=None,
)
