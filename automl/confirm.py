"""Confirmation: a holdout search's finalists cross-validated with the time it leaves.

A table the budget cannot cross-validate (validation.cross_validates) is searched
on one holdout split, and its noise ranks close configurations: on diamonds (6,473
validation rows) the rank correlation of holdout and held-out MSE over the 12 best
configurations was -0.71 and 0.07 on two seeds. A search that converges before
MAX_RUNTIME leaves time unused. With it, the best FINALISTS full-fidelity
configurations, best first, are fitted on the other FOLDS - 1 folds of a FOLDS-fold
cross-validation whose first fold is the holdout itself (validation.folds_around):
FOLDS - 1 fits of the size the trial made, and every selection row is predicted once.

A finalist's score is computed on all its predictions together (the holdout's and
the new folds'); it runs when its fits, predicted from its trial's measured fit,
end before the search's deadline (the refit's reserve stays kept), and a fit
running into that deadline ends the phase. With at least MIN_CONFIRMED confirmed,
the winner is the best of them, and an ensemble is selected from them on every
selection row. A confirmed trial keeps its own model (the holdout's), so the
metrics, and a refit cut short, use the model and spec they would have used.

A cross-validated search is not confirmed: a second k-fold cross-validation on new
folds for its finalists (measured on the small tables at 30 s) changed 6 of 18
results, 3 for the better and 3 for the worse (docs/automl.md, "What each lever did").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .families import TrialInterrupted
from .problem import Objective
from .registry import FAMILIES
from .search import FIT_ERRORS, Search, Trial
from .validation import Evaluator, TrialResult, folds_around

#: at most this many configurations are confirmed, best first
FINALISTS = 8
#: the folds of the cross-validation that confirms a holdout search (the holdout one of them)
FOLDS = 5
#: fewer confirmed than this leave the search's own ranking as it is
MIN_CONFIRMED = 2
PHASE = "confirm"

Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Confirmation:
    #: the confirmed trials (phase PHASE: the search's trial's index, family, params
    #: and model, scored on all its validation predictions), best first
    trials: list[Trial]
    #: the selection rows each trial's `result.oof` predicts, in order (each once):
    #: what an ensemble is selected on
    rows: np.ndarray


def more_folds(holdout: tuple[np.ndarray, np.ndarray], y: np.ndarray | None, seed: int) -> Folds:
    """The folds a finalist is fitted on besides the search's holdout split (`y`: the
    class codes of a classification's selection rows, to stratify)."""
    return folds_around(holdout, y, seed, FOLDS)[1:]


def finalists(search: Search) -> list[Trial]:
    """The search's best FINALISTS full-fidelity trials of searched families, best
    first (none when no searched family beat the baseline). They are distinct
    configurations: the search never runs one twice at a fidelity (Search._admit)."""
    winner = search.winner()
    if winner is None or not FAMILIES[winner.family].searched:
        return []
    objective = search.objective
    ranked = sorted((t for t in search.trials if t.fidelity == 1.0 and FAMILIES[t.family].searched),
                    key=lambda t: (-objective.utility(t.score), t.index))
    return ranked[:FINALISTS]


def confirm(search: Search, evaluator: Callable[[], Evaluator], predicted: Callable[[Trial], float],
            report: list[str]) -> Confirmation | None:
    """The finalists of a search on one holdout split fitted on more folds
    (`more_folds`) in the time left; None when fewer than MIN_CONFIRMED were.
    `evaluator()` builds the Evaluator of those folds (called once, when a finalist
    first fits in time); `predicted(trial)` is the seconds its FOLDS - 1 fits are
    predicted to take."""
    candidates = finalists(search)
    if len(candidates) < MIN_CONFIRMED:
        return None
    budget, objective = search.budget, search.objective
    extra: Evaluator | None = None
    rows = np.empty(0, dtype=np.int64)
    confirmed: list[Trial] = []
    ended = ""
    for trial in candidates:
        if not budget.allows(predicted(trial)):
            ended = ended or "the time left"
            continue
        if extra is None:
            extra = evaluator()
            # the holdout's validation rows, then the new folds': what each finalist's predictions are of
            rows = np.concatenate([search.evaluator.validation_rows(), extra.validation_rows()])
        fam = FAMILIES[trial.family]
        try:
            more = extra.run(fam, trial.params, search.contexts[fam.model_type], 1.0, budget.search_deadline())
        except TrialInterrupted:
            ended = "the search's deadline"
            break
        except FIT_ERRORS:
            continue
        searched = trial.result
        if searched.oof is None:  # dropped by the search (automl/search.py OOF_KEPT): predicted again
            searched = replace(searched, oof=search.evaluator.first_fold_predictions(fam, searched.model))
        result = combine(searched, more, rows, extra)
        confirmed.append(Trial(trial.index, trial.family, dict(trial.params), 1.0, PHASE, result))
    if len(confirmed) < MIN_CONFIRMED:
        if confirmed or ended:
            report.append(f"confirmation: {len(confirmed)} of the {len(candidates)} best configurations could be "
                          f"cross-validated in {ended}: the holdout's ranking is kept")
        return None
    confirmed.sort(key=lambda t: (-objective.utility(t.score), t.index))
    report.append(_describe(confirmed, candidates, objective))
    return Confirmation(confirmed, rows)


def combine(searched: TrialResult, more: TrialResult, rows: np.ndarray, extra: Evaluator) -> TrialResult:
    """A trial's result on its search's validation rows and on more folds' (`extra`),
    as one, `rows` being the rows of their predictions together: scored on all of
    them, the search's model kept."""
    return extra.combined(searched, more, rows, np.concatenate([searched.oof, more.oof]))


def merged(trials: list[Trial], confirmation: Confirmation) -> list[Trial]:
    """The search's trials, each confirmed one replaced by its confirmation."""
    by_index = {t.index: t for t in confirmation.trials}
    return [by_index.get(t.index, t) for t in trials]


def _describe(confirmed: list[Trial], candidates: list[Trial], objective: Objective) -> str:
    some = "" if len(confirmed) == len(candidates) else f"{len(confirmed)} of "
    line = (f"confirmation: {some}the {len(candidates)} best configurations scored again with {FOLDS}-fold "
            "cross-validation (the holdout one of its folds): ")
    best, searched_best = confirmed[0], candidates[0]
    if best.index == searched_best.index:
        return line + f"the search's best, trial {best.index}, stays the winner ({objective.name} {best.score:.6g})"
    was = {t.index: t for t in confirmed}.get(searched_best.index)
    return (line + f"trial {best.index} ({best.family}, {objective.name} {best.score:.6g}) wins over the search's "
            f"best, trial {searched_best.index}" + (f" ({objective.name} {was.score:.6g})" if was else ""))
