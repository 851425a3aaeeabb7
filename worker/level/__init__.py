"""An experiment's levels, run one per ``lth.run_experiment`` task by the holder of its lease.

Why a folder: running a level is several jobs with one owner. ``task`` is the lease and the
order of a level; ``controls`` offers the level's control runs and collects them (trained here
or waited for); ``repair`` closes what a crashed predecessor left between disk and database.
"""
