"""Counters the pipeline bumps as plain integers, exposed by prometheus-client.

The hot path only adds to a `collections.Counter`; prometheus-client reads
every counter and gauge when /metrics is scraped, so measuring costs the
receive path no locks and no per-line calls into the client library.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[str, ...]


@dataclass(slots=True)
class _Counter:
    name: str
    doc: str
    labels: Labels
    values: Counter[Labels]


@dataclass(slots=True)
class _Reading:
    name: str
    doc: str
    labels: Labels
    read: Callable[[], dict[Labels, float]]
    monotonic: bool


class Metrics:
    """Named counters and gauges, and their Prometheus text exposition."""

    def __init__(self) -> None:
        self._counters: list[_Counter] = []
        self._readings: list[_Reading] = []
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def counter(self, name: str, doc: str, labels: Labels = ()) -> Counter[Labels]:
        """Declare a counter; bump it with `c[(label, ...)] += n`."""
        values: Counter[Labels] = Counter()
        self._counters.append(_Counter(name, doc, labels, values))
        return values

    def gauge(
        self,
        name: str,
        doc: str,
        read: Callable[[], dict[Labels, float]],
        labels: Labels = (),
    ) -> None:
        """Declare a gauge whose values `read` returns at scrape time."""
        self._readings.append(_Reading(name, doc, labels, read, monotonic=False))

    def counter_from(
        self,
        name: str,
        doc: str,
        read: Callable[[], dict[Labels, float]],
        labels: Labels = (),
    ) -> None:
        """Declare a counter another part keeps, read at scrape time."""
        self._readings.append(_Reading(name, doc, labels, read, monotonic=True))

    def collect(self) -> Iterator[Metric]:
        for counter in self._counters:
            family = CounterMetricFamily(
                counter.name, counter.doc, labels=list(counter.labels)
            )
            for key, value in list(counter.values.items()):
                family.add_metric(list(key), value)
            yield family
        for reading in self._readings:
            kind = CounterMetricFamily if reading.monotonic else GaugeMetricFamily
            read_family = kind(reading.name, reading.doc, labels=list(reading.labels))
            for key, number in reading.read().items():
                read_family.add_metric(list(key), number)
            yield read_family

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: Labels = ()) -> float:
        """Read one counter or gauge value (0 when never bumped)."""
        for counter in self._counters:
            if counter.name == name:
                return float(counter.values.get(labels, 0))
        for reading in self._readings:
            if reading.name == name:
                return reading.read().get(labels, 0.0)
        raise KeyError(name)
