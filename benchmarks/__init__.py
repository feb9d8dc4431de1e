"""Benchmarks of fgdense and the official reference formulations they and the tests compare against.

Outside the installed package (the wheel holds fgdense only): run from a checkout, as
``python benchmarks/benchmark_X.py``. ``harness`` holds what every benchmark shares, ``reference``
the official formulations, ``dense`` the dense-feature benchmark's measurements.
"""
