"""The science: pure functions and lazy Dask graphs over arrays on a :class:`sitekit.grid.Grid`.

Terrain, hydrology, solar and wind resource, constraints, proximity, scoring, site extraction,
pumped storage, technical potential, supply curves, routes and hosting capacity. Modules here import
only :mod:`sitekit.grid`, :mod:`sitekit.errors` and each other (``tests/test_architecture.py``):
no files are read or written and nothing is computed eagerly here.
"""
