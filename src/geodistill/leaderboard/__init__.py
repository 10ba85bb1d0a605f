"""geodistill.leaderboard: what is remembered. Parquet store, Pareto front and hypervolume,
reports and regression checks. Imports no Ray and no torch at import time."""

from geodistill.leaderboard.store import (
    COLUMNS,
    METRIC_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    Leaderboard,
    LeaderboardError,
    default_root,
    make_row,
    metrics_to_columns,
)

__all__ = [
    "COLUMNS",
    "METRIC_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Leaderboard",
    "LeaderboardError",
    "default_root",
    "make_row",
    "metrics_to_columns",
]
