"""HYPERPARAMETERS DEFAULT EXCEPT (...): the keys each MODEL_TYPE takes, their
defaults and their allowed values, as data.

XGBOOST's keys, defaults and ranges are Redshift's own (the table "XGBoost
parameters" in the CREATE MODEL use cases of the Redshift Database Developer
Guide); NUM_ROUND has no documented bound there, so it takes what the trainer can
do.  MAX_LEAVES, MAX_BIN, EARLY_STOPPING_ROUNDS and SCALE_POS_WEIGHT are XGBoost
parameters Redshift passes through ("supports XGBoost hyperparameters, except
OBJECTIVE").  KMEANS takes SageMaker k-means' names (K is required).  Redshift
documents no HYPERPARAMETERS for MLP and LINEAR_LEARNER; the keys here are
mlproxy's (docs/automl.md).

This table is the one place that says what CREATE MODEL accepts: options.py checks
statements against it when they are issued (22023, with the allowed keys or range
in the hint), and the trainer (automl/hyperparams.py) maps every key of it onto its
estimators; tests/ml_statements/test_hyperparameters.py holds the two together.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

INTEGER, NUMBER, CHOICE = "integer", "number", "choice"

_INT_TEXT = re.compile(r"[+-]?[0-9]+")


class BadValue(Exception):
    """The value is not what the key takes; str() says what it should be."""


@dataclass(frozen=True)
class Hyperparameter:
    kind: str                        # INTEGER, NUMBER or CHOICE
    default: str | None = None       # as Redshift documents it (None: none / required)
    low: float | None = None         # inclusive unless low_open
    high: float | None = None        # inclusive
    low_open: bool = False
    choices: tuple[str, ...] = ()    # lowercase, for CHOICE

    def expected(self) -> str:
        """What a value must be, for messages: 'an integer between 0 and 10'."""
        if self.kind == CHOICE:
            return "one of " + ", ".join(f"'{c}'" for c in self.choices)
        what = "an integer" if self.kind == INTEGER else "a number"
        low = None if self.low is None else _fmt(self.low)
        high = None if self.high is None else _fmt(self.high)
        if low is not None and high is not None and not self.low_open:
            return f"{what} between {low} and {high}"
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"<= {high}")
        return what + (" " + " and ".join(bounds) if bounds else "")

    def check(self, text: str) -> int | float | str:
        """The typed value of `text` (the value as written, unquoted), or BadValue."""
        text = text.strip()
        if self.kind == CHOICE:
            if text.lower() not in self.choices:
                raise BadValue(self.expected())
            return text.lower()
        value: int | float
        try:
            if self.kind == INTEGER:
                if not _INT_TEXT.fullmatch(text):
                    raise ValueError
                value = int(text)
            else:
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError
        except ValueError:
            raise BadValue(self.expected()) from None
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise BadValue(self.expected())
        if self.high is not None and value > self.high:
            raise BadValue(self.expected())
        return value


def _fmt(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _int(default: str | None, low: float | None = None, high: float | None = None) -> Hyperparameter:
    return Hyperparameter(INTEGER, default, low, high)


def _num(default: str | None, low: float | None = None, high: float | None = None,
         low_open: bool = False) -> Hyperparameter:
    return Hyperparameter(NUMBER, default, low, high, low_open)


def _choice(default: str | None, *choices: str) -> Hyperparameter:
    return Hyperparameter(CHOICE, default, choices=choices)


# MODEL_TYPE -> KEY -> what it takes.
HYPERPARAMETERS: dict[str, dict[str, Hyperparameter]] = {
    "XGBOOST": {
        # Redshift's table: name, type, default, range.
        "NUM_CLASS": _int(None, 2, 10_000),   # required for multi:softmax; the trainer counts the classes
        "NUM_ROUND": _int("100", 1, 10_000),
        "TREE_METHOD": _choice("auto", "auto", "exact", "approx", "hist"),
        "MAX_DEPTH": _int("6", 0, 10),
        "MIN_CHILD_WEIGHT": _num("1", 0, 120),
        "SUBSAMPLE": _num("1", 0.5, 1),
        "GAMMA": _num("0", 0, 5),
        "ALPHA": _num("0", 0, 1000),
        "ETA": _num("0.3", 0.1, 0.5),
        "COLSAMPLE_BYLEVEL": _num("1", 0.1, 1),
        "COLSAMPLE_BYNODE": _num("1", 0.1, 1),
        "COLSAMPLE_BYTREE": _num("1", 0.5, 1),
        "LAMBDA": _num("1", 0, 1000),
        "MAX_DELTA_STEP": _int("0", 0, 10),
        # XGBoost parameters Redshift passes through.
        "MAX_LEAVES": _int(None, 2, 65_536),
        "MAX_BIN": _int(None, 2, 255),  # the trainer bins in at most 255
        "EARLY_STOPPING_ROUNDS": _int(None, 1, 10_000),
        "SCALE_POS_WEIGHT": _num("1", 0, None, low_open=True),
    },
    "KMEANS": {
        "K": _int(None, 2, 10_000),
        "EPOCHS": _int("1", 1, 10_000),
        "LOCAL_LLOYD_MAX_ITER": _int("300", 1, 10_000),
        "LOCAL_LLOYD_TOL": _num("0.0001", 0, 1),
        "INIT_METHOD": _choice("kmeans++", "kmeans++", "k-means++", "random"),
    },
    "LINEAR_LEARNER": {
        "WD": _num(None, 0, None, low_open=True),
        "L1": _num("0", 0, None),
        "EPOCHS": _int(None, 1, 100_000),
    },
    "MLP": {
        "HIDDEN_UNITS": _int("64", 1, 4096),
        "NUM_HIDDEN_LAYERS": _int("1", 1, 8),
        "ACTIVATION": _choice("relu", "relu", "tanh", "sigmoid", "logistic"),
        "LEARNING_RATE": _num("0.001", 0, 1, low_open=True),
        "WD": _num("0.0001", 0, None),
        "EPOCHS": _int("200", 1, 10_000),
        "MINI_BATCH_SIZE": _int(None, 1, 1_000_000),
    },
}


def allowed_keys(model_type: str) -> list[str]:
    return sorted(HYPERPARAMETERS[model_type])


def close_match(model_type: str, key: str) -> str | None:
    """The allowed key `key` is probably a misspelling of, if one is close."""
    found = difflib.get_close_matches(key.upper(), allowed_keys(model_type), n=1, cutoff=0.7)
    return found[0] if found else None


def lookup(model_type: str, key: str) -> Hyperparameter | None:
    return HYPERPARAMETERS.get(model_type, {}).get(key.upper())


def describe(model_type: str) -> str:
    """One line per key: 'ETA: a number between 0.1 and 0.5 (default 0.3)'."""
    lines = []
    for key in allowed_keys(model_type):
        spec = HYPERPARAMETERS[model_type][key]
        default = "" if spec.default is None else f" (default {spec.default})"
        lines.append(f"{key}: {spec.expected()}{default}")
    return "\n".join(lines)

