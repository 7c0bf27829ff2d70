"""Blubber's config schema: one module per section, each with its decoding, validation and merge rules.

Internal to :mod:`chute.blubber`; other packages use the public API in ``chute/blubber/__init__.py``.
"""
