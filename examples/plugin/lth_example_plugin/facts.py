"""What the API may know of the plugin without importing torch: plain data, no imports.

Every key is optional; a model or dataset without facts works through its callable alone
(then a spec gives the model's dataset, training and pruning sections itself, and the API
cannot bound the dataset's size).
"""

TINY_CNN = {
    "description": "two 3x3 convs, a max-pool, fc 32, output",
    "layer_kinds": ["conv", "fc", "output"],
    # Spec sections filled in under the user's, as a built-in model's paper defaults are.
    "paper_defaults": {
        "dataset": {"name": "blobs", "validation_size": 100},
        "training": {
            "optimizer": "adam",
            "learning_rate": 0.003,
            "batch_size": 50,
            "iterations": 200,
            "eval_every": 50,
        },
        "pruning": {"strategy": "layerwise", "rates": {"conv": 0.1, "fc": 0.2, "output": 0.1}},
    },
}

BLOBS = {
    "description": "4 classes of 3x8x8 noisy prototypes, generated from the seed",
    "input_shape": [3, 8, 8],
    "num_classes": 4,
    "train_size": 600,
    "test_size": 200,
    "normalization": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}
