"""Worker threads that rewrite big DataRow batches off the event loop.

A batch of a streaming result (thousands of rows) takes milliseconds to decode,
predict and splice: on the event loop that stalls every other session, and the
session itself could not receive the next batch meanwhile. The work is numpy, Arrow
and the native predictor, which release the GIL for their bulk, so a thread runs it
while the loop goes on relaying. Small batches (a single-row lookup) stay on the
loop: handing them to a thread costs more than doing them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (tracker reads this module's thresholds)
    from .tracker import RowRewriter

# Batches of at least this many rows, or bytes, go to a worker thread.
THREAD_MIN_ROWS = 512
THREAD_MIN_BYTES = 1 << 20
# Batches of one session being rewritten at once. While that many are on the
# workers the session holds the rows that arrive (a bigger next batch); with one
# full batch queued behind them it stops reading the upstream.
WORKERS_PER_SESSION = 2

# Threads of the batches of remote models (remote.py): they wait for an inference
# endpoint, not the CPU, so they have a pool of their own: a slow endpoint never holds
# up another session's batches. A session has at most WORKERS_PER_SESSION + 1 batches
# out at once.
REMOTE_THREADS = 32

_executor: ThreadPoolExecutor | None = None
_remote_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2)),
                                               thread_name_prefix="mlproxy-rows")
    return _executor


def _remote_pool() -> ThreadPoolExecutor:
    global _remote_executor
    if _remote_executor is None:
        with _lock:
            if _remote_executor is None:
                _remote_executor = ThreadPoolExecutor(max_workers=REMOTE_THREADS,
                                                      thread_name_prefix="mlproxy-remote")
    return _remote_executor


def submit(rewriter: RowRewriter, rows: bytes, count: int, starts: Any = None) -> Future:
    """`rewriter.data_rows(rows, count, starts)` on a worker thread (a few rows of a
    remote model's result: on the event loop, awaiting the endpoint; call it there)."""
    if not getattr(rewriter, "remote", False):
        return _pool().submit(rewriter.data_rows, rows, count, starts)
    if count <= REMOTE_ON_LOOP_ROWS:
        return _on_loop(rewriter, rows, count, starts)
    return _remote_pool().submit(rewriter.data_rows, rows, count, starts)


# Rows of a remote model's result rewritten on the event loop (remote.rewrite_on_loop).
REMOTE_ON_LOOP_ROWS = 32


def _on_loop(rewriter: RowRewriter, rows: bytes, count: int, starts: Any) -> Future:
    """remote.rewrite_on_loop as a task, behind the Future the session expects."""
    from .remote import rewrite_on_loop

    future: Future = Future()
    task = asyncio.ensure_future(rewrite_on_loop(rewriter, rows, count, starts))

    def task_done(done: asyncio.Task) -> None:
        if future.done():  # cancelled by the session
            return
        if done.cancelled():
            future.cancel()
        elif done.exception() is not None:
            future.set_exception(done.exception())
        else:
            future.set_result(done.result())

    task.add_done_callback(task_done)
    future.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
    return future
