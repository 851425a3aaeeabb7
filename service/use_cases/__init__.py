"""What the API does, apart from how it is asked: the routes parse a request and shape the
answer, a use case holds the logic between (FastAPI-template style: thin routes)."""
