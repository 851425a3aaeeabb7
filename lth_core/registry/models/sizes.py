"""Torch-free sizes of the built-in models: parameters, prunable weights and the activations
one example keeps for the backward pass, from the input shape and the class count.

The API refuses a spec whose model would not fit a worker before it is queued (service
.spec_size), and it never imports torch, so the architectures' shapes are written out here a
second time; ``tests/test_security_size.py`` checks them against the real modules. A plugin's
model has no entry: its size is unknown and it is not checked.

Activations count every tensor autograd keeps per example: each convolution's and linear
layer's output, each batch norm's and activation's output, each pooling's output (the input
itself and the optimizer's state are counted elsewhere). It is an estimate of the order of
magnitude, not an allocator's exact figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSize:
    parameters: int  # every parameter: weights, biases, batch-norm scales and shifts
    prunable: int  # convolution and linear weights (what masks cover)
    activations: int  # values kept per example for the backward pass
    #: Multiply-accumulates of one example's forward pass (convolutions and linear layers):
    #: a training step costs about 6 x macs x batch floating-point operations (forward,
    #: two for the backward), what lth_core.registry.models.throughput's prior divides.
    macs: int = 0


class _Tally:
    def __init__(self) -> None:
        self.parameters = self.prunable = self.activations = self.macs = 0

    def weights(self, count: int, bias: int = 0, positions: int = 1) -> None:
        """A layer of `count` weights applied at `positions` places (a convolution's output
        pixels; 1 for a linear layer)."""
        self.parameters += count + bias
        self.prunable += count
        self.macs += count * positions

    def size(self) -> ModelSize:
        return ModelSize(self.parameters, self.prunable, self.activations, self.macs)


def lenet(input_shape: tuple[int, int, int], num_classes: int) -> ModelSize:
    t = _Tally()
    inputs = math.prod(input_shape)
    for width in (300, 100):
        t.weights(inputs * width, width)
        t.activations += 2 * width  # linear, relu
        inputs = width
    t.weights(inputs * num_classes, num_classes)
    t.activations += num_classes
    return t.size()


_CONV_WIDTHS = {2: (64,), 4: (64, 128), 6: (64, 128, 256)}


def convnet(input_shape: tuple[int, int, int], num_classes: int, depth: int) -> ModelSize:
    t = _Tally()
    channels, height, width = input_shape
    for out in _CONV_WIDTHS[depth]:
        for _ in range(2):
            t.weights(out * channels * 9, out, height * width)
            t.activations += 2 * out * height * width  # conv, relu
            channels = out
        height, width = height // 2, width // 2
        t.activations += channels * height * width  # max pool
    inputs = channels * max(height, 1) * max(width, 1)
    for units in (256, 256):
        t.weights(inputs * units, units)
        t.activations += 2 * units
        inputs = units
    t.weights(inputs * num_classes, num_classes)
    t.activations += num_classes
    return t.size()


_VGG_PLAN: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
    512, 512, 512, 512, "M", 512, 512, 512, 512,
)  # fmt: skip


def vgg19(input_shape: tuple[int, int, int], num_classes: int) -> ModelSize:
    t = _Tally()
    channels, height, width = input_shape
    for step in _VGG_PLAN:
        if step == "M":
            height, width = height // 2, width // 2
            t.activations += channels * height * width
            continue
        out = int(step)
        t.weights(out * channels * 9, 0, height * width)
        t.parameters += 2 * out  # batch norm
        t.activations += 3 * out * height * width  # conv, batch norm, relu
        channels = out
    t.weights(channels * num_classes, num_classes)
    t.activations += channels + num_classes  # pooled, logits
    return t.size()


def resnet20(input_shape: tuple[int, int, int], num_classes: int) -> ModelSize:
    t = _Tally()
    channels, height, width = input_shape
    t.weights(16 * channels * 9, 0, height * width)
    t.parameters += 32
    t.activations += 3 * 16 * height * width
    channels = 16
    for stage, out in enumerate((16, 32, 64)):
        for i in range(3):
            stride = 2 if stage > 0 and i == 0 else 1
            height, width = math.ceil(height / stride), math.ceil(width / stride)
            t.weights(out * channels * 9 + out * out * 9, 0, height * width)
            t.parameters += 4 * out
            kept = 7  # conv1, bn1, relu, conv2, bn2, sum, relu
            if stride != 1 or channels != out:
                t.weights(out * channels, 0, height * width)
                t.parameters += 2 * out
                kept += 2
            t.activations += kept * out * height * width
            channels = out
    t.weights(channels * num_classes, num_classes)
    t.activations += channels + num_classes
    return t.size()


def model_size(model: str, input_shape: tuple[int, int, int], num_classes: int) -> ModelSize | None:
    """The size of a built-in model on this input; None for a model without size facts."""
    if model == "lenet_300_100":
        return lenet(input_shape, num_classes)
    if model in ("conv2", "conv4", "conv6"):
        return convnet(input_shape, num_classes, int(model[-1]))
    if model == "vgg19":
        return vgg19(input_shape, num_classes)
    if model == "resnet18":
        return resnet20(input_shape, num_classes)
    return None
