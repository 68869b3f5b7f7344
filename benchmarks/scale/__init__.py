"""Benchmark: training time and score with local workers vs a Dask LocalCluster."""
