"""Training-run organisms: grokking modular addition, with the run's measures."""
