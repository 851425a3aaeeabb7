"""CIFAR-10: 32x32 colour images of 10 classes, 50,000 training and 10,000 test."""

from lth_core.registry import DatasetEntry

ENTRY = DatasetEntry(
    name="cifar10",
    loader="lth_core.nn.data.cifar:load_cifar10_spec",
    input_shape=(3, 32, 32),
    num_classes=10,
    train_size=50_000,
    test_size=10_000,
)
