"""`mlproxy report [--dsn URL] schema.model -o report.html`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .load import ReportError, load_model, parse_model_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="write an HTML report of one model (needs: pip install 'mlproxy[report]')",
        description="Write one self-contained HTML page about a model: its settings, the "
                    "leaderboard, feature importance, and its evaluation on the held-out rows "
                    "(confusion matrix and ROC/PR curves, residuals, or clusters). Connects as "
                    "you, through the proxy or straight to Postgres, and shows what your role "
                    "may see.")
    report.add_argument("model", metavar="[SCHEMA.]MODEL",
                        help="the model, as SQL names it (quote with \"...\" to keep case)")
    report.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the HTML file to write")
    report.add_argument("--dsn", "--upstream", dest="dsn", default=os.environ.get("MLPROXY_DSN"),
                        metavar="URL",
                        help="whom to connect as, e.g. postgresql://alice@localhost:6543/sales "
                             "(the proxy or Postgres itself; env MLPROXY_DSN; default: the "
                             "PGHOST/PGUSER/PGDATABASE/... variables)")
    report.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from .page import render  # needs matplotlib
    except ImportError as exc:
        print(f"mlproxy: {exc}", file=sys.stderr)
        return 1
    try:
        schema, name = parse_model_name(args.model)
        model = asyncio.run(load_model(args.dsn, schema, name))
    except ReportError as exc:
        print(f"mlproxy report: {exc}", file=sys.stderr)
        return 1
    html = render(model)
    try:
        args.output.write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"mlproxy report: could not write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({model.title}, {model.state})")
    return 0
