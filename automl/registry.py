"""The estimator families by model type, and the ones AUTO searches."""

from __future__ import annotations

from .boosting import XGBoost
from .families import Constant, ExtraTrees, Family, GradientBoosting, KMeansFamily, Linear, NeuralNet, RandomForest
from .lgbm import LightGBM

FAMILIES: dict[str, Family] = {
    f.model_type: f for f in (XGBoost(), LightGBM(), GradientBoosting(), RandomForest(), ExtraTrees(), Linear(),
                              NeuralNet(), KMeansFamily(), Constant())
}
#: AUTO searches these, cheapest first (the order trials start in).
AUTO_FAMILIES = ("CONSTANT", "LINEAR_LEARNER", "LIGHTGBM", "XGBOOST", "EXTRA_TREES", "RANDOM_FOREST")


def families_for(model_type: str | None) -> list[Family]:
    """The families a job searches: AUTO's list, or the one MODEL_TYPE names."""
    if model_type is None:
        return [FAMILIES[m] for m in AUTO_FAMILIES]
    return [FAMILIES[model_type]]
