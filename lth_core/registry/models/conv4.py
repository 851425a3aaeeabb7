"""Conv-4 (Frankle & Carbin 2019, Figure 2): 4 3x3 convs in pairs, then fc 256-256."""

from lth_core.registry.models.convnet import convnet_entry

ENTRY = convnet_entry(depth=4, learning_rate=3e-4, iterations=25_000, conv_rate=0.1)
