"""What people look at: experiments read for figures and CSV (`sources`) and the paper's
figures as Vega-Lite (`figures`). Torch-free."""
