"""Leaderboards and statistics from run directories; reads only results files (DESIGN §7)."""

from stellar.report.leaderboard import leaderboard, load_run, render

__all__ = ["leaderboard", "load_run", "render"]
