"""automl.forecast: MODEL_TYPE FORECAST's training (see search.py for the method,
artifact.py for what is stored).  Imports statsforecast only when called."""

from .artifact import FORMAT, decode, encode
from .search import Forecast, forecast

__all__ = ["FORMAT", "Forecast", "decode", "encode", "forecast"]
