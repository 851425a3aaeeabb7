"""A level's control runs, trained under a lease of their own by whichever worker claims them.

Why a folder apart from the level task: a control run is the one piece of an experiment that
several workers share. The level's holder offers them (``worker.level.controls``), any worker
may train one (``offered``: the body of a ``lth.run_control`` message), and both go through the
same claim, heartbeat and staging (``run``, ``staging``), so the rule that a run's metrics file
is written by one process at a time lives here once.
"""
