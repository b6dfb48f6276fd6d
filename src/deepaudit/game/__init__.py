"""The referee's side: one runner for every organism family, the tracks that score tools
(``game.tracks``), the results store and the leaderboard that views it."""

from deepaudit.lazy import lazy_attributes

# (``leaderboard`` is also a module's name: import the function from deepaudit.game.leaderboard)
_WHERE = {"RunSummary": "deepaudit.game.runner", "Store": "deepaudit.game.store", "run_game": "deepaudit.game.runner",
          "to_json": "deepaudit.game.leaderboard", "to_markdown": "deepaudit.game.leaderboard"}
__all__ = sorted(_WHERE)
__getattr__ = lazy_attributes(__name__, _WHERE)
