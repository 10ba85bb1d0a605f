"""geodistill.leaderboard: what is remembered. Parquet store, Pareto front and hypervolume,
reports and regression checks. Imports no Ray and no torch at import time."""

from geodistill.leaderboard.pareto import hypervolume, pareto_mask
from geodistill.leaderboard.report import write_report
from geodistill.leaderboard.store import (
    COLUMNS,
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
    "SCHEMA",
    "SCHEMA_VERSION",
    "Leaderboard",
    "LeaderboardError",
    "default_root",
    "hypervolume",
    "make_row",
    "metrics_to_columns",
    "pareto_mask",
    "write_report",
]
