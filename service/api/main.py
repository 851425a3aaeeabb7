"""All routers of the API, in one place."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import artifacts, experiments, health, meta, plots, resume

api_router = APIRouter()
api_router.include_router(experiments.router)
api_router.include_router(experiments.read_router)
api_router.include_router(resume.router)
api_router.include_router(artifacts.router)
api_router.include_router(plots.router)
api_router.include_router(health.router)
api_router.include_router(meta.router)
