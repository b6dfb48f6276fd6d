"""The attacker's side: organisms with planted, known ground truth, and their clean twins.

Only the referee (``deepaudit.game``) may read what is built here; ``deepaudit.tools`` never
imports this package.
"""

from deepaudit.zoo.build import BuildResult, build_organism, read_truth
from deepaudit.zoo.spec import OrganismSpec
from deepaudit.zoo.suite import available_suites, build_suite, load_suite, suite_specs

__all__ = ["BuildResult", "OrganismSpec", "available_suites", "build_organism", "build_suite",
           "load_suite", "read_truth", "suite_specs"]
