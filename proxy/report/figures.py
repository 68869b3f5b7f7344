"""The report's figures: matplotlib drawn to inline SVG, nothing fetched.

Each function takes plain data from the catalog and returns one `<svg>` element as
text. Text is drawn as paths (no font files), mathtext is off (a `$` in a
user-chosen name is just a dollar sign), and the XML prologue, metadata and
comments are dropped so the SVG can stand inside the HTML page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

try:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
except ImportError as exc:  # the optional extra `report`
    raise ImportError("mlproxy report needs matplotlib: pip install 'mlproxy[report]'") from exc

_RC = {
    "svg.fonttype": "path",
    "text.parse_math": False,
    "svg.hashsalt": "mlproxy-report",  # stable ids: the same model gives the same page
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_PROLOGUE = re.compile(r"\A.*?(?=<svg[\s>])", re.S)
_STRIP = re.compile(r"<metadata>.*?</metadata>|<!--.*?-->", re.S)
WIDTH = 6.4
MAX_BARS = 30


def _figure(height: float = 3.6, width: float = WIDTH) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return _STRIP.sub("", _PROLOGUE.sub("", buf.getvalue(), count=1)).strip()


def _short(text: Any, limit: int = 40) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def leaderboard(trials: Sequence[dict[str, Any]], objective: str, greater_is_better: bool) -> str:
    """Each trial's validation score by trial index, coloured by model family, with
    the best score so far as a step line."""
    with matplotlib.rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        points = [(int(t.get("trial", i)), float(t["score"]), str(t.get("family", "")))
                  for i, t in enumerate(trials) if isinstance(t.get("score"), (int, float))]
        for family in sorted({f for _, _, f in points}):
            xs = [x for x, _, f in points if f == family]
            ys = [y for _, y, f in points if f == family]
            ax.scatter(xs, ys, s=18, alpha=0.8, label=_short(family, 24))
        best, line = None, []
        for x, y, _ in sorted(points):
            if best is None or (y > best if greater_is_better else y < best):
                best = y
            line.append((x, best))
        if line:
            ax.step([x for x, _ in line], [y for _, y in line], where="post", color="black",
                    linewidth=1.2, label="best so far")
        ax.set_xlabel("trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if points:
            ax.set_xlim(min(x for x, _, _ in points) - 0.5, max(x for x, _, _ in points) + 0.5)
        ax.set_ylabel(f"{_short(objective, 30)} ({'higher' if greater_is_better else 'lower'} is better)")
        ax.set_title("Validation score of each trial")
        if points:
            ax.legend(fontsize=7, loc="best")
        return to_svg(fig)


def importance(values: dict[str, float], title: str, xlabel: str) -> str:
    """Horizontal bars, the largest on top (at most MAX_BARS inputs)."""
    items = sorted(((str(k), float(v)) for k, v in values.items()), key=lambda kv: kv[1],
                   reverse=True)[:MAX_BARS]
    items.reverse()
    with matplotlib.rc_context(_RC):
        fig = _figure(height=max(2.0, 0.5 + 0.28 * len(items)))
        ax = fig.add_subplot()
        ax.barh([_short(k) for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
        return to_svg(fig)


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """Counts by actual (rows) and predicted (columns) class, numbers written in the
    cells while they fit."""
    k = len(matrix)
    labels = [_short(c, 20) for c in list(classes)[:k]]
    with matplotlib.rc_context(_RC):
        size = min(7.0, max(3.2, 1.2 + 0.35 * k))
        fig = _figure(height=size, width=size + 1.0)
        ax = fig.add_subplot()
        ax.grid(False)
        image = ax.imshow(matrix, cmap="Blues")
        fig.colorbar(image, ax=ax, shrink=0.8)
        tilt = k > 3 or max((len(x) for x in labels), default=0) > 8
        ax.set_xticks(range(k), labels, rotation=45 if tilt else 0, ha="right" if tilt else "center",
                      rotation_mode="anchor")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title("Confusion matrix (held-out rows)")
        if k <= 20:
            top = max((max(r) for r in matrix), default=0) or 1
            for i, row in enumerate(matrix):
                for j, count in enumerate(row):
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                            color="white" if count > top / 2 else "black")
        return to_svg(fig)


def roc(curves: Sequence[dict[str, Any]]) -> str:
    with matplotlib.rc_context(_RC):
        fig = _figure(width=4.6, height=4.0)
        ax = fig.add_subplot()
        for c in curves:
            r = c["roc"]
            ax.plot(r["fpr"], r["tpr"], linewidth=1.4,
                    label=f"{_short(c['class'], 20)} (AUC {float(r['auc']):.3f})")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("ROC curve" + (" (one vs rest)" if len(curves) > 1 else ""))
        ax.legend(fontsize=7, loc="lower right")
        return to_svg(fig)


def precision_recall(curves: Sequence[dict[str, Any]]) -> str:
    with matplotlib.rc_context(_RC):
        fig = _figure(width=4.6, height=4.0)
        ax = fig.add_subplot()
        for c in curves:
            p = c["pr"]
            ax.plot(p["recall"], p["precision"], linewidth=1.4,
                    label=f"{_short(c['class'], 20)} (AP {float(p['average_precision']):.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title("Precision-recall curve" + (" (one vs rest)" if len(curves) > 1 else ""))
        ax.legend(fontsize=7, loc="lower left")
        return to_svg(fig)


def residuals(predicted: Sequence[float], actual: Sequence[float], target: str) -> str:
    """Residual (actual - predicted) against the prediction; a good model's points
    lie evenly around zero."""
    res = [a - p for p, a in zip(predicted, actual)]
    with matplotlib.rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        ax.scatter(predicted, res, s=10, alpha=0.6, color="#4c72b0")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel(f"predicted {_short(target, 30)}")
        ax.set_ylabel("residual (actual − predicted)")
        ax.set_title("Residuals vs predicted (held-out rows)")
        return to_svg(fig)


def cluster_sizes(sizes: Sequence[int], held_out: Sequence[int] | None) -> str:
    k = len(sizes)
    with matplotlib.rc_context(_RC):
        fig = _figure(height=3.0)
        ax = fig.add_subplot()
        xs = list(range(k))
        ax.bar([x - 0.2 for x in xs], sizes, width=0.4, label="training rows", color="#4c72b0")
        if held_out:
            ax.bar([x + 0.2 for x in xs], held_out, width=0.4, label="held-out rows", color="#dd8452")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("cluster")
        ax.set_ylabel("rows")
        ax.set_title("Cluster sizes")
        ax.legend(fontsize=7)
        return to_svg(fig)


def centroids(features: Sequence[str], centers: Sequence[Sequence[float]]) -> str:
    """Each cluster's centroid, coloured per feature by how far it lies from the other
    clusters' (z-score across clusters), labelled with the value itself."""
    k, m = len(centers), len(features)
    cols = [[float(c[j]) for c in centers] for j in range(m)]
    shade = []
    for col in cols:
        mean = sum(col) / len(col)
        sd = (sum((v - mean) ** 2 for v in col) / len(col)) ** 0.5 or 1.0
        shade.append([(v - mean) / sd for v in col])
    grid = [[shade[j][i] for j in range(m)] for i in range(k)]
    with matplotlib.rc_context(_RC):
        fig = _figure(height=min(7.0, max(2.4, 1.0 + 0.4 * k)), width=min(12.0, max(WIDTH, 1.5 + 0.8 * m)))
        ax = fig.add_subplot()
        ax.grid(False)
        ax.imshow(grid, cmap="coolwarm", vmin=-2, vmax=2, aspect="auto")
        ax.set_xticks(range(m), [_short(f, 20) for f in features], rotation=45 if m > 4 else 0,
                      ha="right" if m > 4 else "center")
        ax.set_yticks(range(k), [f"cluster {i}" for i in range(k)])
        ax.set_title("Centroids (colour: distance from the other clusters, in SDs)")
        if k * m <= 200:
            for i in range(k):
                for j in range(m):
                    ax.text(j, i, f"{float(centers[i][j]):.3g}", ha="center", va="center", fontsize=7)
        return to_svg(fig)
