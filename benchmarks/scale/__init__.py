"""benchmarks.scale: the fleet's throughput with 1, 2 and 3 proxies behind HAProxy
(fleet.py). The training-cluster half of issue 20 (Dask) is not written yet."""
