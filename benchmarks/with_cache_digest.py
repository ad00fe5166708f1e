"""Run ``sitekit`` with the cache keys of an earlier commit's code (benchmarking only).

Usage::

    python benchmarks/with_cache_digest.py DIGEST demo --resolution 30 --cache-dir DIR ...

Every cache key includes a digest of sitekit's sources (``engine.cache.code_digest``), so any
change makes a cold cache. To measure the later phases of a long run after a change that does not
touch the cached intermediates, this wrapper gives the keys the digest of the commit that wrote
them (print it there with ``python -c "from sitekit.engine.cache import code_digest as d;
print(d())"``). Say so wherever its figures are reported. Never use it for real outputs.
"""

from __future__ import annotations

import sys


def main() -> None:
    digest, *args = sys.argv[1:]
    import sitekit.engine.cache as cache
    import sitekit.engine.mcp_store as mcp_store

    cache.code_digest = lambda: digest
    mcp_store.code_digest = lambda: digest
    from sitekit.cli import main as cli

    sys.argv = ["sitekit", *args]
    cli()


if __name__ == "__main__":
    main()
