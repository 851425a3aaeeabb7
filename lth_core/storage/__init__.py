"""Where artifacts live and how they are named: the artifact store, the layout's keys, the
file formats. `store` and `layout` are torch-free (the API reads them); `files` and `tickets`
import torch."""
