"""NIQE for the deraining tables (thesis 001 Ch. 8, Tables 8.3 / 8.5): the suite's own implementation.

Kept as a re-export so older configs naming ``lightning_modules.bi_noising.metrics.NIQE`` still resolve;
the definition, its conventions and its check against scikit-video live in :mod:`metrics.niqe`.
"""
from metrics.niqe import NIQE

__all__ = ["NIQE"]
