"""The referee's side: run tools on organisms, score them against the sealed truth, keep the
results in a store, and show them as a leaderboard."""

from deepaudit.game.leaderboard import leaderboard, to_json, to_markdown
from deepaudit.game.referee import run_cell
from deepaudit.game.runner import RunSummary, run_game
from deepaudit.game.store import Store

__all__ = ["RunSummary", "Store", "leaderboard", "run_cell", "run_game", "to_json", "to_markdown"]
