"""Prometheus metrics of the service, on their own registry, served over HTTP."""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streaming.pipeline import BatchReport

__all__ = ["Metrics"]


class Metrics:
    """The service's metrics; ``serve(port)`` exposes them at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("shelfcast_events_in", "Valid POS events stored", registry=r)
        self.duplicates = Counter("shelfcast_events_duplicate", "POS resends skipped", registry=r)
        self.quarantined = Counter(
            "shelfcast_events_quarantined", "Bad records quarantined", registry=r
        )
        self.batch_seconds = Histogram(
            "shelfcast_batch_seconds",
            "Micro-batch processing time",
            registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
        )
        self.queue_depth = Gauge(
            "shelfcast_retrain_queue_depth", "Series queued or running on Ray", registry=r
        )
        self.retrain_seconds = Histogram(
            "shelfcast_retrain_seconds",
            "Seconds of one series' retrain task",
            registry=r,
            buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.retrain_stage_seconds = Counter(
            "shelfcast_retrain_stage_seconds",
            "Seconds of finished retrains by stage: load, study, model, record (in the task), "
            "publish (the coordinator's wait for Kafka)",
            ["stage"],
            registry=r,
        )
        for stage in ("load", "study", "model", "record", "publish"):
            self.retrain_stage_seconds.labels(stage=stage)  # exported from the start
        self.handoff_seconds = Histogram(
            "shelfcast_handoff_seconds",
            "Seconds of one hand-off (news stored, due series picked and handed to Ray)",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self.submitted = Counter(
            "shelfcast_series_submitted", "Series handed to the coordinator", registry=r
        )
        self.published = Counter(
            "shelfcast_forecasts_published", "Forecasts confirmed on the topic", registry=r
        )
        self.thresholds_unreadable = Counter(
            "shelfcast_thresholds_unreadable",
            "Micro-batches that kept the last good thresholds (the file did not read)",
            registry=r,
        )
        self.drift = Histogram(
            "shelfcast_drift_ratio",
            "Live error over validation error, per update",
            registry=r,
            buckets=(0.5, 1, 1.5, 2, 3, 5, 10),
        )

    def on_batch(self, report: BatchReport) -> None:
        self.events_in.inc(report.stored)
        self.duplicates.inc(report.duplicates)
        self.quarantined.inc(report.quarantined)
        self.batch_seconds.observe(report.seconds)

    def on_handoff(self, report: dict[str, Any]) -> None:
        self.submitted.inc(report.get("submitted", 0))
        self.thresholds_unreadable.inc(report.get("thresholds_unreadable", 0))
        self.published.inc(report.get("published", 0))
        for seconds in report.get("retrain_seconds", []):
            self.retrain_seconds.observe(seconds)
        for stage, seconds in (report.get("stage_seconds") or {}).items():
            self.retrain_stage_seconds.labels(stage=stage).inc(seconds)
        if "seconds" in report:
            self.handoff_seconds.observe(report["seconds"])
        for ratio in report.get("drift_ratios", []):
            if ratio is not None:
                self.drift.observe(ratio)

    def on_coordinator(self, status: dict[str, Any]) -> None:
        self.queue_depth.set(status.get("queued", 0) + status.get("running", 0))

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        start_http_server(port, addr=host, registry=self.registry)
