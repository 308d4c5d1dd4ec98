"""Experiments: measurements built from the pipeline, the baselines and the local testbed
(sweeps of quality against loss, rate-distortion curves).

A layer above :mod:`semnet.pipeline`, :mod:`semnet.baselines` and :mod:`semnet.testbed`;
nothing below imports it (tests/test_layers.py checks).
"""
