"""Conv-2 (Frankle & Carbin 2019, Figure 2): 2 3x3 convs in pairs, then fc 256-256."""

from lth_core.registry.models.convnet import convnet_entry

ENTRY = convnet_entry(depth=2, learning_rate=2e-4, iterations=20_000, conv_rate=0.1)
