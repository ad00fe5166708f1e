"""Specifications: YAML loading with file:line:key errors, and the models of recipes and rules.

Modules here import only :mod:`sitekit.errors` and each other (``tests/test_architecture.py``).
"""

from sitekit.specs.loader import (  # noqa: F401 - the old ``sitekit.specs`` module's names
    format_validation_error,
    load_yaml_model,
    read_yaml,
    set_dotted,
)
