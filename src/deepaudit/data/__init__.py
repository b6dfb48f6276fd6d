"""Offline data sets with fixed splits: ``train`` (organisms learn from it), ``audit`` (the
clean budget auditors draw from) and ``eval`` (the referee's held-out inputs). A user's own
data files are read by ``deepaudit.data.files``, which trusts none of them."""

from deepaudit.data.datasets import DATASETS, Dataset, load_dataset

__all__ = ["DATASETS", "Dataset", "load_dataset"]
