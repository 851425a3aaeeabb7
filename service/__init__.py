"""The REST API: FastAPI app, routers, schemas and error handling. Never imports torch."""
