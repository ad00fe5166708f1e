"""The default local cluster: in-process thread pools (measured faster and leaner, issue 27), with
a memory budget that fits workers sharing one process."""

from __future__ import annotations

from sitekit.engine.cluster import in_process_memory_limit
from sitekit.engine.run import RunOptions


def test_the_default_is_in_process_thread_pools() -> None:
    from sitekit.cli.options import processes_opt

    assert RunOptions(catalog="c.yaml", out="o").processes is False

    @processes_opt
    def f(processes: bool) -> bool:  # a bare command to read the option's default
        return processes

    (param,) = f.__click_params__
    assert param.default is False


def test_in_process_workers_each_get_the_whole_process_budget() -> None:
    """Each in-process worker's monitor reads the shared process's RSS: with ``auto`` (1/n of
    the machine each) two workers would spill and pause at half the memory they have."""
    from distributed.system import MEMORY_LIMIT

    assert in_process_memory_limit("auto") == int(MEMORY_LIMIT)
    assert in_process_memory_limit("3GiB") == "3GiB"
    assert in_process_memory_limit(None) is None


def test_the_trimmer_runs_while_a_worker_holds_it_and_stops_after(monkeypatch) -> None:
    """Each process of sitekit's LocalCluster hands free heap pages back every few seconds
    (``malloc_trim``) while its workers run, and stops when the last one leaves."""
    import time

    from sitekit.engine import trim

    calls: list[float] = []
    monkeypatch.setattr(trim, "TRIM_INTERVAL_S", 0.02)
    monkeypatch.setattr(trim, "_malloc_trim", lambda: lambda: calls.append(time.monotonic()))
    a, b = trim.Trim(), trim.Trim()
    a.setup(None)
    b.setup(None)  # two in-process workers share the thread
    time.sleep(0.2)
    assert len(calls) >= 3
    a.teardown(None)
    n = len(calls)
    time.sleep(0.15)
    assert len(calls) > n  # b still holds it
    b.teardown(None)
    time.sleep(0.06)
    n = len(calls)
    time.sleep(0.15)
    assert len(calls) == n and trim._trim_users == 0


def test_sitekit_s_local_cluster_registers_the_trimmer(tmp_path) -> None:
    from sitekit.engine import trim
    from sitekit.engine.cluster import dask_client

    opts = RunOptions(catalog="c.yaml", out=tmp_path / "o", workers=2, processes=False)
    with dask_client(opts) as client:
        assert "sitekit-malloc-trim" in client.cluster.scheduler.worker_plugins
        assert trim._trim_users == 2 or trim._malloc_trim() is None
    assert trim._trim_users == 0
