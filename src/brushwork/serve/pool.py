"""A bounded worker pool: inference runs in threads, off the event loop, behind a bounded queue.

Every request that will run a model first takes a *slot*; there are ``workers + queue_size``
of them. A request that finds none free is refused at once (:class:`QueueFullError`, a 503 with
``Retry-After``) instead of waiting without bound. A slot is held from before the upload is read
until the job's thread is done with it, so the number of uploads held in memory and of jobs
waiting is never more than the number of slots.

Threads suit this work: PyTorch, Pillow and NumPy release the GIL in their heavy loops. One worker
per accelerator (or one on the CPU, where a single forward pass already uses every core) is the
usual choice; more workers only interleave passes that compete for the same cores.

A request that runs past its timeout gets :class:`JobTimeoutError` (a 504). A job still waiting
in the queue is cancelled and never starts; a job already running cannot be interrupted (a
forward pass has no safe stopping point), so it runs to the end, its result is dropped, and its
slot stays taken until then: the refusals that follow tell clients the truth about the load.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Assumed seconds per job until one has been measured (it only shapes ``Retry-After``).
FIRST_GUESS_S = 1.0
#: Longest ``Retry-After`` the pool suggests.
MAX_RETRY_AFTER_S = 120


class QueueFullError(Exception):
    """Every slot is taken; ``retry_after`` is a whole number of seconds to wait before trying again."""

    def __init__(self, retry_after: int, capacity: int) -> None:
        super().__init__(f"the server is busy: all {capacity} places (running and queued) are taken; "
                         f"retry in {retry_after} s")
        self.retry_after = retry_after


class JobTimeoutError(Exception):
    """A job did not finish within the request's time; ``started`` says whether it had begun running."""

    def __init__(self, timeout_s: float, started: bool) -> None:
        where = "still running (its result will be discarded)" if started else "still queued (cancelled)"
        super().__init__(f"the request took longer than {timeout_s:g} s; the job was {where}")
        self.started = started


class Slot:
    """One place in the pool, taken by :meth:`InferencePool.reserve`; released exactly once."""

    def __init__(self, pool: InferencePool) -> None:
        self._pool = pool
        self._released = False
        self._handed_over = False
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the place back (idempotent); a slot handed to a job is released by the job."""
        with self._lock:
            if self._released or self._handed_over:
                return
            self._released = True
        self._pool._give_back()

    def _hand_over(self, future: Future[object]) -> None:
        with self._lock:
            if self._released:
                raise RuntimeError("this slot was already released")
            self._handed_over = True

        def done(_: Future[object]) -> None:
            self._pool._give_back()

        future.add_done_callback(done)


class InferencePool:
    """``workers`` threads and ``queue_size`` waiting places; see the module docstring."""

    def __init__(self, *, workers: int, queue_size: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        self.workers = workers
        self.queue_size = queue_size
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="brushwork-serve")
        self._lock = threading.Lock()
        self._taken = 0
        self._running = 0
        self._mean_s: float | None = None

    # -----------------------------------------------------------------------------------------
    # Admission

    def reserve(self) -> Slot:
        """Take a slot or raise :class:`QueueFullError` at once."""
        with self._lock:
            if self._taken >= self.capacity:
                raise QueueFullError(self._retry_after_locked(), self.capacity)
            self._taken += 1
        return Slot(self)

    def _give_back(self) -> None:
        with self._lock:
            self._taken -= 1

    def _retry_after_locked(self) -> int:
        """Seconds until a place is likely free: the measured mean job time x jobs ahead per worker."""
        mean = self._mean_s if self._mean_s is not None else FIRST_GUESS_S
        ahead = max(1, self._taken - self.workers + 1)
        return int(min(MAX_RETRY_AFTER_S, max(1, math.ceil(mean * ahead / self.workers))))

    def stats(self) -> dict[str, int | float | None]:
        with self._lock:
            return {"workers": self.workers, "queue_size": self.queue_size, "in_flight": self._taken,
                    "running": self._running, "mean_job_s": None if self._mean_s is None else round(self._mean_s, 4)}

    # -----------------------------------------------------------------------------------------
    # Running

    async def run(self, slot: Slot, fn: Callable[[], T], *, timeout_s: float) -> T:
        """Run ``fn()`` in a worker thread, holding ``slot`` until the thread is done with it."""
        started = threading.Event()

        def job() -> T:
            started.set()
            with self._lock:
                self._running += 1
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                elapsed = time.perf_counter() - t0
                with self._lock:
                    self._running -= 1
                    self._mean_s = elapsed if self._mean_s is None else 0.8 * self._mean_s + 0.2 * elapsed

        future = self._executor.submit(job)
        slot._hand_over(future)  # type: ignore[arg-type]
        try:
            # on expiry wait_for cancels the wrapper, which cancels the job if it has not started
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=max(timeout_s, 0.0))
        except asyncio.TimeoutError:
            future.cancel()
            raise JobTimeoutError(timeout_s, started.is_set()) from None

    def shutdown(self) -> None:
        """Stop taking jobs; queued ones are cancelled, running ones finish in their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
