"""The attacker's side: organisms with planted, known ground truth, their clean twins and
decoys, in families (``vision``, ``lm``, ``training``), each a folder with one adapter
(``family.py``) and its suites (``suites/*.toml``).

Only the referee (``deepaudit.game``) may read what is built here; ``deepaudit.tools`` never
imports this package.
"""

from deepaudit.zoo.family import FAMILIES, Family, Kit, Organism, family, register_family
from deepaudit.zoo.folder import BuildResult, read_truth
from deepaudit.zoo.suite import Suite, available_suites, build_suite, load_suite

__all__ = ["FAMILIES", "BuildResult", "Family", "Kit", "Organism", "Suite", "available_suites", "build_suite",
           "family", "load_suite", "read_truth", "register_family"]
