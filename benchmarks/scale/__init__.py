"""benchmarks.scale: the fleet's throughput with 1, 2 and 3 proxies behind HAProxy
(fleet.py, `python -m benchmarks.scale`), and training time and score with local
workers vs a Dask LocalCluster (run.py, `python -m benchmarks.scale.run`)."""
