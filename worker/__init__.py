"""The Celery worker: thin tasks that run lth_core experiments one level at a time.

Nothing here imports torch at module level: the worker's parent process must never initialize
CUDA (forked children would inherit a broken context), so torch is imported only inside a
task, in the child process that runs it.
"""
