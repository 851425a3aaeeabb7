"""The Celery worker: thin tasks that run lth_core experiments one level at a time.

Nothing here imports torch at module level: the worker's parent process must never initialize
CUDA (forked children would inherit a broken context), so torch is imported only inside a
task, in the child process that runs it.

Where to start reading: ``tasks`` turns each message into a :mod:`worker.level` task (an
experiment's next level, under the experiment's lease) or a :mod:`worker.control` run (one
control run offered by a level's holder, under a lease of its own). Both build the engine with
``engine`` and hold their lease with ``heartbeat``; the level task reports through
``progress``. The rest keep processes alive around them: ``app``/``config``/``signals`` (the
Celery app, its settings, the ``reconciler`` that re-sends lost work) and
``launch``/``devices``/``supervisor`` (starting one worker per GPU and restarting it).
"""
