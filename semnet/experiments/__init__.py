"""Experiments: measurements built from the pipeline and the baselines (rate-distortion curves).

A layer above :mod:`semnet.pipeline` and :mod:`semnet.baselines`; nothing below imports it.
"""
