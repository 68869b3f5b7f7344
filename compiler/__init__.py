"""compiler: trained model -> portable artifact -> native library -> batch predictor.

Public surface::

    art = compiler.dump(trained)                    # TrainedModel -> Artifact (bytes + sha256)
    art = compiler.load(data, expected_sha256=...)  # verify and decode stored bytes
    path = compiler.build_library(art, cache_dir)   # or submit_build(...) -> Future
    pred = compiler.load_predictor(art, cache_dir)
    pred.predict({"age": ages, "plan": plans}); pred.predict_proba(...); pred.info
    compiler.contributions(art, X)                  # per-row Shapley values of a feature matrix (batched)
    compiler.global_explanations(art, X)            # Redshift's EXPLAIN_MODEL document

Every exception raised for a caller to handle is a `CompilerError` with a `sqlstate`.
compiler/ never imports automl: it reads the TrainedModel by attribute
(docs/model-contract.md).
"""

from .artifact import Artifact, dump, load
from .build import build_library, find_toolchain, submit_build
from .cache import default_cache_dir
from .errors import (
    ArgumentMismatch,
    BuildError,
    CompilerError,
    CorruptArtifact,
    InvalidInputValue,
    NotAClassifier,
    UnsupportedArtifact,
    UnsupportedModel,
    ValueOutOfRange,
)
from .explain import contributions, global_explanations
from .predictor import Predictor, load_predictor

__all__ = [
    "ArgumentMismatch",
    "Artifact",
    "BuildError",
    "CompilerError",
    "CorruptArtifact",
    "InvalidInputValue",
    "NotAClassifier",
    "Predictor",
    "UnsupportedArtifact",
    "UnsupportedModel",
    "ValueOutOfRange",
    "build_library",
    "contributions",
    "default_cache_dir",
    "dump",
    "find_toolchain",
    "global_explanations",
    "load",
    "load_predictor",
    "submit_build",
]
