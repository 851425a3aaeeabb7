"""Training: the one loop (`loop`) with its callbacks, the steppers that compute members'
gradients (`steps`), batch order and augmentation (`batches`), the fused optimizer and
schedule (`optim`), and assembling K members into one training (`training`, `stacked`)."""
