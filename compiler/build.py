"""Building native libraries without blocking the caller.

`submit_build` returns a Future at once; the build runs in a separate Python process
(`compiler.worker`) watched by a thread, so neither the compiler's CPU time nor a
crash or hang inside code generation can reach the calling process, and a build that
overruns its timeout is killed. A cache hit is answered without starting anything.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from . import cache
from .artifact import Artifact
from .errors import BuildError

DEFAULT_TIMEOUT = 1800.0
_TOOLCHAINS = ("gcc", "clang", "cc")
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def find_toolchain(preferred: str | None = None) -> str | None:
    """The C compiler to use: `preferred`, else $MLPROXY_CC, else the first of gcc,
    clang, cc on PATH. None when there is none (the predictor then uses gtil)."""
    name = preferred or os.environ.get("MLPROXY_CC")
    if name:
        return name if shutil.which(name) else None
    return next((t for t in _TOOLCHAINS if shutil.which(t)), None)


def build_library(artifact: Artifact, cache_dir: Path | str | None = None, *, toolchain: str | None = None,
                  jobs: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Path of the compiled library for a tree artifact, building it if needed
    (blocking; see `submit_build` for the non-blocking form). Raises BuildError."""
    return submit_build(artifact, cache_dir, toolchain=toolchain, jobs=jobs, timeout=timeout).result()


def submit_build(artifact: Artifact, cache_dir: Path | str | None = None, *, toolchain: str | None = None,
                 jobs: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> concurrent.futures.Future[Path]:
    """Start building (or find) the library; the Future gives its Path or BuildError.
    Wrap it with asyncio.wrap_future to await it from an event loop."""
    cache_dir = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
    future: concurrent.futures.Future[Path] = concurrent.futures.Future()
    if artifact.kind != "tree":
        future.set_exception(BuildError(f"only tree models are compiled; this artifact is {artifact.kind!r}"))
        return future
    hit = cache.lookup(cache_dir, artifact.sha256)
    if hit is not None:
        future.set_result(hit.library)
        return future
    cc = find_toolchain(toolchain)
    if cc is None:
        wanted = toolchain or os.environ.get("MLPROXY_CC") or " / ".join(_TOOLCHAINS)
        future.set_exception(BuildError(f"no C compiler found (looked for {wanted})"))
        return future
    return _pool().submit(_run_worker, artifact, cache_dir, cc, jobs or os.cpu_count() or 1, timeout)


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            # threads only wait on worker processes; the CPU work is in the workers
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="mlproxy-build")
        return _executor


def _run_worker(artifact: Artifact, cache_dir: Path, toolchain: str, jobs: int, timeout: float) -> Path:
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "compiler.worker", "--cache-dir", str(cache_dir), "--toolchain", toolchain,
           "--jobs", str(jobs), "--expected-sha256", artifact.sha256]
    # its own session, so a timeout can stop the compiler processes it started too
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(artifact.data, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise BuildError(f"native build of {artifact.sha256[:12]} took longer than {timeout:g}s and was stopped") from exc
    except BaseException:
        _kill_group(proc)
        raise
    result = _last_json_line(stdout)
    if proc.returncode != 0 or result is None or "library" not in result:
        reason = (result or {}).get("error") or stderr.decode(errors="replace").strip()[-2000:] \
            or f"worker exited with status {proc.returncode}"
        raise BuildError(f"native build of {artifact.sha256[:12]} failed: {reason}")
    return Path(result["library"])


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (OSError, AttributeError):  # already gone, or no process groups (Windows)
        proc.kill()
    proc.communicate()


def _last_json_line(stdout: bytes) -> dict | None:
    # TL2cgen and Treelite may log to stdout; the worker's answer is the last line
    for line in reversed(stdout.decode(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None
