"""Prometheus metrics of one server (its own registry, so that several apps can live in one process)."""

from __future__ import annotations

import time
from collections.abc import Collection

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "diffutron_requests",
            "HTTP requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "diffutron_request_seconds",
            "Time from request to the end of its response",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "diffutron_queue_depth", "Requests waiting for the model worker", registry=self.registry
        )
        self.batch_rows = Histogram(
            "diffutron_batch_rows",
            "Rows (answers) decoded together in one batch",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_calls = Counter("diffutron_model_calls", "Forward passes of the model", registry=self.registry)
        self.dropped_rows = Counter(
            "diffutron_dropped_rows",
            "Answers dropped before the end, by reason (client_left, timeout, shutdown)",
            ["reason"],
            registry=self.registry,
        )
        self.generated_tokens = Counter(
            "diffutron_generated_tokens", "Tokens of the answers sent", registry=self.registry
        )

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: count every HTTP response by endpoint and status, and time it to its last byte.

    Requests are counted under their path when it is one of `endpoints` (a model's page under
    /v1/models), else under `other`.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = (
            scope["path"] if scope["path"] in self.endpoints or scope["path"].startswith("/v1/models/") else "other"
        )
        endpoint = "/v1/models" if endpoint.startswith("/v1/models/") else endpoint
        status = 500
        start = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
