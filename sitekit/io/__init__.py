"""Reading inputs and writing files safely: the layer catalogue, raster and vector readers, the
one reader of a finished run folder, atomic files, provenance and output ownership.

Modules here never import :mod:`sitekit.outputs` or :mod:`sitekit.engine`
(``tests/test_architecture.py``).
"""


def __getattr__(name: str):  # noqa: ANN202 - the old ``sitekit.io`` module's names (PEP 562)
    if name.startswith("__") or name == "layers":
        raise AttributeError(name)
    import importlib

    layers = importlib.import_module("sitekit.io.layers")
    try:
        return getattr(layers, name)
    except AttributeError:
        raise AttributeError(f"module 'sitekit.io' has no attribute {name!r}") from None
