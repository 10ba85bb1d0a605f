"""geodistill.leaderboard."""
