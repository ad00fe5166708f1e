"""``python -m sitekit``: the same command as ``sitekit``."""

from sitekit.cli import main

if __name__ == "__main__":
    main()
