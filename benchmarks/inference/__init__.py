"""Inference benchmark: compiled predictor vs treelite.gtil vs scikit-learn (see run.py)."""
