"""Layer 6: the leaderboard report, plots, the regression check, the trade-off table."""
