"""Benchmark: mlproxy's automl vs FLAML vs an untuned HistGradientBoosting model."""
