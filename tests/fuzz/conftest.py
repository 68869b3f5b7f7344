"""Fixtures and options of the mutation fuzzer's tests.

`pytest tests/fuzz --fuzz-cases N` (or MLPROXY_FUZZ_CASES=N) runs N mutated cases
instead of the bounded default; `--fuzz-start K` (MLPROXY_FUZZ_START) starts at
case K, to explore past the cases the default run covers.
"""

from __future__ import annotations

import os

import pytest

from .env import FuzzEnv, start_env

DEFAULT_CASES = 160


def pytest_addoption(parser):
    group = parser.getgroup("fuzz", "mutation fuzzer")
    group.addoption("--fuzz-cases", type=int, default=None,
                    help=f"mutated cases to run (default {DEFAULT_CASES}, or MLPROXY_FUZZ_CASES)")
    group.addoption("--fuzz-start", type=int, default=None,
                    help="the first case number (default 0, or MLPROXY_FUZZ_START)")


@pytest.fixture(scope="session")
def fuzz_cases(request) -> tuple[int, int]:
    """(how many mutated cases, the first case number)."""
    def option(name, env, default):
        value = request.config.getoption(name, default=None)
        return value if value is not None else int(os.environ.get(env, default))
    return (option("--fuzz-cases", "MLPROXY_FUZZ_CASES", DEFAULT_CASES),
            option("--fuzz-start", "MLPROXY_FUZZ_START", 0))


@pytest.fixture(scope="session")
def fuzz_env(pg, tmp_path_factory) -> FuzzEnv:
    """The proxy and the two databases, with the fuzz model trained."""
    env = start_env(pg.uri, tmp_path_factory.mktemp("fuzz-data"))
    yield env
    env.proxy.stop()
