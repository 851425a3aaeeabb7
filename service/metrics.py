"""Prometheus metrics: ``GET /metrics`` in the text format (0.0.4), for any Prometheus.

Two kinds of series, rendered together:

- **this process's HTTP traffic**, measured by prometheus-fastapi-instrumentator's middleware
  (outermost, so it also sees what admission sheds): ``http_requests_total`` and the
  ``http_request_duration_seconds`` histogram by route template, method and exact status;
  ``lth_api_shed_requests_total`` by reason (admission's 503 ``overloaded``, 429
  ``too_many_in_flight`` / ``too_many_streams``) and ``lth_api_event_streams_open``.
  With ``uvicorn --workers N`` (``lth api --workers N``) each process writes them to files
  under ``PROMETHEUS_MULTIPROC_DIR`` and any process renders all of them summed
  (prometheus-client's multiprocess mode; ``lth api`` sets the folder up).
- **the service's own state**, read from the database at each scrape
  (:mod:`store.metrics_reads`; the same from any process): experiments by status, queued
  experiments and the oldest one's age per queue, the broker's messages per queue (what
  KEDA scales on), live consumers per queue, runs in flight, the stalest claim's heartbeat
  age, and each worker's iterations trained and iterations per second. Workers push theirs
  through the database (``worker_stats``) rather than serve a port: a GPU worker behind NAT
  or scaled to zero cannot be scraped, and the database is the system of record every
  process already reaches.

``/metrics`` needs no API key (a scraper has none; the series carry no ids, names or
owners), is never shed by admission (a scrape must see an overloaded API), and is off with
``LTH_METRICS=false`` (then 404).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_fastapi_instrumentator import Instrumentator
from prometheus_fastapi_instrumentator import metrics as http_metrics

from store import broker
from store.db import get_engine, read_connection
from store.metrics_reads import MetricsSnapshot, read_snapshot
from store.settings import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: Request latency buckets (seconds): reads take milliseconds, downloads and streams longer.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 600.0)


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class ApiMetrics:
    """This process's series; the app keeps one (``app.state.metrics``)."""

    def __init__(self, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.shed = Counter(
            "lth_api_shed_requests",
            "Requests refused by admission before any work: 503 overloaded (the process's "
            "limit), 429 too_many_in_flight / too_many_streams (one caller's share).",
            ["reason", "status"],
            registry=self.registry,
        )
        self.streams = Gauge(
            "lth_api_event_streams_open",
            "Event streams (GET /experiments/{id}/events) open now.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.service = CollectorRegistry(auto_describe=False)
        self.service.register(ServiceCollector(settings))

    def instrument(self, app: FastAPI) -> None:
        """Adds the HTTP middleware; call after every other middleware (it goes outermost)."""
        instrumentator = Instrumentator(
            should_group_status_codes=False,
            excluded_handlers=["^/metrics$"],
            registry=self.registry,
        )
        instrumentator.add(
            http_metrics.requests(should_include_status=True, registry=self.registry),
            http_metrics.latency(
                should_include_status=True, buckets=BUCKETS, registry=self.registry
            ),
        )
        instrumentator.instrument(app)

    def render(self) -> bytes:
        """Every series, in the text format."""
        if multiprocess_mode():
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            http = generate_latest(merged)
        else:
            http = generate_latest(self.registry)
        return http + generate_latest(self.service)

    @staticmethod
    def process_exits() -> None:
        """Drops this process's live gauges from the shared folder (multiprocess mode)."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())


class ServiceCollector:
    """The ``lth_`` series read from the database (and the broker) at each scrape."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        try:
            with read_connection(get_engine(self.settings)) as connection:
                snapshot = read_snapshot(
                    connection, heartbeat_timeout_seconds=self.settings.heartbeat_timeout_seconds
                )
        except Exception as exc:
            log.warning("metrics: database unreachable: %s", exc)
            yield _gauge("lth_database_up", "1 if the database answered this scrape.", 0)
            return
        yield _gauge("lth_database_up", "1 if the database answered this scrape.", 1)
        from service.consumers import configured_queues

        queues = list(
            dict.fromkeys(
                [*configured_queues(self.settings), *snapshot.queued, *snapshot.consumers]
            )
        )
        for name in queues:  # a queue nobody waits in or consumes is a 0, not a gap
            snapshot.queued.setdefault(name, 0)
            snapshot.consumers.setdefault(name, 0)
        yield from snapshot_families(snapshot)
        yield from self._broker(queues)

    def _broker(self, queues: list[str]) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "lth_queue_messages",
            "Messages waiting in the broker per queue (the Redis list's length: what KEDA "
            "scales GPU workers on); next levels and offered controls included.",
            labels=["queue"],
        )
        try:
            for name, length in broker.queue_lengths(self.settings, queues).items():
                family.add_metric([name], length)
        except Exception as exc:
            log.warning("metrics: broker unreachable: %s", exc)
            yield _gauge("lth_broker_up", "1 if the broker answered this scrape.", 0)
            return
        yield _gauge("lth_broker_up", "1 if the broker answered this scrape.", 1)
        yield family


def snapshot_families(snapshot: MetricsSnapshot) -> Iterator[Metric]:
    """The database's numbers as metric families."""
    yield _labelled("lth_experiments", "Experiments by status.", "status", snapshot.experiments)
    yield _labelled(
        "lth_queue_experiments",
        "Experiments waiting for their first worker, per queue.",
        "queue",
        snapshot.queued,
    )
    yield _labelled(
        "lth_queue_oldest_seconds",
        "Age of the oldest experiment waiting for its first worker, per queue.",
        "queue",
        snapshot.oldest_queued_seconds,
    )
    yield _labelled(
        "lth_queue_consumers", "Live workers consuming each queue.", "queue", snapshot.consumers
    )
    yield _labelled(
        "lth_runs_in_flight",
        "Runs training now with a live heartbeat: level (an experiment's holder) or control "
        "(a control run offered to another worker).",
        "kind",
        snapshot.runs_in_flight,
    )
    yield _gauge(
        "lth_claim_heartbeat_oldest_age_seconds",
        "Seconds since the stalest running claim (experiment or control run) beat; above "
        "LTH_HEARTBEAT_TIMEOUT_SECONDS it is orphaned and the reconciler re-sends it. 0 if "
        "nothing runs.",
        snapshot.oldest_heartbeat_seconds,
    )
    trained = CounterMetricFamily(
        "lth_iterations_trained",
        "Training iterations each worker trained (a stacked level's members each counted), "
        "as the workers wrote them to the database.",
        labels=["worker"],
    )
    for node, count in sorted(snapshot.iterations.items()):
        trained.add_metric([node], count)
    yield trained
    yield _labelled(
        "lth_worker_iterations_per_second",
        "Each live worker's training speed over its last interval (0 between tasks).",
        "worker",
        snapshot.iterations_per_second,
    )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _labelled(name: str, doc: str, label: str, values: dict[str, Any]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family
