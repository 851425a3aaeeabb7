"""An experiment's levels, run one per ``lth.run_experiment`` task by the holder of its lease.

Why a folder: running a level is several jobs with one owner. ``task`` is the order of a level
(claim, repair, train, complete, record, hand on); ``lease`` is every write to the experiment's
row, each made under the lease token; ``pipeline`` decides which level to train and whether to
wait for its controls; ``tickets`` offers a level's controls and trains its tickets;
``controls`` collects the controls (trained here or waited for); ``repair`` closes what a
crashed predecessor left between disk and database.
"""
