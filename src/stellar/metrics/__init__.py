"""Pure metric functions over features, plus their metadata (DESIGN §6). Never loads a model."""

from stellar.metrics.base import METRICS, MetricInfo, get_metric

__all__ = ["METRICS", "MetricInfo", "get_metric"]
