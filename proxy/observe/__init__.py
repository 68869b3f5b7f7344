"""Seeing what the proxy does: the statistics (stats.py), the admin console
(console.py, the virtual database `mlproxy`) and the Prometheus endpoint (metrics.py)."""
