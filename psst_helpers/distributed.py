"""TensorFlow's own distributed runtime for simulations (chapter 7).

TensorFlow can run operations on other processes -- on this machine or on others -- that each run
a ``tf.distribute.Server`` (a gRPC server). A client connects to the cluster once and then places
work on a task with a device string, ``with tf.device("/job:worker/task:1"): ...``; the result is
a tensor that lives on that task until the client reads it.

This module gives the book's three uses of that runtime:

* :class:`LocalCluster` starts K worker processes on 127.0.0.1, waits until they serve, connects
  the client, and always stops them again (by the PIDs it started). Each worker also watches a pipe
  from the client -- its standard input -- and exits when the pipe reaches end-of-file, which the
  operating system brings about when the client process ends in any way, ``kill -9`` included. So
  a killed client leaves no orphans, on Linux and macOS alike, and the workers live as long as the
  client *process*, whichever of its threads started them.
* :class:`RemoteCluster` connects to workers already running on other machines, started there with
  ``python -m psst_helpers.distributed worker --hosts h1:2222,h2:2222 --task K`` (or ``TF_CONFIG``).
* :meth:`Cluster.map` runs independent simulations (a parameter sweep) across the workers, one job
  per worker at a time, and gathers the results; a worker that dies is reported within seconds
  with its task named, the other workers are stopped, and the results gathered so far are kept.
  Whenever ``map`` raises (a dead worker, a job's error, Ctrl-C) no further job starts. The jobs
  run on a :class:`concurrent.futures.ThreadPoolExecutor`, one thread per worker. TensorFlow's own
  scheduler (``tf.distribute.experimental.coordinator.ClusterCoordinator``) was measured beside it
  on the same loopback workers and was no faster for the same job; it runs only graph functions
  (``fn`` here may be any Python, e.g. a :func:`psst_helpers.simulate` call with its eager checks),
  needs a parameter-server process, and re-runs the jobs of a dead worker on the others instead of
  reporting it.

Security: a TensorFlow worker executes whatever any client that reaches its port sends it; its
gRPC server has no authentication and listens on *every* network interface of the machine (``ss
-ltn`` shows ``*:PORT``), whatever host name the cluster names. On a machine that others can
reach, block the ports with a firewall or keep the cluster inside a private network.

One cluster per client process, the package's choice: TensorFlow lets a process call
``tf.config.experimental_connect_to_cluster`` again with another cluster, and then invalidates every
tensor handle on the old cluster's workers (its documentation says so). A notebook that started a
second cluster would find the arrays, variables and states it still holds from the first one unusable,
some of them long after the switch. So :meth:`Cluster.connect` connects a process once, and starting
a *different* cluster in the same process raises :class:`ClusterError`; restarting the same cluster
(:meth:`LocalCluster.stop` then :meth:`LocalCluster.start`, same ports) is allowed. Restart the kernel,
or use a new process, for another cluster.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

from .errors import ClusterError, ParameterError, WorkerDiedError
from .solvers.checks import positive_int, positive_number

__all__ = ["Cluster", "LocalCluster", "RemoteCluster", "ClusterError", "WorkerDiedError", "free_port", "serve",
           "is_tf_cleanup_race", "retry_on_cleanup_race", "RETRIES"]

JOB = "worker"
#: How often :func:`retry_on_cleanup_race` runs a call again (used by :meth:`Cluster.map` for each job and by
#: :func:`psst_helpers.partition.run_partitioned` for each stretch).
RETRIES = 2
_T = TypeVar("_T")
_SKIPPED = object()  # what Cluster.map's job returns when it was told not to start
_CONNECTED: Optional[Dict[str, List[str]]] = None  # the cluster this process is connected to


def is_tf_cleanup_race(exc: BaseException) -> bool:
    """TensorFlow's "Tried to remove non-existent function": a helper function deleted twice by two threads
    (TF 2.21, one client thread per device). The computation itself was fine; running it again is safe."""
    return "remove non-existent function" in str(exc)


def retry_on_cleanup_race(fn: Callable[[], _T], *, attempts: Optional[int] = None, aborted: bool = False) -> _T:
    """``fn()``, called again when TensorFlow failed it with its clean-up race (:func:`is_tf_cleanup_race`).

    Parameters
    ----------
    fn : callable without arguments
        Must have no side effects that a second call would repeat (a job, a stretch of integration
        from a kept start state): the race strikes after the computation, so a second call gives
        the same result.
    attempts : int, optional
        Calls in all; default ``RETRIES + 1`` (read at each call).
    aborted : bool
        Also call again after ``tf.errors.AbortedError`` (gRPC delivered one request twice under load,
        "The same RecvTensor request was received twice", and TensorFlow aborted the call).

    Any other error, and the race once the attempts are spent, is raised unchanged.
    """
    import tensorflow as tf

    n = RETRIES + 1 if attempts is None else positive_int("attempts", attempts)
    for attempt in range(1, n + 1):
        try:
            return fn()
        except (tf.errors.AbortedError, tf.errors.InvalidArgumentError) as exc:
            retry = is_tf_cleanup_race(exc) or (aborted and isinstance(exc, tf.errors.AbortedError))
            if attempt == n or not retry:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _reachable(address: str, timeout: float = 1.0) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except OSError:
        return False


def _to_numpy(x: Any) -> Any:
    """Tensors (also nested in dicts, lists, tuples) to NumPy arrays: reading them fetches the data."""
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_numpy(v) for v in x)
    return x.numpy() if hasattr(x, "numpy") else x


class Cluster:
    """What a connected cluster offers, local or remote: its devices, liveness and :meth:`map`."""

    addresses: List[str]

    @property
    def n_workers(self) -> int:
        return len(self.addresses)

    @property
    def cluster_spec(self) -> Dict[str, List[str]]:
        return {JOB: list(self.addresses)}

    def device(self, task: int) -> str:
        """The device string of worker ``task``'s CPU, for ``with tf.device(...)``."""
        if isinstance(task, bool) or not hasattr(task, "__index__") or not 0 <= task < self.n_workers:
            raise ParameterError(f"task {task!r} does not exist; this cluster has tasks 0..{self.n_workers - 1}")
        return f"/job:{JOB}/replica:0/task:{task}/device:CPU:0"

    @property
    def devices(self) -> List[str]:
        return [self.device(k) for k in range(self.n_workers)]

    def dead_workers(self) -> List[int]:
        """Tasks whose worker no longer serves."""
        return [k for k, a in enumerate(self.addresses) if not _reachable(a)]

    def _died(self, task: int, partial: Dict[int, Any], detail: str = "", note: str = "") -> WorkerDiedError:
        """The error for a dead worker (LocalCluster adds the process details and stops the others)."""
        return WorkerDiedError(
            f"worker task {task} ({self.addresses[task]}{detail}) stopped while the client was using it; "
            f"{len(partial)} finished results are kept in .partial{note}",
            task=task, address=self.addresses[task], partial=partial)

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], *, progress: Optional[bool] = None,
            poll_s: float = 0.2, desc: str = "jobs") -> List[Any]:
        """Run ``fn(item)`` for every item on the workers and return the results in order.

        Each worker runs one job at a time (the next free worker takes the next item), inside
        ``with tf.device(<its device>)``; tensors in a result are read back as NumPy arrays. ``fn``
        should build its TensorFlow computation inside (e.g. a :class:`psst_helpers.Integrator`)
        so that it runs on that worker. Build compiled loops once, not once per job:
        :func:`psst_helpers.simulate` and :func:`psst_helpers.networks.integrator_for` keep one per
        model structure. A job that fails with TensorFlow's "Tried to remove non-existent function"
        (a clean-up race between the threads, TF 2.21) is run again (:func:`retry_on_cleanup_race`).
        The jobs run on a :class:`concurrent.futures.ThreadPoolExecutor` with one thread per worker.

        Raises
        ------
        WorkerDiedError
            Within seconds of a worker stopping (the liveness of every worker is checked every
            ``poll_s`` s); ``.partial`` holds the finished results by item index.
        Exception
            Whatever ``fn`` raised on a healthy worker (the first such error).
        KeyboardInterrupt
            Ctrl-C while waiting.

        Whatever ``map`` raises, no job starts after it: the jobs still queued are dropped, and a
        job already running on a worker finishes there but its result is discarded (TensorFlow
        cannot cancel an operation placed on a remote task).
        """
        import tensorflow as tf

        from ._progress import progress_bar

        poll_s = positive_number("poll_s", poll_s, what="seconds between two liveness checks")
        items = list(items)
        results: Dict[int, Any] = {}
        if not items:
            return []
        free: "queue.SimpleQueue[int]" = queue.SimpleQueue()  # the tasks not running a job
        for k in range(self.n_workers):
            free.put(k)
        halt = threading.Event()  # set when a job fails or map returns or raises: no job starts after it

        def job(i: int) -> Any:
            if halt.is_set():
                return _SKIPPED  # map is raising or has returned: this job never starts
            task = free.get()  # one is always free: as many threads as tasks
            try:
                def once() -> Any:
                    with tf.device(self.device(task)):
                        return _to_numpy(fn(items[i]))

                return retry_on_cleanup_race(once)
            except BaseException:
                halt.set()
                raise
            finally:
                free.put(task)

        bar = progress_bar(progress, total=len(items), desc=desc, unit="job")
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.n_workers, thread_name_prefix="psst-map")
        try:
            futures = {pool.submit(job, i): i for i in range(len(items))}
            pending = set(futures)
            while True:
                done, pending = concurrent.futures.wait(pending, timeout=poll_s,
                                                        return_when=concurrent.futures.FIRST_COMPLETED)
                failed = None
                for f in done:
                    if f.exception() is None:
                        if f.result() is not _SKIPPED:
                            results[futures[f]] = f.result()
                    elif failed is None or futures[f] < futures[failed]:
                        failed = f
                if bar is not None:
                    bar.update(len(results) - bar.n)
                dead = self.dead_workers()
                if dead:
                    raise self._died(dead[0], dict(results))
                if failed is not None:
                    exc = failed.exception()
                    # A killed worker's connection can break a moment before its process is seen
                    # to have exited: give the liveness check a few seconds before blaming ``fn``.
                    grace = time.monotonic() + (5.0 if isinstance(exc, tf.errors.OpError) else 0.0)
                    while True:
                        dead = self.dead_workers()
                        if dead:
                            raise self._died(dead[0], dict(results)) from exc
                        if time.monotonic() >= grace:
                            break
                        time.sleep(0.1)
                    raise exc
                if not pending:
                    return [results[i] for i in range(len(items))]
        finally:
            halt.set()
            # queued jobs are cancelled; one running on a worker finishes there (no thread is waited for)
            pool.shutdown(wait=False, cancel_futures=True)
            if bar is not None:
                bar.close()

    def connect(self) -> "Cluster":
        """Connect this process to the cluster (one cluster per process: the package's choice, see the module
        docstring)."""
        global _CONNECTED
        import tensorflow as tf

        spec = self.cluster_spec
        if _CONNECTED is not None and _CONNECTED != spec:
            raise ClusterError(
                f"this Python process is already connected to the cluster {_CONNECTED}; psst_helpers connects a "
                "process to one cluster only, because connecting to another would invalidate every tensor this "
                "process holds on the first one's workers. Restart the kernel, or run the new cluster from a "
                "fresh Python process.")
        tf.config.experimental_connect_to_cluster(tf.train.ClusterSpec(spec))
        _CONNECTED = spec
        # loops compiled before the connection are bound to the local devices: simulate() must trace anew
        from .networks import clear_compiled

        clear_compiled()
        return self


class RemoteCluster(Cluster):
    """Workers already running elsewhere (other machines), e.g. started on each of them with::

        python -m psst_helpers.distributed worker --hosts node1:2222,node2:2222 --task K

    Every machine must reach every other on these ports (open them in the firewall *only* to the
    cluster's machines: the workers run anything sent to them, see the module docstring).

    Parameters
    ----------
    hosts : list of "host:port", optional
        The workers in task order; default: ``TF_CONFIG``'s ``cluster.worker`` list.
    """

    def __init__(self, hosts: Optional[Sequence[str]] = None) -> None:
        if hosts is None:
            hosts = _hosts_from_tf_config()
        self.addresses = [str(h) for h in hosts]
        if not self.addresses:
            raise ClusterError("no worker hosts given (pass hosts=[...] or set TF_CONFIG)")


class LocalCluster(Cluster):
    """K TensorFlow worker processes on this machine, on 127.0.0.1 ports, for the client in this process.

    Use it as a context manager (``with LocalCluster(2) as cluster: ...``) or call :meth:`start`
    and :meth:`stop`. The workers are stopped by PID on :meth:`stop`, when the object is garbage
    collected and when Python exits; when the client process is killed, each worker sees its
    standard input (a pipe from the client) close and exits. Their lifetime is the client
    process's, not that of the thread that started them.

    Parameters
    ----------
    n_workers : int
        Number of worker processes.
    threads_per_worker : int
        TensorFlow intra-op threads in each worker; 1 when several workers share a few cores, so
        they do not compete for them.
    start_timeout : float
        Seconds to wait for the workers to serve (importing TensorFlow takes a few seconds each).
    ports : list of int, optional
        Ports to try first; any that turns out to be taken is replaced by a free one.
    connect : bool
        Connect this process to the cluster once the workers serve (default True).
    log_dir : str or Path, optional
        Where the workers write their logs (default: a temporary folder, removed with the
        cluster); their last lines are quoted in errors.
    """

    def __init__(self, n_workers: int = 2, *, threads_per_worker: int = 1, start_timeout: float = 60.0,
                 ports: Optional[Sequence[int]] = None, connect: bool = True,
                 log_dir: Optional[str] = None, max_attempts: int = 3) -> None:
        self.n = positive_int("n_workers", n_workers)
        if isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int) or threads_per_worker < 0:
            raise ParameterError(f"threads_per_worker must be a whole number >= 0 (0: TensorFlow's default), "
                                 f"got {threads_per_worker!r}")
        self.threads = threads_per_worker
        self.start_timeout = positive_number("start_timeout", start_timeout, what="seconds")
        self._ports = list(ports) if ports is not None else []
        self._connect = connect
        self.max_attempts = positive_int("max_attempts", max_attempts)
        self._running = False  # between a successful start() and stop()
        self._closed = False
        self._tmp = None if log_dir is not None else tempfile.TemporaryDirectory(prefix="psst-cluster-")
        self.log_dir = Path(log_dir if log_dir is not None else self._tmp.name)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.addresses: List[str] = []
        self.procs: List[subprocess.Popen] = []
        self.replaced_ports: List[int] = []  # ports found taken and replaced at start
        self._finalizer: Optional[weakref.finalize] = None

    # -- life cycle ------------------------------------------------------------------------
    @property
    def pids(self) -> List[int]:
        """PIDs of the worker processes started (alive or not)."""
        return [p.pid for p in self.procs]

    def start(self) -> "LocalCluster":
        """Start the workers, wait until each serves, and connect (unless ``connect=False``).

        After :meth:`stop`, ``start()`` starts fresh workers on the same ports (this process stays
        connected to the same cluster; compiled loops are traced again). A port taken meanwhile by
        another program is replaced, and then the connection refuses the changed cluster.
        """
        if self._closed:
            raise ClusterError("this LocalCluster is closed (its log folder is removed); make a new one")
        if self._running:
            raise ClusterError("this LocalCluster is already started; stop() it before starting it again")
        if self._connect and _CONNECTED is not None and (not self.addresses or _CONNECTED != self.cluster_spec):
            self.connect()  # raises the one-cluster-per-process error before any process starts
        if self.addresses:  # a restart: the same ports, so this process's connection stays valid
            ports = [int(a.rsplit(":", 1)[1]) for a in self.addresses]
        else:
            ports = [self._ports[k] if k < len(self._ports) else free_port() for k in range(self.n)]
        last_error = ""
        for attempt in range(self.max_attempts):
            self.addresses = [f"127.0.0.1:{p}" for p in ports]
            self._launch()
            failed, last_error = self._wait_until_serving()
            if not failed:
                break
            self.stop()
            # a worker that could not bind its port: try again on fresh ports for those tasks
            for k in failed:
                self.replaced_ports.append(ports[k])
                ports[k] = free_port()
        else:
            raise ClusterError(f"the workers did not start after {self.max_attempts} attempts; last error:\n"
                               f"{last_error}")
        self._running = True
        if self._connect:
            try:
                self.connect()
            except BaseException:
                self.stop()
                raise
        return self

    def _launch(self) -> None:
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        hosts = ",".join(self.addresses)
        self.procs = []
        for k in range(self.n):
            ready = self.log_dir / f"worker{k}.ready"
            ready.unlink(missing_ok=True)
            log = open(self.log_dir / f"worker{k}.log", "wb")
            cmd = [sys.executable, "-m", "psst_helpers.distributed", "worker", "--hosts", hosts, "--task", str(k),
                   "--threads", str(self.threads), "--ready-file", str(ready), "--exit-at-eof"]
            # own session: a Ctrl-C meant for the client does not reach the workers (stop() does).
            # stdin is a pipe whose only writer is this process (close_fds keeps it out of other
            # children): when this process ends, however it ends, the worker reads end-of-file and exits.
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE,
                                               env=env, start_new_session=True, close_fds=True))
            log.close()
        self._finalizer = weakref.finalize(self, _kill, list(self.procs))

    def _log_tail(self, k: int, lines: int = 15) -> str:
        try:
            text = (self.log_dir / f"worker{k}.log").read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def _wait_until_serving(self):
        deadline = time.monotonic() + self.start_timeout
        ready = [False] * self.n
        while time.monotonic() < deadline:
            failed = [k for k, p in enumerate(self.procs) if p.poll() is not None]
            if failed:
                k = failed[0]
                return failed, (f"worker task {k} ({self.addresses[k]}) exited with code {self.procs[k].returncode}; "
                                f"its log ends:\n{self._log_tail(k)}")
            ready = [r or (self.log_dir / f"worker{k}.ready").exists() for k, r in enumerate(ready)]
            if all(ready):
                return [], ""
            time.sleep(0.05)
        self.stop()
        late = [k for k, r in enumerate(ready) if not r]
        raise ClusterError(f"worker tasks {late} did not serve within {self.start_timeout:.0f} s; log of task "
                           f"{late[0]}:\n{self._log_tail(late[0])}")

    def stop(self) -> None:
        """Stop every worker process this cluster started (SIGKILL by PID) and wait for them.

        :meth:`start` may be called again afterwards (same ports, new processes)."""
        self._running = False
        _kill(self.procs)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None

    def close(self) -> None:
        """:meth:`stop`, and remove the temporary log folder."""
        self.stop()
        self.procs = []
        self._closed = True
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def kill_worker(self, task: int) -> None:
        """Kill one worker (SIGKILL), as a crash would: to try out failure handling."""
        if not self.procs:
            raise ClusterError("this LocalCluster has no worker processes (it was never started, or is closed)")
        self.device(task)  # a task that does not exist: ParameterError
        self.procs[task].kill()

    # -- liveness ----------------------------------------------------------------------------
    def dead_workers(self) -> List[int]:
        return [k for k, p in enumerate(self.procs) if p.poll() is not None]

    def _died(self, task: int, partial: Dict[int, Any], detail: str = "", note: str = "") -> WorkerDiedError:
        p = self.procs[task]
        code = p.poll()
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self.stop()
        return super()._died(task, partial, detail=f", pid {p.pid}, {how}", note="; the other workers were stopped")


def _kill(procs: Sequence[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass
        if p.stdin is not None and not p.stdin.closed:
            try:
                p.stdin.close()
            except OSError:  # the worker is gone: nothing was buffered for it
                pass


def _hosts_from_tf_config() -> List[str]:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return []
    try:
        return list(json.loads(raw)["cluster"][JOB])
    except (ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"TF_CONFIG is not a cluster description with a '{JOB}' list: {raw!r}") from exc


# -- the worker process ----------------------------------------------------------------------------

def _exit_at_eof(fd: int = 0) -> None:
    """Exit this process as soon as ``fd`` (standard input) reaches end-of-file.

    The client that started the worker holds the pipe's only write end; the operating system
    closes it when the client process ends, whichever way and whichever thread started the
    worker, so the worker never outlives it. Portable (Linux, macOS), unlike Linux's per-thread
    parent-death signal.
    """

    def watch() -> None:
        try:
            while os.read(fd, 65536):
                pass
        except OSError:
            pass
        os._exit(0)

    threading.Thread(target=watch, name="psst-exit-at-eof", daemon=True).start()


def serve(hosts: Sequence[str], task: int, *, threads: int = 0, ready_file: Optional[str] = None,
          exit_at_eof: bool = False) -> None:
    """Run worker ``task`` of the cluster ``hosts`` until killed (the body of ``... distributed worker``).

    Parameters
    ----------
    hosts : list of "host:port"
        All workers of the cluster, in task order.
    task : int
        Which of them this process is.
    threads : int
        TensorFlow intra-op threads (0 = TensorFlow's default, all cores).
    ready_file : str, optional
        Created once the server serves (how :class:`LocalCluster` knows it is up).
    exit_at_eof : bool
        Exit when standard input reaches end-of-file (when the client holding its pipe ends).
    """
    if exit_at_eof:
        _exit_at_eof(0)  # before the slow TensorFlow import: a client that dies meanwhile is seen at once
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    server = tf.distribute.Server(tf.train.ClusterSpec({JOB: list(hosts)}), job_name=JOB, task_index=task,
                                  start=True)
    if ready_file:
        Path(ready_file).write_text(str(os.getpid()))
    print(f"psst worker task {task} serving on {hosts[task]} (pid {os.getpid()})", flush=True)
    server.join()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m psst_helpers.distributed",
                                     description="Run a TensorFlow worker for psst_helpers.distributed.")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="serve as one worker task until killed")
    w.add_argument("--hosts", help="comma-separated host:port of every worker, in task order (default: TF_CONFIG)")
    w.add_argument("--task", type=int, help="this worker's index in --hosts (default: TF_CONFIG's task.index)")
    w.add_argument("--threads", type=int, default=0, help="TensorFlow intra-op threads (default: all cores)")
    w.add_argument("--ready-file", help=argparse.SUPPRESS)
    w.add_argument("--exit-at-eof", action="store_true",
                   help="exit when standard input reaches end-of-file (tie the worker to a process holding a pipe)")
    args = parser.parse_args(argv)
    hosts = args.hosts.split(",") if args.hosts else _hosts_from_tf_config()
    task = args.task
    if task is None:
        task = int(json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("index", -1))
    if not hosts or not 0 <= task < len(hosts):
        parser.error(f"give --hosts and a --task in [0, {len(hosts)}) (or TF_CONFIG with both)")
    serve(hosts, task, threads=args.threads, ready_file=args.ready_file, exit_at_eof=args.exit_at_eof)


if __name__ == "__main__":
    main()
