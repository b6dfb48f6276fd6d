"""deepaudit: audit neural networks through their internals, and score the auditing tools.

Packages: ``data`` (offline data sets), ``models`` (architectures), ``internals`` (activation
capture), ``subject`` (what an auditor is handed), ``tools`` (auditors), ``zoo`` (organisms
with planted truth), ``game`` (referee, store, leaderboard).
"""

__version__ = "0.1.0"
