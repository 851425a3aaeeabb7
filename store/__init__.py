"""Persistence shared by the API and the worker: settings, database, artifacts and the queue.

Nothing here imports torch or FastAPI, so both processes (and the CLI) can use it cheaply.
"""
