"""Results rows schema, re-exported for the benchmarks layer (the implementation lives in
:mod:`metrics.results_rows`, which the evaluation callback also uses)."""
from metrics.results_rows import (  # noqa: F401
    DATA_VALUES,
    REQUIRED_FIELDS,
    WEIGHTS_VALUES,
    ResultRow,
    ResultsRowError,
    append_rows,
    find_results,
    git_commit,
    read_rows,
    utc_now,
    validate_row,
)

__all__ = ["ResultRow", "ResultsRowError", "REQUIRED_FIELDS", "WEIGHTS_VALUES", "DATA_VALUES", "validate_row",
           "append_rows", "read_rows", "find_results", "git_commit", "utc_now"]
