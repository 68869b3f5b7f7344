"""The relay core knows bytes, not models (DESIGN.md, principle 8): none of its
modules imports proxy.inference, and they import each other without a circle
(interfaces they share are protocols: intercept.InterceptedSession,
session.SessionHost, pump.Session, reply_rewrite.ReplyRewrite)."""

from __future__ import annotations

import ast
from pathlib import Path

PROXY = Path(__file__).resolve().parents[2] / "proxy"
CORE = ["session", "server", "pump", "framing", "wire_scan", "intercept", "owed_replies",
        "reply_rewrite", "protocol", "errors", "startup", "upstream"]


def _imports(module: str) -> set[str]:
    """The proxy modules `module` imports (also under TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse((PROXY / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.update([node.module] if node.module else [a.name for a in node.names])
            elif node.module and node.module.split(".")[0] == "proxy":
                found.add(node.module.removeprefix("proxy."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("proxy.") for a in node.names if a.name.startswith("proxy"))
    return found


def test_the_relay_core_does_not_import_the_inference_package():
    for module in CORE:
        assert not any(m.split(".")[0] in ("inference", "ml_commands") for m in _imports(module)), module


def test_the_relay_core_imports_no_circle():
    graph = {m: {i for i in _imports(m) if i in CORE} for m in CORE}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for dep in graph[module]:
            visit(dep, [*path, module])
        done.add(module)

    for module in CORE:
        visit(module, [])
