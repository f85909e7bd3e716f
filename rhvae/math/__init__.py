"""The RHVAE mathematics, written once against a ``Backend`` object ``B`` (DESIGN §2)."""

from rhvae.math.hamiltonian import Hamiltonian
from rhvae.math.metric import LocalMetric, MetricState, inverse_metric, lower_triangular, metric_tensor

__all__ = ["Hamiltonian", "LocalMetric", "MetricState", "inverse_metric", "lower_triangular", "metric_tensor"]
