"""Fashion-MNIST: 28x28 grey clothing images, 60,000 training and 10,000 test."""

from lth_core.registry import DatasetEntry

ENTRY = DatasetEntry(
    name="fashion_mnist",
    loader="lth_core.nn.data.mnist:load_fashion_mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    train_size=60_000,
    test_size=10_000,
)
