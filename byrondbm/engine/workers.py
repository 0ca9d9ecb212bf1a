"""Worker processes that run background jobs (jobs.py), so a flush or a compaction never holds the
writer's GIL (docs/design.md, "Background work": a compactor *thread* slowed the writer's ``os.write``
15x by the convoy effect).

Each worker is a new interpreter running `serve`, started with `subprocess` (not `multiprocessing`: its
spawn and forkserver methods re-import the user's ``__main__`` in the child, which re-runs a script that
lacks a ``__name__ == "__main__"`` guard). It imports byrondbm from where this process did. It talks over two pipes with `multiprocessing.connection`
framing (pickled messages):

    parent -> worker   job (a FlushJob or CompactionJob)
    worker -> parent   ("ok", JobResult) | ("error", exception)

The worker exits when its request pipe reaches end of file, so a parent killed with SIGKILL leaves no
worker behind; it ignores SIGINT (a Ctrl-C is the parent's to handle). A worker that dies mid-job (killed,
out of memory) is replaced and the job run again, up to `RETRIES` times; its partial outputs are temp
files that the job's next run or the next open removes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from ..errors import error

__all__ = ["WorkerPool", "RETRIES"]

RETRIES = 3
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_BOOT = (
    "import sys; sys.path[0] = sys.argv[1]; "
    "from byrondbm.engine.workers import serve; serve(int(sys.argv[2]), int(sys.argv[3]))"
)


class _Worker:
    """One worker process and the parent's ends of its two pipes."""

    def __init__(self) -> None:
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, _PACKAGE_ROOT, str(job_r), str(res_w)],
                pass_fds=(job_r, res_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (job_r, job_w, res_r, res_w):
                os.close(fd)
            raise
        os.close(job_r)
        os.close(res_w)
        self._send = Connection(job_w, readable=False)
        self._recv = Connection(res_r, writable=False)
        self._stop_lock = threading.Lock()  # the pool's close and a job's thread may both stop it

    @property
    def pid(self) -> int:
        return self.process.pid

    def run(self, job: Any) -> tuple[str, Any]:
        """Send ``job`` and wait for its answer (the wait releases the GIL). `EOFError`/`OSError` if the
        worker died."""
        self._send.send(job)
        answer: tuple[str, Any] = self._recv.recv()
        return answer

    def stop(self) -> None:
        """Kill the process now (a job it runs leaves temp files only) and reap it. Idempotent."""
        with self._stop_lock:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for conn in (self._send, self._recv):
                conn.close()


class WorkerPool:
    """Up to ``size`` worker processes, started when first needed. `run` is called by background threads
    and blocks until a worker answers. Thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._cond = threading.Condition()
        self._closed = False
        self.restarts = 0

    def run(self, job: Any) -> Any:
        """Run ``job`` in a worker and return its result; an exception the job raised is raised here.
        A worker that dies is replaced and the job retried; after `RETRIES` deaths `byrondbm.error`."""
        for attempt in range(RETRIES + 1):
            worker = self._acquire()
            try:
                status, value = worker.run(job)
            except (EOFError, OSError) as e:
                self._discard(worker)
                if self._closed:
                    raise error("background job abandoned: the database is closing") from None
                if attempt == RETRIES:
                    raise error(f"background worker died {RETRIES + 1} times running one job") from e
                self.restarts += 1
                continue
            except BaseException:
                self._release(worker)
                raise
            self._release(worker)
            if status == "error":
                raise value
            return value
        raise AssertionError("unreachable")

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                if self._closed:
                    raise error("background job abandoned: the database is closing")
                if self._idle:
                    worker = self._idle.pop()
                    break
                if len(self._busy) < self._size:
                    worker = _Worker()
                    break
                self._cond.wait()
            self._busy.add(worker)
            return worker

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._busy.discard(worker)
            if self._closed:
                worker.stop()
            else:
                self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.stop()
        with self._cond:
            self._busy.discard(worker)
            self._cond.notify()

    def pids(self) -> list[int]:
        """Process ids of the live workers (for stats and tests)."""
        with self._cond:
            return [w.pid for w in list(self._idle) + list(self._busy)]

    def close(self) -> None:
        """Kill every worker, running jobs included (their outputs are temp files). Idempotent."""
        with self._cond:
            self._closed = True
            workers = list(self._idle) + list(self._busy)
            self._idle.clear()
            self._cond.notify_all()
        for w in workers:
            w.stop()


def serve(job_fd: int, result_fd: int) -> None:
    """The worker process's loop: run each job received until the parent's end of the pipe closes."""
    from .jobs import run_job

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the parent, which stops its workers
    jobs = Connection(job_fd, writable=False)
    results = Connection(result_fd, readable=False)
    while True:
        try:
            job = jobs.recv()
        except (EOFError, OSError):
            return
        try:
            answer: tuple[str, Any] = ("ok", run_job(job))
        except Exception as e:  # sent back to the parent, which raises it
            answer = ("error", e)
        try:
            results.send(answer)
        except (BrokenPipeError, OSError):
            return
        except Exception as e:  # an exception that does not pickle
            results.send(("error", error(f"background job failed: {e!r}")))

