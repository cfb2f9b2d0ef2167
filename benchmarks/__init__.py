"""Measurements behind docs/performance.md: ``python benchmarks/run.py --help``.

Every benchmark imports the product's own code (``hpo``, ``trainables``); none carries a copy of it.
"""
