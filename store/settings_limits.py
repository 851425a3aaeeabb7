"""The settings added for trust under load (issue 24): queues, admission by size, storage
quotas, per-key fairness and the API's docs page. A base class of :class:`store.settings.Settings`
(so ``Settings().max_parameters_cpu`` etc.), kept apart only to keep that class readable."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024**3


class LimitSettings(BaseSettings):
    """Each field maps to ``LTH_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(env_prefix="LTH_", extra="ignore")

    queues: str = Field(
        "",
        description="Comma-separated queues the API accepts besides lth, lth.gpu and lth.cpu "
        "(and any queue a running worker consumes); any other is refused with 422.",
    )
    max_parameters_cpu: int = Field(
        100_000_000,
        ge=1,
        description="Most parameters of a model sent to a queue other than lth.gpu (the "
        "paper's largest, VGG-19, has 20 million).",
    )
    max_parameters_gpu: int = Field(
        500_000_000, ge=1, description="Most parameters of a model sent to lth.gpu."
    )
    max_activation_bytes_cpu: int = Field(
        8 * GIB,
        ge=1,
        description="Most bytes of activations kept for one training step (every stacked "
        "run counted) on a queue other than lth.gpu.",
    )
    max_activation_bytes_gpu: int = Field(
        40 * GIB, ge=1, description="The same for lth.gpu (one accelerator's memory)."
    )
    max_experiment_bytes: int = Field(
        4 * GIB,
        ge=1,
        description="Most bytes of artifacts one experiment may write (estimated at submit; "
        "the paper's VGG-19 writes about 2.3 GB).",
    )
    max_owner_bytes: int = Field(
        20 * GIB,
        ge=1,
        description="Most bytes of artifacts one owner's experiments may hold together "
        "(estimated at submit; deleting experiments frees it).",
    )
    api_max_in_flight_per_key: int = Field(
        0,
        ge=0,
        description="Requests of one key (one caller in open mode) in flight at once; beyond "
        "it 429 with Retry-After. 0: half of LTH_API_MAX_IN_FLIGHT.",
    )
    api_max_streams_per_key: int = Field(
        0,
        ge=0,
        description="Event streams one key keeps open at once; beyond it 429. 0: a quarter "
        "of LTH_API_MAX_STREAMS.",
    )
    api_docs: bool = Field(
        False,
        description="Serve the interactive API docs at /docs (Swagger UI, loaded from a CDN; "
        "off by default: a page of scripts from elsewhere on the web view's origin).",
    )
    metrics: bool = Field(
        True,
        description="Serve Prometheus metrics at GET /metrics, without an API key (aggregate "
        "counts only: no experiment ids, names or owners). False: /metrics answers 404; "
        "restrict who reaches it by network policy instead where it must stay on.",
    )
