"""The trial scheduler: a fixed schedule that the time budget can only truncate.

Determinism under a time budget: which trial runs next depends only on the seed and
on the scores of earlier trials, never on the clock. Time is consulted in one place
(`Budget.allows`) and only to cut the schedule short: a trial predicted not to fit
before the search deadline is skipped, and once the deadline has passed (or a fit
runs into it) the search ends. With an ample budget neither happens and the schedule
runs to its own end (convergence), so the same data and seed give the same
leaderboard and winner on any normal machine.

Schedule:
0. Baselines (the constant model): scored once on all rows, never tuned; a model
   kept must beat them in validation.
1. Screening bracket (successive halving): for each family its strong, cheap start
   configuration plus a few seeded random ones. On large data they are first fitted
   on a small share of the training rows (low fidelity) and only the best third go
   on to the next rung (x3 rows), up to all rows; small data has a single rung.
2. Local search (cost-frugal, in the spirit of FLAML's CFO): from the best
   configuration of the three leading families, seeded random directions in the
   normalised hyperparameter cube; a move is kept when it improves, the step halves
   after repeated failures. The search stops when the best score has not improved
   for PATIENCE trials (checked after each full round of the local families, so
   each of them gets its step), when every family's step has shrunk away, or at
   MAX_TRIALS.
3. Widening (a search on one holdout split given `widen`): when the first local
   search has converged with no trial skipped for time, and the holdout measures
   its best configuration's score loosely (a standard error of WIDEN_ERROR of it or
   more), the search goes on with cross-validation: its WIDEN_FINALISTS best configurations (and each leading
   family's best) and the baselines are scored on the folds `widen()` gives (the
   holdout the first of them: its predictions are kept, the other folds fitted),
   and everything after (the restarts, the winner, an ensemble's candidates) uses
   those folds only. One holdout ranks close configurations by its noise; a search
   that converged early has the time to rank them on more rows.
4. Restarts: a converged local search can leave most of the budget unused, so it
   starts again, with the step reset and new seeded directions, from the best
   configuration of each of the (then) three leading families. One restart per full
   RESTART_SECONDS of MAX_RUNTIME, at most MAX_RESTARTS, each with MAX_TRIALS // 2
   more trials; RESTART_PATIENCE restarts in a row that do not improve the best
   score end the search. The number of restarts depends on MAX_RUNTIME, not on the
   clock, so the schedule stays a function of the seed, the scores and the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .families import Context, Family, Param, TrialInterrupted
from .problem import Objective
from .validation import Evaluator, TrialResult

RANDOM_PER_FAMILY = 1
ETA = 3
MIN_RUNG_ROWS = 1000
PATIENCE = 12
LOCAL_FAMILIES = 3
MAX_TRIALS = 80
MAX_LOCAL_TRIALS_PER_FAMILY = 30
INITIAL_STEP = 0.3
MIN_STEP = 0.02
REL_TOL = 1e-4
#: one restart of the local search per this many seconds of MAX_RUNTIME (two at
#: 30 s: a search converged after 10 of them left the rest unused) ...
RESTART_SECONDS = 15
#: ... and never more than this many (the proxy's default MAX_RUNTIME is 5400 s) ...
MAX_RESTARTS = 6
#: ... and this many restarts in a row that do not improve the best score end it
RESTART_PATIENCE = 2
#: a widened search (`widen`) scores this many of its best holdout configurations
#: again on the wider folds before it goes on (as automl/confirm.py's FINALISTS)
WIDEN_FINALISTS = 8
#: ... when the holdout's score of its best configuration has a standard error of at
#: least this share of itself (validation.Evaluator.score_error): where a few rows
#: carry much of the loss, one holdout ranks close configurations by its noise
#: (diamonds' squared errors: the 1% largest are 38-40% of the MSE; the search
#: measured 5.2-6.4% on its 6,473 holdout rows at 30 s; a default LightGBM on 20% of
#: the benchmark's training part: diamonds 5.3-5.9%, bundesliga 2.2%, movies 1.9%,
#: insteval 1.0%, the other tables the benchmark searches on one holdout)
WIDEN_ERROR = 0.035
#: a configuration is scored again on the wider folds when their fits, each predicted
#: as its holdout fit, times this, end before the search's deadline
WIDEN_MARGIN = 1.25
#: the validation predictions of each family's this many best full-fidelity trials
#: are kept (the candidates of an ensemble, automl/ensemble.py); others are dropped
OOF_KEPT = 6
#: exceptions a fit may raise on awkward data or parameters; other errors are bugs
FIT_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


@dataclass
class Trial:
    index: int
    family: str
    params: dict[str, Any]
    fidelity: float
    phase: str
    result: TrialResult

    @property
    def score(self) -> float:
        return self.result.score

    def entry(self) -> dict[str, Any]:
        return {
            "trial": self.index,
            "family": self.family,
            "params": jsonable(self.params),
            "score": float(self.result.score),
            "seconds": round(float(self.result.seconds), 4),
            "fidelity": float(self.fidelity),
            "phase": self.phase,
        }


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


@dataclass
class Budget:
    """Wall-clock limits for the search. `search_deadline()` moves earlier as the
    reserve for refitting the current best grows."""

    hard_deadline: float
    reserve: Callable[[], float]
    #: the whole budget (MAX_RUNTIME) in seconds: it sets how many restarts the
    #: search may make (0: none)
    seconds: float = 0.0

    def restarts(self) -> int:
        return min(MAX_RESTARTS, int(self.seconds // RESTART_SECONDS))

    def search_deadline(self) -> float:
        return self.hard_deadline - self.reserve()

    def allows(self, predicted_seconds: float) -> bool:
        return time.monotonic() + predicted_seconds <= self.search_deadline()


@dataclass
class _Local:
    """Local-search state of one family."""

    family: Family
    ctx: Context
    space: list[Param]
    incumbent: dict[str, Any]
    best: float
    step: float = INITIAL_STEP
    failures: int = 0
    trials: int = 0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    @property
    def active(self) -> bool:
        return self.step >= MIN_STEP and self.trials < MAX_LOCAL_TRIALS_PER_FAMILY


class Search:
    def __init__(self, families: list[Family], contexts: dict[str, Context], evaluator: Evaluator,
                 objective: Objective, budget: Budget, seed: int,
                 on_trial: Callable[[Trial, Trial], None] | None = None,
                 n_train_rows: int = 0, tune: bool = True, pool: TrialPool | None = None,
                 widen: Callable[[], Evaluator] | None = None, widen_folds: int = 3) -> None:
        self.families = families
        self.contexts = contexts
        self.evaluator = evaluator
        self.objective = objective
        self.budget = budget
        self.seed = seed
        self.on_trial = on_trial
        self.n_train_rows = n_train_rows
        self.tune = tune
        #: None: trials run one after another in this process; else a pool (a Dask
        #: cluster, automl/cluster.py) that runs each batch of trials side by side
        self.pool = pool
        #: a search on one holdout split: the Evaluator of more folds (the holdout
        #: their first) it goes on with once its first local search has converged
        self.widen = widen
        self.widen_folds = widen_folds  # (how many folds `widen()` gives, the holdout one of them)
        #: the note of the widening, when it happened ("" if not)
        self.widened = ""
        self.trials: list[Trial] = []
        #: the first trial scored by `evaluator` (later than 0 once widened): only
        #: trials from there on are compared with each other
        self.first = 0
        self.best: Trial | None = None
        self.best_full: Trial | None = None  # best trial at fidelity 1
        self._seen: set[tuple] = set()
        self._rate: dict[str, float] = {}  # seconds per cost unit, per family
        self.stopped_by_budget = False
        self.stop_reason = ""
        self.restarts_done = 0
        self.skipped = 0
        self.failures: list[str] = []

    # -- public ----------------------------------------------------------------------

    def run(self) -> list[Trial]:
        try:
            finalists = self._screen()
            if self.tune:
                self._local_search(finalists)
                if self.widen is not None and not self.skipped and not self.stop_reason.startswith("trial limit"):
                    self._widen()
                self._restarts()
            if not self.stop_reason:
                self.stop_reason = "search converged"
            if self.skipped:
                self.stopped_by_budget = True
                self.stop_reason = f"time budget reached: {self.skipped} trials skipped as too slow for the time left"
        except _OutOfTime:
            self.stopped_by_budget = True
            self.stop_reason = "time budget reached"
        return self.trials

    def current(self) -> list[Trial]:
        """The trials scored by the search's (current) evaluator: the ones the winner,
        the restarts and an ensemble are chosen from."""
        return self.trials[self.first:]

    def rungs(self) -> list[float]:
        if not self.tune:
            return [1.0]
        fids = [1.0]
        while self.n_train_rows * fids[0] / ETA >= MIN_RUNG_ROWS and len(fids) < 3:
            fids.insert(0, fids[0] / ETA)
        return fids

    # -- phases ----------------------------------------------------------------------

    def _screen(self) -> list[tuple[Family, dict[str, Any]]]:
        # baselines (the constant model) first, once, on all rows: a model kept must
        # beat them in validation
        self._evaluate_all([(fam, fam.initial(self.contexts[fam.model_type]), 1.0, "screen")
                            for fam in self.families if not fam.searched])
        searched = [fam for fam in self.families if fam.searched]
        configs: list[tuple[Family, dict[str, Any]]] = []
        for fam in searched:
            configs.append((fam, fam.initial(self.contexts[fam.model_type])))
        if self.tune:
            for i, fam in enumerate(searched):
                ctx = self.contexts[fam.model_type]
                rng = np.random.default_rng([self.seed, 101, i])
                space = [p for p in fam.space(ctx) if p.name not in ctx.fixed]
                for _ in range(RANDOM_PER_FAMILY if space else 0):
                    params = {p.name: _sample(p, rng) for p in space}
                    params.update(ctx.fixed)
                    configs.append((fam, params))
        rungs = self.rungs()
        survivors = configs
        for r, fidelity in enumerate(rungs):
            scored = []
            trials = self._evaluate_all([(fam, params, fidelity, "screen") for fam, params in survivors])
            for trial, (fam, params) in zip(trials, survivors):
                if trial is not None:
                    scored.append((trial, fam, params))
            if r < len(rungs) - 1:
                scored.sort(key=lambda t: (-self.objective.utility(t[0].score), t[0].index))
                keep = max(2, math.ceil(len(scored) / ETA))
                survivors = [(fam, params) for _, fam, params in scored[:keep]]
        # best full-fidelity configuration of each family, best families first
        per_family: dict[str, Trial] = {}
        fams = {f.model_type: f for f in searched}
        for t in self.trials:
            if t.fidelity == 1.0 and t.family in fams:
                cur = per_family.get(t.family)
                if cur is None or self.objective.better(t.score, cur.score):
                    per_family[t.family] = t
        ranked = sorted(per_family.values(), key=lambda t: (-self.objective.utility(t.score), t.index))
        return [(fams[t.family], dict(t.params)) for t in ranked[:LOCAL_FAMILIES]]

    def _widen(self) -> None:
        """Go on with the folds `widen()` gives (see the module's text): the best
        holdout configurations scored on them, best first, while their fits are
        predicted to end in time; with fewer than two searched ones scored, the
        holdout's trials stay the search's."""
        ranked = sorted((t for t in self.trials if t.fidelity == 1.0 and self._searched(t.family)),
                        key=lambda t: (-self.objective.utility(t.score), t.index))
        leaders, families = [], set()
        for t in ranked:  # each of the leading families' best besides the best few
            if t.family not in families and len(families) < LOCAL_FAMILIES:
                families.add(t.family)
                leaders.append(t)
        chosen = {t.index for t in ranked[:WIDEN_FINALISTS]} | {t.index for t in leaders}
        candidates = [t for t in ranked if t.index in chosen]
        baselines = [t for t in self.trials if not self._searched(t.family)]
        more_fits = self.widen_folds - 1
        if len(candidates) < 2:
            return
        holdout = self.evaluator
        best = candidates[0].result
        oof = best.oof if best.oof is not None else holdout.first_fold_predictions(
            {f.model_type: f for f in self.families}[candidates[0].family], best.model)
        error = holdout.score_error(oof, best.threshold)
        if error is None or error < WIDEN_ERROR:
            return  # the holdout measures its best closely enough (or cannot say how closely)
        if not self.budget.allows(sum(WIDEN_MARGIN * t.result.fit_seconds * more_fits for t in candidates)):
            return  # (only when the budget binds: the time left cannot rescore them all)
        wide = self.widen()
        more = wide.without_first()
        saved = (self.first, self.best, self.best_full, self._seen, dict(self._rate))
        self.evaluator, self.first, self.best, self.best_full, self._seen = wide, len(self.trials), None, None, set()
        # a trial now fits once per fold
        self._rate = {k: v * len(wide.folds) for k, v in self._rate.items()}
        fams = {f.model_type: f for f in self.families}
        rescored = 0
        try:
            for t in baselines:
                self._evaluate(fams[t.family], t.params, 1.0, "widen")
            for t in candidates:
                fam = fams[t.family]
                if not self.budget.allows(WIDEN_MARGIN * t.result.fit_seconds * more_fits):
                    continue
                self._seen.add((fam.model_type, _freeze(t.params), 1.0))
                try:
                    extra = more.run(fam, t.params, self.contexts[fam.model_type], 1.0, self.budget.search_deadline())
                except FIT_ERRORS:
                    continue
                oof = t.result.oof if t.result.oof is not None else holdout.first_fold_predictions(fam, t.result.model)
                self._record(fam, t.params, 1.0, "widen", wide.joined(t.result, oof, extra))
                rescored += 1
        except TrialInterrupted:
            raise _OutOfTime() from None
        finally:
            if rescored < 2:  # the holdout's ranking stands
                del self.trials[self.first:]
                self.evaluator = holdout
                self.first, self.best, self.best_full, self._seen, self._rate = saved
            else:
                self.widened = (f"search widened to {len(wide.folds)}-fold cross-validation (the holdout one of "
                                f"its folds) after {self.first} trials, its first local search converged and its "
                                f"holdout's {self.objective.name} has a standard error of {100 * error:.1f}% of "
                                f"itself (from {100 * WIDEN_ERROR:g}%): {rescored} of its {len(candidates)} best "
                                "configurations scored again")

    def _restarts(self) -> None:
        """Restart the local search (step reset, new directions) from the best
        configuration of each of the leading families, until RESTART_PATIENCE
        restarts in a row do not improve the best score or MAX_RUNTIME allows no
        more (Budget.restarts)."""
        allowed = self.budget.restarts()
        if not allowed or self.best_full is None or self.stop_reason.startswith("trial limit"):
            return
        first = self.stop_reason
        fruitless = 0
        for restart in range(1, allowed + 1):
            before = self.best_full.score
            self._local_search(self._leaders(), stream=restart, trial_limit=len(self.trials) + MAX_TRIALS // 2)
            self.restarts_done = restart
            fruitless = 0 if self._improved(self.best_full.score, before) else fruitless + 1
            if fruitless >= RESTART_PATIENCE:
                self.stop_reason = f"{first}; {restart} restarts, the last {fruitless} did not improve"
                return
        last = "improved" if not fruitless else "did not improve"
        self.stop_reason = f"{first}; {allowed} restarts (the most MAX_RUNTIME allows), the last {last}"

    def _leaders(self) -> list[tuple[Family, dict[str, Any]]]:
        """The best full-fidelity configuration of each searched family, best
        families first, the LOCAL_FAMILIES leading ones."""
        fams = {f.model_type: f for f in self.families if f.searched}
        per_family: dict[str, Trial] = {}
        for t in self.current():
            if t.fidelity == 1.0 and t.family in fams:
                cur = per_family.get(t.family)
                if cur is None or self._improved(t.score, cur.score):
                    per_family[t.family] = t
        ranked = sorted(per_family.values(), key=lambda t: (-self.objective.utility(t.score), t.index))
        return [(fams[t.family], dict(t.params)) for t in ranked[:LOCAL_FAMILIES]]

    def _local_search(self, finalists: list[tuple[Family, dict[str, Any]]], stream: int = 0,
                      trial_limit: int | None = None) -> None:
        trial_limit = MAX_TRIALS if trial_limit is None else trial_limit
        states = []
        for i, (fam, params) in enumerate(finalists):
            ctx = self.contexts[fam.model_type]
            space = [p for p in fam.space(ctx) if p.name not in ctx.fixed]
            if not space:
                continue
            best = self._best_score(fam.model_type, params)
            rng = np.random.default_rng([self.seed, 202, i] if stream == 0 else [self.seed, 202, i, stream])
            states.append(_Local(fam, ctx, space, params, best, rng=rng))
        since_improvement = 0
        while states and any(s.active for s in states):
            # one family's step at a time here; on a pool, one step of every active
            # family at once (both directions of each), accepted in the same order
            groups = [[s] for s in states] if self.pool is None else [states]
            for group in groups:
                group = [s for s in group if s.active]
                if not group:
                    continue
                before = self.best_full.score if self.best_full else None
                ran = len(self.trials)
                if self.pool is None:
                    self._local_step(group[0])
                else:
                    self._local_round(group)
                after = self.best_full.score if self.best_full else None
                if before is None or (after is not None and self._improved(after, before)):
                    since_improvement = 0
                else:
                    since_improvement += len(self.trials) - ran
                if len(self.trials) >= trial_limit:
                    self.stop_reason = f"trial limit ({trial_limit}) reached"
                    return
            # patience is checked once per round, after every local family's step: a
            # family's place in the round never decides whether it gets its step
            if since_improvement >= PATIENCE:
                self.stop_reason = f"no improvement in {since_improvement} trials"
                return
        self.stop_reason = "local search converged"

    def _local_step(self, state: _Local) -> None:
        improved = False
        for params in self._moves(state):
            state.trials += 1
            trial = self._evaluate(state.family, params, 1.0, "tune")
            if trial is None:
                continue
            if self._improved(trial.score, state.best):
                state.incumbent, state.best, improved = params, trial.score, True
                break
        self._adapt_step(state, improved)

    def _local_round(self, states: list[_Local]) -> None:
        """Every state's moves (both directions) as one batch on the pool; each state
        keeps its first improving move, as `_local_step` would."""
        moves = [(state, self._moves(state)) for state in states]
        batch = [(state.family, params, 1.0, "tune") for state, ms in moves for params in ms]
        trials = iter(self._evaluate_all(batch))
        for state, ms in moves:
            state.trials += len(ms)
            improved = False
            for params, trial in zip(ms, [next(trials) for _ in ms]):
                if not improved and trial is not None and self._improved(trial.score, state.best):
                    state.incumbent, state.best, improved = params, trial.score, True
            self._adapt_step(state, improved)

    def _moves(self, state: _Local) -> list[dict[str, Any]]:
        """The two candidate configurations of a local step: a seeded random direction
        from the incumbent, forwards and backwards (maybe flipping one categorical)."""
        num = [p for p in state.space if p.choices is None]
        cat = [p for p in state.space if p.choices is not None]
        x = np.array([p.to_unit(state.incumbent[p.name]) for p in num])
        u = state.rng.standard_normal(len(num))
        u /= np.linalg.norm(u) or 1.0
        flip = {}
        if cat and state.rng.random() < 0.25:
            p = cat[int(state.rng.integers(len(cat)))]
            others = [c for c in p.choices if c != state.incumbent.get(p.name)]
            flip = {p.name: others[int(state.rng.integers(len(others)))]}
        moves = []
        for sign in (1.0, -1.0):
            params = dict(state.incumbent)
            params.update({p.name: p.from_unit(v) for p, v in zip(num, x + sign * state.step * u)})
            params.update(flip)
            moves.append(params)
        return moves

    def _adapt_step(self, state: _Local, improved: bool) -> None:
        if improved:
            state.failures = 0
        else:
            state.failures += 1
            if state.failures >= 2:
                state.step *= 0.5
                state.failures = 0

    # -- trials ----------------------------------------------------------------------

    def _evaluate(self, fam: Family, params: dict[str, Any], fidelity: float, phase: str) -> Trial | None:
        if not self._admit(fam, params, fidelity):
            return None
        try:
            result = self.evaluator.run(fam, params, self.contexts[fam.model_type], fidelity,
                                        self.budget.search_deadline())
        except TrialInterrupted:
            raise _OutOfTime() from None
        except FIT_ERRORS as exc:
            # a configuration the estimator rejects on this data (e.g. a solver that
            # cannot converge numerically) is a failed trial, not a failed job
            self.failures.append(f"{fam.model_type} {params}: {exc}")
            return None
        return self._record(fam, params, fidelity, phase, result)

    def _evaluate_all(self, batch: list[tuple[Family, dict[str, Any], float, str]]) -> list[Trial | None]:
        """Evaluate (family, params, fidelity, phase) candidates: one after another
        here, or side by side on the pool; either way recorded in the batch's order,
        so the leaderboard does not depend on which task finished first."""
        if self.pool is None:
            return [self._evaluate(*candidate) for candidate in batch]
        admitted = [i for i, (fam, params, fidelity, _) in enumerate(batch) if self._admit(fam, params, fidelity)]
        outcomes = self.pool.run([(batch[i][0], batch[i][1], self.contexts[batch[i][0].model_type], batch[i][2])
                                  for i in admitted], self.budget.search_deadline())
        out: list[Trial | None] = [None] * len(batch)
        interrupted = False
        for i, outcome in zip(admitted, outcomes):
            fam, params, fidelity, phase = batch[i]
            if isinstance(outcome, TrialInterrupted):
                interrupted = True
            elif isinstance(outcome, Exception):
                # failed on this data, or lost with a cluster worker: the search goes on
                self.failures.append(f"{fam.model_type} {params}: {outcome}")
            else:
                out[i] = self._record(fam, params, fidelity, phase, outcome)
        if interrupted:
            raise _OutOfTime()
        return out

    def _admit(self, fam: Family, params: dict[str, Any], fidelity: float) -> bool:
        """Whether a trial runs: not seen before, its model within the family's size
        limits, and predicted to fit in the time left (raises _OutOfTime once the
        search deadline has passed)."""
        if not self.budget.allows(0.0):
            # first: a search whose moves are all seen before still ends on time
            raise _OutOfTime()
        key = (fam.model_type, _freeze(params), fidelity)
        if key in self._seen:
            return False
        self._seen.add(key)
        if self.tune and not fam.within_limits(params, self.contexts[fam.model_type]):
            return False  # (AUTO OFF trains what the statement asked for)
        rate = self._rate.get(fam.model_type)
        from .validation import cost_units

        predicted = rate * cost_units(fam, params, fidelity) if rate is not None else 0.0
        if not self.budget.allows(predicted):
            # only when the budget binds: a trial predicted not to fit is skipped and
            # cheaper ones still run
            self.skipped += 1
            return False
        return True

    def _record(self, fam: Family, params: dict[str, Any], fidelity: float, phase: str,
                result: TrialResult) -> Trial:
        units = result.cost_units
        self._rate[fam.model_type] = max(self._rate.get(fam.model_type, 0.0) * 0.5, result.seconds / units)
        trial = Trial(len(self.trials), fam.model_type, dict(params), fidelity, phase, result)
        self.trials.append(trial)
        self._keep_best_oof(trial)
        if self.best is None or self._improved(trial.score, self.best.score):
            self.best = trial
        if fidelity == 1.0 and (self.best_full is None or self._improved(trial.score, self.best_full.score)):
            self.best_full = trial
        if self.on_trial is not None:
            self.on_trial(trial, self.winner())
        return trial

    def _keep_best_oof(self, trial: Trial) -> None:
        """Drop the validation predictions of all but the OOF_KEPT best full-fidelity
        trials of `trial`'s family (low-fidelity ones keep none): memory stays
        bounded however long the search runs."""
        if trial.fidelity != 1.0:
            trial.result.oof = None
            return
        kept = [t for t in self.current() if t.family == trial.family and t.result.oof is not None]
        if len(kept) > OOF_KEPT:
            kept.sort(key=lambda t: (-self.objective.utility(t.score), t.index))
            for t in kept[OOF_KEPT:]:
                t.result.oof = None

    def winner(self) -> Trial | None:
        """The best full-fidelity trial (the best low-fidelity one if none is full, or
        if the only full one is a baseline it beats: its validation rows are the same)."""
        full = self.best_full
        if full is None or (self.best is not None and self.best is not full
                            and not self._searched(full.family) and self._improved(self.best.score, full.score)):
            return self.best
        return full

    def _searched(self, family: str) -> bool:
        return next(f.searched for f in self.families if f.model_type == family)

    def _improved(self, new: float, old: float) -> bool:
        margin = REL_TOL * max(1e-12, abs(old))
        return (new - old > margin) if self.objective.greater_is_better else (old - new > margin)

    def _best_score(self, family: str, params: dict[str, Any]) -> float:
        scores = [t.score for t in self.current() if t.family == family and t.fidelity == 1.0
                  and _freeze(t.params) == _freeze(params)]
        return scores[0]


class TrialPool(Protocol):
    """Runs a batch of trials side by side (automl/cluster.py's ClusterTrials)."""

    def run(self, trials: list[tuple[Family, dict[str, Any], Context, float]],
            deadline: float) -> list[TrialResult | Exception]:
        """One outcome per trial, in order: its result, TrialInterrupted (it ran into
        `deadline`, monotonic) or the exception that ended it."""
        ...


class _OutOfTime(Exception):
    pass


def _sample(p: Param, rng: np.random.Generator) -> Any:
    if p.choices is not None:
        return p.choices[int(rng.integers(len(p.choices)))]
    return p.from_unit(float(rng.random()))


def _freeze(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))
