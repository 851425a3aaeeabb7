"""Settings for every process of the service, read once from ``LTH_*`` environment variables.

One class serves the API, the worker and the CLI so that they cannot disagree about where the
database, the broker or the artifacts are.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from lth_core.spec.sections import MAX_ITERATIONS
from store.settings_limits import LimitSettings


class Settings(LimitSettings):
    """Every setting of the service; each field maps to ``LTH_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(env_prefix="LTH_", extra="ignore")

    data_dir: Path = Field(
        Path(".lth"),
        description="Root of everything on disk: the SQLite database (by default), the embedded "
        "broker and experiments/<id>/ artifacts.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the system of record; unset means SQLite at "
        "DATA_DIR/lth.db. PostgreSQL example: postgresql://user@host:5432/lth.",
    )
    broker_url: str | None = Field(
        None,
        description="Celery broker URL (e.g. redis://127.0.0.1:6379/0); unset means the embedded "
        "broker under DATA_DIR that needs no server.",
    )
    artifacts_url: str | None = Field(
        None,
        description="Where experiments' artifacts live: unset means DATA_DIR/experiments/ on "
        "this host; `s3://bucket/prefix` an S3-compatible object store shared by every host "
        "(then DATA_DIR is scratch only). The client takes the standard AWS settings: "
        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION (or an "
        "instance role).",
    )
    artifacts_redirect_seconds: int = Field(
        0,
        ge=0,
        le=7 * 24 * 3600,
        description="Object store only: downloads answer 307 to a presigned URL valid this "
        "many seconds instead of streaming through the API; 0 streams.",
    )
    artifacts_multipart_bytes: int = Field(
        64 << 20,
        ge=5 << 20,
        description="Object store only: objects larger than this are uploaded in parts of "
        "this size.",
    )
    artifacts_retry_seconds: float = Field(
        300.0,
        gt=0,
        description="Object store only: how long an unreachable store is retried (with "
        "backoff) before the operation fails.",
    )
    heartbeat_seconds: float = Field(
        10.0, gt=0, description="How often a running worker refreshes its claim."
    )
    heartbeat_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="A queued or running experiment without a heartbeat this long is considered "
        "orphaned and is re-enqueued by the reconciler.",
    )
    task_time_limit_seconds: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Hard time limit of one worker task; the broker's visibility timeout must "
        "be longer.",
    )
    worker_pipeline: bool = Field(
        True,
        description="Pipelined levels: a level task whose controls are held by live workers "
        "elsewhere hands on, so the next level's ticket starts at once (and the next task "
        "finishes the earlier controls). False makes every level wait for its own controls.",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads each worker task gives torch; unset keeps torch's default. "
        "Set it when a CPU worker shares its cores (one thread per task on a busy 2-core box "
        "trains several times faster than two contending ones).",
    )
    checkpoint_seconds: float = Field(
        600.0,
        ge=0,
        description="A run in training is checkpointed to the artifact store after this many "
        "seconds of training (at its next evaluation), besides the spec's "
        "training.checkpoint_every; a run interrupted resumes from its latest checkpoint on "
        "any worker. 0: by checkpoint_every only.",
    )
    db_busy_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="SQLite only: how long a writer waits for another process's write lock.",
    )

    api_host: str = Field(
        "127.0.0.1",
        description="Address the API is bound to (`lth api --host` sets it). With no API keys "
        "the API answers everyone only on a loopback address; elsewhere it refuses to start.",
    )
    api_allowed_hosts: str = Field(
        "",
        description="Comma-separated host names the API answers to besides loopback names "
        "and the address it is bound to (`*`: any). A request naming another host (DNS "
        "rebinding) is refused with 421. Bound to 0.0.0.0 or ::, empty means any.",
    )
    api_allowed_origins: str = Field(
        "",
        description="Comma-separated origins (`https://lab.example`) whose pages may write "
        "(POST, DELETE) through a browser; every other foreign Origin is refused with 403.",
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (413 above it)."
    )
    max_levels: int = Field(30, ge=0, description="Most pruning levels one experiment may ask for.")
    max_iterations: int = Field(
        250_000,
        ge=1,
        le=MAX_ITERATIONS,
        description="Most training iterations of one run (one level's ticket or control).",
    )
    max_total_iterations: int = Field(
        10_000_000,
        ge=1,
        description="Most training iterations of a whole experiment: every run of every level. "
        "The paper's VGG-19 (20 levels, one control) needs about 4.6 million.",
    )
    max_batch_size: int = Field(1024, ge=1, description="Largest training batch.")
    max_train_examples: int = Field(
        1_000_000,
        ge=1,
        description="Largest dataset.train_subset and synthetic train_size + test_size.",
    )
    max_dataset_values: int = Field(
        200_000_000,
        ge=1,
        description="Synthetic data only: examples x values per example, held in memory "
        "(CIFAR-10 is about 184 million).",
    )
    max_eval_ratio: float = Field(
        4.0,
        gt=0,
        description="Most examples evaluated (validation + test, every eval_every iterations) "
        "per training example: keeps evaluation from dominating a run. The paper's settings "
        "are at most 2.5.",
    )
    max_active_per_owner: int = Field(
        10, ge=1, description="Most queued + running experiments one owner may have (429 above)."
    )
    quota_retry_after_seconds: int = Field(
        60, ge=1, description="Retry-After sent with a 429 for the per-owner limit."
    )
    cost_note_seconds: float = Field(
        4 * 3600.0,
        gt=0,
        description="A submitted experiment whose cost estimate (from the model's size, before "
        "anything is measured) is above this many seconds of training gets a note saying so, "
        "with its iterations and levels, so a typo (150000 for 1500) is seen at once; `lth "
        "submit` asks (POST /experiments/estimate) before sending such a spec, unless --yes.",
    )
    allow_duplicate_specs: bool = Field(
        False,
        description="Accept a spec identical to one of the owner's queued, running or "
        "succeeded experiments without `?again=true` (results are deterministic, so the copy "
        "is usually waste). Off: such a submit is answered 409 duplicate_spec naming it.",
    )
    allow_dataset_root: bool = Field(
        False,
        description="Accept dataset.root (a path on the worker's machine) from API clients. Off: "
        "a remote user must not choose which server files a worker reads.",
    )

    api_max_in_flight: int = Field(
        32,
        ge=1,
        le=1024,
        description="Requests one API process works on at once; beyond it a request is "
        "answered 503 with Retry-After at once (health, readiness and event streams are "
        "counted apart). The database pool and the thread pool are sized from it.",
    )
    api_max_streams: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Event streams (GET /experiments/{id}/events) one API process keeps "
        "open at once; beyond it a new stream is answered 503 with Retry-After.",
    )
    api_retry_after_seconds: int = Field(
        1, ge=1, description="Retry-After sent with a 503 when the API is at capacity."
    )
    api_events_poll_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="How often an event stream looks at its experiment in the database.",
    )
    api_events_heartbeat_seconds: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often an idle event stream sends a comment line, so that clients and "
        "proxies see it is alive (a client that hears nothing for longer falls back to polling).",
    )

    api_events_max_seconds: float = Field(
        600.0,
        gt=0,
        description="An event stream is closed after this long; clients reconnect with "
        "Last-Event-ID and miss nothing (it bounds what one connection holds).",
    )

    @property
    def per_key_in_flight(self) -> int:
        """Requests one key may have in flight (LTH_API_MAX_IN_FLIGHT_PER_KEY, default half)."""
        return self.api_max_in_flight_per_key or max(1, self.api_max_in_flight // 2)

    @property
    def per_key_streams(self) -> int:
        """Event streams one key may hold (LTH_API_MAX_STREAMS_PER_KEY, default a quarter)."""
        return self.api_max_streams_per_key or max(1, self.api_max_streams // 4)

    @property
    def capacity(self) -> Capacity:
        """The API's concurrency limits, computed in this one place so that they agree."""
        return Capacity.for_in_flight(self.api_max_in_flight)

    @property
    def resolved_database_url(self) -> str:
        """The URL actually used: the configured one, or the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'lth.db'}"

    @property
    def experiments_dir(self) -> Path:
        """Where each experiment's artifact directory lives."""
        return self.data_dir / "experiments"


#: The standard AWS settings the object store's client reads (not LTH_ settings).
AWS_VARIABLES = frozenset(
    {
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
    }
)


#: Variables read outside Settings: `lth api --workers` (typer's envvar) and prometheus-client's
#: multiprocess folder (`lth api --workers N` sets it when unset; service.metrics).
OTHER_VARIABLES = frozenset({"LTH_API_WORKERS", "PROMETHEUS_MULTIPROC_DIR"})


def known_variables() -> frozenset[str]:
    """Every environment variable a process of the service reads: what a deployment
    (docker-compose.yml, deploy/k8s/) may set; anything else would be silently ignored."""
    settings = {f"LTH_{name.upper()}" for name in Settings.model_fields}
    return frozenset(settings) | AWS_VARIABLES | OTHER_VARIABLES


@dataclass(frozen=True)
class Capacity:
    """How many requests, threads and database connections one API process uses at most.

    Before, 64 concurrent clients stalled the API for the pool timeout (30 s) and were told the
    database was down: the 40 threads of the pool ran requests that waited for one of the 15
    connections, held by requests that had authenticated and were waiting for a thread to run
    their route in. Here ``pool_size == in_flight``: every admitted request can have its
    connection at once, whatever it waits for, so no cycle can form; the overflow is for what
    is counted apart (event-stream polls, readiness, start-up). Threads are fewer
    (at most 8): the fast reads hold their connection only inside their one thread hop, and
    with one interpreter lock more threads only contend (measured: 4 to 32 threads serve the
    same rate). A connection that still cannot be had within ``pool_timeout`` seconds means
    overload, answered 503 ``overloaded``, not a database outage.
    """

    in_flight: int
    threads: int
    pool_size: int
    max_overflow: int
    pool_timeout: float

    @classmethod
    def for_in_flight(cls, in_flight: int) -> Capacity:
        return cls(
            in_flight=in_flight,
            threads=min(in_flight, 8),
            pool_size=in_flight,
            max_overflow=max(4, in_flight // 2),
            pool_timeout=5.0,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; cached so every caller sees the same values.

    Tests change the environment and call ``get_settings.cache_clear()`` to re-read it.
    """
    return Settings()
