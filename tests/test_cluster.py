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
