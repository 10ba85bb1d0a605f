"""geodistill.leaderboard: what is remembered. Parquet store, Pareto front and hypervolume,
reports and regression checks. Imports no Ray and no torch at import time."""

from geodistill.leaderboard.columns import (
    COLUMNS,
    FILE_SCHEMA,
    SCHEMA,
    SCHEMA_VERSION,
    make_row,
    metrics_to_columns,
)
from geodistill.leaderboard.pareto import hypervolume, pareto_mask
from geodistill.leaderboard.report import write_report
from geodistill.leaderboard.store import Leaderboard, LeaderboardError, LeaderboardWarning, default_root

__all__ = [
    "COLUMNS",
    "FILE_SCHEMA",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Leaderboard",
    "LeaderboardError",
    "LeaderboardWarning",
    "default_root",
    "hypervolume",
    "make_row",
    "metrics_to_columns",
    "pareto_mask",
    "write_report",
]
