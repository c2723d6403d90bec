"""``beamattn sweep --scheduler tcp://HOST:PORT`` against a Dask scheduler started separately.

As a SLURM user with dask-jobqueue (or someone running ``dask scheduler`` and ``dask worker`` by hand)
would: the scheduler and two workers are separate OS processes on loopback, the sweep is the CLI's, and
its numbers must equal those of the same sweep run in-process (``--workers 1``) bit for bit. An
unreachable scheduler address gives one error line and exit code 2, in bounded time.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import beamattn
from beamattn.cli import main
from test_sweep import NUM_TASKS, _cells, _task_numbers, _write_sweep

pytest.importorskip("distributed")

STARTUP_TIMEOUT_S = 60  # scheduler file written and both workers registered, or the test fails
REPO_ROOT = Path(beamattn.__file__).resolve().parents[1]


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "<no log>"


def _stop(procs) -> None:
    """SIGTERM every process group, then SIGKILL what is left (nannies' worker children included)."""
    for p, _ in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    for p, _ in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p, _ in procs:
        try:  # the group may outlive its leader (a nanny's worker process)
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@contextmanager
def external_cluster(root: Path, n_workers: int = 2):
    """A ``dask scheduler`` and ``n_workers`` ``dask worker`` processes (one thread each) on 127.0.0.1.

    Yields ``(address, logs)``. Everything they write (scheduler file, worker spill space, logs) stays under
    ``root``; the processes are always terminated, by process group.
    """
    root.mkdir(parents=True, exist_ok=True)
    sched_file = root / "scheduler.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["DASK_TEMPORARY_DIRECTORY"] = str(root / "dask-tmp")
    procs = []

    def spawn(name, args):
        log = root / f"{name}.log"
        with open(log, "wb") as fh:
            p = subprocess.Popen([sys.executable, "-m", *args], cwd=root, env=env, stdin=subprocess.DEVNULL,
                                 stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((p, log))
        return p

    def logs() -> str:
        return "\n".join(f"--- {log.name} (rc {p.poll()}):\n{_tail(log)}" for p, log in procs)

    try:
        sched = spawn("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                    "--scheduler-file", str(sched_file), "--no-dashboard",
                                    "--dashboard-address", "127.0.0.1:0",  # its HTTP server stays on
                                    "--idle-timeout", "600"])  # a safety net should the test process be killed
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        address = None
        while address is None:
            if sched.poll() is not None:
                pytest.fail(f"dask scheduler exited with {sched.returncode}\n{logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no scheduler file after {STARTUP_TIMEOUT_S} s\n{logs()}")
            try:
                address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):  # not written yet, or half written
                time.sleep(0.1)
        assert address.startswith("tcp://127.0.0.1:"), address
        for i in range(n_workers):
            spawn(f"worker{i}", ["distributed.cli.dask_worker", "--scheduler-file", str(sched_file),
                                 "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                                 "--dashboard-address", "127.0.0.1:0",
                                 "--local-directory", str(root / f"worker{i}-space"), "--death-timeout", "60"])
        from distributed import Client

        with Client(address, timeout="20s", set_as_default=False) as client:
            try:
                client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                pytest.fail(f"{len(client.scheduler_info()['workers'])} of {n_workers} workers registered "
                            f"within {STARTUP_TIMEOUT_S} s\n{logs()}")
            pids = set(client.run(os.getpid).values())
        assert len(pids) == n_workers and os.getpid() not in pids
        yield address, logs
    finally:
        _stop(procs)


def test_sweep_on_separately_started_scheduler_matches_in_process(tmp_path, capsys):
    from distributed import Client, get_task_stream

    sweep_file = _write_sweep(tmp_path / "def")
    ref, out = tmp_path / "ref", tmp_path / "sched"
    t0 = time.perf_counter()
    assert main(["sweep", str(sweep_file), "--out", str(ref), "--workers", "1", "--no-figures"]) == 0
    t_ref = time.perf_counter() - t0
    with external_cluster(tmp_path / "cluster") as (address, logs):
        t0 = time.perf_counter()
        with Client(address, timeout="20s", set_as_default=False) as client, \
                get_task_stream(client=client) as stream:
            rc = main(["sweep", str(sweep_file), "--out", str(out), "--scheduler", address, "--no-figures"])
            assert rc == 0, f"{capsys.readouterr().err}\n{logs()}"
        t_sched = time.perf_counter() - t0
        ours = [rec for rec in stream.data if str(rec["key"]).startswith("beamattn-sweep-")]
    captured = capsys.readouterr()
    assert f"ran {NUM_TASKS}, reused 0" in captured.out
    # the tasks ran on the external workers (the task stream only sees scheduler tasks), on both of them
    assert len({rec["key"] for rec in ours}) == NUM_TASKS, ours
    assert len({rec["worker"] for rec in ours}) == 2, (ours, t_ref, t_sched)
    # bit for bit: the task results (floats through JSON) and the summary file byte for byte
    assert len(_task_numbers(out)) == NUM_TASKS
    assert _task_numbers(out) == _task_numbers(ref)
    assert _cells(out) == _cells(ref)
    assert (out / "summary.json").read_bytes() == (ref / "summary.json").read_bytes()


def test_unreachable_scheduler_is_one_line_exit_2(tmp_path, capfd):
    import dask

    sweep_file = _write_sweep(tmp_path / "def")
    # a port bound by this test but not listening: nobody can take it meanwhile, connections are refused
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        t0 = time.perf_counter()
        # the connect timeout is Dask's own setting (what a user sets with DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT)
        with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
            rc = main(["sweep", str(sweep_file), "--out", str(tmp_path / "out"), "--scheduler", address,
                       "--no-figures"])
        elapsed = time.perf_counter() - t0
    err = capfd.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("beamattn sweep: error: sweep: cannot connect to scheduler"), err
    assert address in err
    assert elapsed < 15, elapsed  # the 2 s connect timeout plus slack; never a hang
    assert not list((tmp_path / "out" / "tasks").glob("*.json"))
