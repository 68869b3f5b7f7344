"""The model import, run in a worker process: `python -m compiler.importer`.

Reads a model file's bytes on stdin and the declared signature as JSON (--declared),
writes the artifact (compiler/imported.py, then compiler.artifact.dump) to --out and
prints one JSON line: what was imported, or {"error", "sqlstate", "hint"} with exit
status 1. Treelite parses untrusted bytes here, in a process of its own, so a parser
that crashes or hangs (the caller kills it after a timeout) cannot reach the proxy.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from .artifact import dump
from .errors import CompilerError
from .imported import Declaration, import_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compiler.importer")
    parser.add_argument("--declared", required=True, help='{"arg_types": [...], "return_type": "..."}')
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    declared = json.loads(args.declared)
    data = sys.stdin.buffer.read(args.max_bytes + 1)
    try:
        if len(data) > args.max_bytes:
            raise CompilerError(f"the model file is larger than {args.max_bytes} bytes")
        imported = import_model(data, Declaration(tuple(declared["arg_types"]), declared["return_type"]),
                                max_bytes=args.max_bytes)
        artifact = dump(imported)
        args.out.write_bytes(artifact.data)
    except CompilerError as exc:
        print(json.dumps({"error": exc.message, "sqlstate": exc.sqlstate, "hint": exc.hint,
                          "clause": getattr(exc, "clause", "source")}))
        return 1
    except Exception as exc:  # noqa: BLE001 - whatever it is, the statement's error
        traceback.print_exc()
        print(json.dumps({"error": f"the model could not be imported: {type(exc).__name__}: {exc}",
                          "sqlstate": "XX000", "hint": None}))
        return 1
    print(json.dumps({
        "sha256": artifact.sha256, "problem_type": imported.problem_type, "model_type": imported.model_type,
        "objective": imported.objective, "classes": imported.classes,
        "arg_names": [i["name"] for i in imported.preprocessing["inputs"]], "summary": imported.summary,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
