"""The report as one self-contained HTML page.

Every value that comes from the catalog (model, schema, column and class names,
settings, failure reasons) is escaped with html.escape; the figures are inline SVG
drawn here; the page loads nothing (a Content-Security-Policy that allows no fetch
and no script says so to the browser too).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from . import figures
from .load import ModelData

TOP_TRIALS_SHOWN = 25

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
 margin:0;color:#1f2933;background:#f5f7fa}
header{background:#243b53;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px;font-weight:600;word-break:break-all}
header p{margin:0;color:#bcccdc;font-size:13px}
main{max-width:1100px;margin:0 auto;padding:16px 32px 48px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);
 padding:16px 20px;margin:16px 0}
h2{font-size:17px;margin:0 0 10px;color:#243b53}
p.note{color:#52606d;font-size:13px;margin:6px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{text-align:left;padding:4px 10px;border-bottom:1px solid #e4e7eb;vertical-align:top}
th{background:#f0f4f8;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.section td{font-weight:600;color:#243b53;padding-top:10px;border-bottom:none}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#f0f4f8;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:18px}.card span{font-size:12px;color:#52606d}
.state{display:inline-block;padding:2px 8px;border-radius:4px;font-weight:600;font-size:13px}
.READY{background:#c6f7e2;color:#014d40}.TRAINING{background:#fff3c4;color:#8d2b0b}
.FAILED{background:#ffe3e3;color:#8a041a}
.banner{padding:12px 16px;border-radius:6px;margin:16px 0;font-size:14px}
.banner.FAILED{border:1px solid #e12d39}.banner.TRAINING{border:1px solid #f0b429}
figure{margin:8px 0;overflow-x:auto}figure svg{max-width:100%;height:auto}
.row{display:flex;flex-wrap:wrap;gap:12px}
"""


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return escape(str(value)) if value is not None else "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    out = ["<table><thead><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            out.append(f"<td{cls}>{_num(cell) if i in numeric else escape('—' if cell is None else str(cell))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure(fig_id: str, svg: str, caption: str | None = None) -> str:
    cap = f"<figcaption class=\"note\">{escape(caption)}</figcaption>" if caption else ""
    return f'<figure id="{fig_id}">{svg}{cap}</figure>'


def _section(sec_id: str, title: str, body: str) -> str:
    return f'<section id="{sec_id}"><h2>{escape(title)}</h2>{body}</section>'


def render(model: ModelData, generated: _dt.datetime | None = None) -> str:
    generated = generated or _dt.datetime.now(_dt.timezone.utc)
    row = model.row
    state = model.state
    title = model.title
    parts = [_summary(model)]
    if state == "FAILED":
        parts.append(f'<div class="banner FAILED" id="state-banner"><b>Training failed.</b> '
                     f'{escape(str(row.get("failure_reason") or "no reason recorded"))}</div>')
    elif state == "TRAINING":
        parts.append(f'<div class="banner TRAINING" id="state-banner"><b>Still training:</b> '
                     f'{escape(_progress(row.get("progress")))}. Run the report again once the '
                     f'model is READY for its evaluation.</div>')
    if state == "READY":
        parts.extend(_ready_sections(model))
    parts.append(_section("settings", "Settings (SHOW MODEL)", _settings(model.settings)))
    stamp = generated.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>Model report: {escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>Model report: {escape(title)}</h1>"
        f"<p>database {escape(model.database)} · read as {escape(model.user)} · {stamp} · mlproxy report</p>"
        f"</header><main>{''.join(parts)}</main></body></html>\n")


def _summary(model: ModelData) -> str:
    row = model.row
    state = model.state
    cards = [f'<div class="card"><b><span class="state {escape(state)}">{escape(state)}</span></b>'
             f'<span>state</span></div>']
    for label, value in (("model type", row.get("model_type")), ("problem type", row.get("problem_type")),
                         ("objective", row.get("objective")), ("rows used", row.get("rows_used")),
                         ("training seconds", row.get("training_seconds")), ("target", row.get("target"))):
        if value is not None:
            cards.append(f'<div class="card"><b>{_num(value)}</b><span>{escape(label)}</span></div>')
    metrics = row.get("metrics")
    body = f'<div class="cards">{"".join(cards)}</div>'
    if isinstance(metrics, dict) and metrics:
        rows = _evaluation_rows(model)
        body += ("<p class=\"note\">Metrics on the held-out rows (never used for training or selection"
                 + (f", {rows:,} rows" if rows else "") + "):</p>")
        body += _table(["metric", "value"], sorted(metrics.items()), numeric=(1,))
    return _section("summary", "Summary", body)


def _evaluation_rows(model: ModelData) -> int | None:
    rows = model.evaluation.get("rows")
    return int(rows) if isinstance(rows, int) else None


def _progress(progress: Any) -> str:
    if not isinstance(progress, dict) or not progress:
        return "queued"
    text = str(progress.get("phase") or "queued")
    if progress.get("trials") is not None:
        text += f", {progress['trials']} trials"
    if isinstance(progress.get("best_score"), (int, float)):
        text += f", best score so far {progress['best_score']:.6g}"
    if isinstance(progress.get("elapsed"), (int, float)):
        text += f", {progress['elapsed']:.0f} s elapsed"
    return text


def _settings(settings: Sequence[tuple[str, str | None]]) -> str:
    out = ["<table><tbody>"]
    for key, value in settings:
        if not key and not value:
            continue
        if key.endswith(":") and not value:
            out.append(f'<tr class="section"><td colspan="2">{escape(key.rstrip(":"))}</td></tr>')
        elif value is not None:
            out.append(f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _ready_sections(model: ModelData) -> list[str]:
    ev = model.evaluation
    row = model.row
    parts = [_leaderboard(model)]
    imp = _importance(model)
    if imp:
        parts.append(imp)
    kind = ev.get("kind")
    if not ev:
        parts.append(_section("evaluation", "Evaluation", "<p class=\"note\">This model was trained "
                              "before mlproxy stored held-out evaluations with models: retrain it "
                              "(DROP MODEL, CREATE MODEL) to see its confusion matrix, curves, "
                              "residuals or clusters.</p>"))
    elif kind == "classification":
        parts.append(_classification(ev))
    elif kind == "regression":
        parts.append(_section("evaluation", "Residuals", _figure(
            "fig-residuals", figures.residuals(ev.get("predicted", []), ev.get("actual", []),
                                               str(row.get("target") or "value")),
            f"{len(ev.get('predicted', [])):,} of {ev.get('rows', 0):,} held-out rows")))
    elif kind == "clustering":
        body = _figure("fig-cluster-sizes", figures.cluster_sizes(ev.get("sizes", []), ev.get("held_out_sizes")))
        if ev.get("centroids"):
            body += _figure("fig-centroids", figures.centroids(ev.get("features", []), ev["centroids"]))
            body += _table(["cluster", *ev.get("features", [])],
                           ([i, *c] for i, c in enumerate(ev["centroids"])),
                           numeric=tuple(range(len(ev.get("features", [])) + 1)))
        parts.append(_section("evaluation", "Clusters", body))
    return parts


def _leaderboard(model: ModelData) -> str:
    ev = model.evaluation
    trials = ev.get("trials") or model.details.get("top_trials") or []
    trials = [t for t in trials if isinstance(t, dict)]
    if not trials:
        return _section("leaderboard", "Leaderboard", "<p class=\"note\">No trials recorded.</p>")
    greater = ev.get("greater_is_better")
    objective = str(model.row.get("objective") or "score")
    if not isinstance(greater, bool):
        greater = objective.lower() not in ("mse", "rmse", "mae", "msd", "logloss", "log_loss")
    ranked = sorted(trials, key=lambda t: float(t.get("score", 0.0)), reverse=greater)
    shown = ranked[:TOP_TRIALS_SHOWN]
    params = {t.get("trial"): t.get("params") for t in model.details.get("top_trials") or []
              if isinstance(t, dict)}
    table = _table(["rank", "trial", "family", "score", "seconds", "fidelity", "phase", "hyperparameters"],
                   ([i + 1, t.get("trial"), t.get("family"), t.get("score"), t.get("seconds"),
                     t.get("fidelity"), t.get("phase"), _params(t.get("params", params.get(t.get("trial"))))]
                    for i, t in enumerate(shown)), numeric=(0, 1, 3, 4, 5))
    progress = model.row.get("progress")
    total = progress.get("trials") if isinstance(progress, dict) else None
    total = total if isinstance(total, int) and total > len(trials) else len(trials)
    note = (f"<p class=\"note\">{total:,} trial{'s' if total != 1 else ''}"
            + (f" (the first {len(trials):,} stored)" if total > len(trials) else "") + ", best first"
            + (f"; the best {len(shown)} shown" if len(shown) < len(trials) else "")
            + ". Scores are on the validation folds of the training rows.</p>")
    svg = figures.leaderboard(trials, objective, greater)
    return _section("leaderboard", "Leaderboard", _figure("fig-leaderboard", svg) + note + table)


def _params(params: Any) -> str | None:
    if not isinstance(params, dict):
        return None
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _importance(model: ModelData) -> str | None:
    shap = _shap_values(model)
    if shap:
        title, label = "Feature importance (Shapley values)", "mean |SHAP value| on held-out rows"
        values = shap
    else:
        values = model.row.get("feature_importances")
        if not isinstance(values, dict) or not values:
            return None
        title, label = "Feature importance", "share of the model's importance"
    values = {k: v for k, v in values.items() if isinstance(v, (int, float))}
    caption = (f"the {figures.MAX_BARS} most important of {len(values)} inputs"
               if len(values) > figures.MAX_BARS else None)
    return _section("importance", title,
                    _figure("fig-importance", figures.importance(values, title, label), caption))


def _shap_values(model: ModelData) -> dict[str, float] | None:
    """Mean |Shapley value| per input from Redshift's EXPLAIN_MODEL document, when the
    catalog row has one (summed over the outputs of a multiclass model)."""
    for doc in (model.row.get("explanations"), model.details.get("explanations")):
        if not isinstance(doc, dict):
            continue
        labels = (doc.get("explanations") or {}).get("kernel_shap")
        if not isinstance(labels, dict):
            continue
        total: dict[str, float] = {}
        for entry in labels.values():
            values = entry.get("global_shap_values") if isinstance(entry, dict) else None
            if isinstance(values, dict):
                for name, v in values.items():
                    if isinstance(v, (int, float)):
                        total[name] = total.get(name, 0.0) + abs(float(v))
        if total:
            return total
    return None


def _classification(ev: dict[str, Any]) -> str:
    body = ""
    matrix, classes = ev.get("confusion_matrix"), ev.get("classes") or []
    if matrix:
        body += _figure("fig-confusion", figures.confusion(matrix, classes),
                        f"{ev.get('rows', 0):,} held-out rows"
                        + (f"; decision threshold {ev['threshold']:.3g}" if isinstance(ev.get("threshold"), float) else ""))
    else:
        body += "<p class=\"note\">Too many classes for a confusion matrix.</p>"
    curves = [c for c in ev.get("curves") or [] if isinstance(c, dict)]
    if matrix:
        body += _per_class(matrix, classes, curves)
    if curves:
        body += ('<div class="row">' + _figure("fig-roc", figures.roc(curves))
                 + _figure("fig-pr", figures.precision_recall(curves)) + "</div>")
    return _section("evaluation", "Classification on held-out rows", body)


def _per_class(matrix: Sequence[Sequence[int]], classes: Sequence[str],
               curves: Sequence[dict[str, Any]]) -> str:
    """Per class: held-out rows, recall and precision (from the confusion matrix),
    and the one-vs-rest AUC where a curve was stored."""
    auc = {str(c.get("class")): (c.get("roc") or {}).get("auc") for c in curves}
    rows = []
    for i, counts in enumerate(matrix):
        label = str(classes[i]) if i < len(classes) else str(i)
        actual = sum(counts)
        predicted = sum(r[i] for r in matrix)
        hit = counts[i]
        rows.append([label, actual, predicted, hit / actual if actual else None,
                     hit / predicted if predicted else None, auc.get(label)])
    return _table(["class", "held-out rows", "predicted as", "recall", "precision", "AUC"], rows,
                  numeric=(1, 2, 3, 4, 5))
