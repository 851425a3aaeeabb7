"""What the runs mean: level summaries and the winning-ticket rule (`summaries`), the
verification's verdict (`verification`), what an experiment costs (`cost`) and how long the
rest will take (`eta`). Torch-free (the API and the CLI read them)."""
