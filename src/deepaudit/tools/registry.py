"""Every tool by name. Adding a tool: write its file, add one line here."""

from __future__ import annotations

from deepaudit.tools.base import InputDetector, Localizer, ModelDetector, Remover, SupervisedDetector
from deepaudit.tools.defection_probe import DefectionProbe
from deepaudit.tools.edit_finetune import FineTuneEdit
from deepaudit.tools.edit_rome import Rome
from deepaudit.tools.lm_anomaly import LMAnomaly
from deepaudit.tools.localize_ablation import AblationSearch
from deepaudit.tools.phrase_search import PhraseSearch
from deepaudit.tools.remove_direction_ablation import DirectionAblation
from deepaudit.tools.localize_act_patch import ActivationPatching
from deepaudit.tools.localize_attr_patch import AttributionPatching
from deepaudit.tools.localize_captum import CaptumConductance
from deepaudit.tools.localize_lm_act_diff import LMActivationDifference
from deepaudit.tools.localize_lm_attr_patch import LMAttributionPatching
from deepaudit.tools.mahalanobis import Mahalanobis
from deepaudit.tools.meta_classifier import MetaClassifier
from deepaudit.tools.neural_cleanse import NeuralCleanse
from deepaudit.tools.probe_ccs import CCSProbe
from deepaudit.tools.probe_diffmeans import DiffMeansProbe
from deepaudit.tools.probe_lda import LDAProbe
from deepaudit.tools.probe_logreg import LogRegProbe
from deepaudit.tools.probe_pca import ContrastPCAProbe
from deepaudit.tools.probe_random import RandomProbe
from deepaudit.tools.random_baseline import RandomBaseline
from deepaudit.tools.remove_anp import AdversarialNeuronPruning
from deepaudit.tools.remove_finetune import FineTune
from deepaudit.tools.remove_fineprune import FinePrune
from deepaudit.tools.remove_lat import LatentAdversarialTraining
from deepaudit.tools.remove_nc_unlearn import NeuralCleanseUnlearn
from deepaudit.tools.strip import Strip
from deepaudit.tools.weight_stats import WeightStats

TOOLS = {cls.name: cls for cls in (NeuralCleanse, Mahalanobis, Strip, WeightStats, RandomBaseline, MetaClassifier)}
REMOVERS = (FineTune, FinePrune, NeuralCleanseUnlearn, AdversarialNeuronPruning, LatentAdversarialTraining)
LOCALIZERS = (ActivationPatching, AttributionPatching, CaptumConductance, AblationSearch)
TOOLS.update({cls.name: cls for cls in REMOVERS + LOCALIZERS})
# Truth probes for language models (latent-knowledge track); kept apart from TOOLS, which the
# vision game runs by default.
PROBES = {cls.name: cls for cls in (LogRegProbe, DiffMeansProbe, LDAProbe, CCSProbe, ContrastPCAProbe, RandomProbe)}
# Language-model auditors (deepaudit lm game) and fact editors (deepaudit lm edit-bench).
LM_TOOLS = {cls.name: cls for cls in (LMAnomaly, DefectionProbe, PhraseSearch, DirectionAblation,
                                      LMAttributionPatching, LMActivationDifference)}
EDITORS = {cls.name: cls for cls in (Rome, FineTuneEdit)}


def make_tool(name: str, seed: int = 0, **params):
    """Instantiate a registered tool."""
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; registered tools: {sorted(TOOLS)}")
    return TOOLS[name](seed=seed, **params)


def make_probe(name: str, seed: int = 0, **params):
    """Instantiate a registered truth probe."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; registered probes: {sorted(PROBES)}")
    return PROBES[name](seed=seed, **params)


def roles(name: str) -> list[str]:
    """Which protocols a tool implements: ``model``, ``input``, ``skyline``, ``remover`` and/or ``localizer``."""
    tool = make_tool(name)
    out = []
    if isinstance(tool, SupervisedDetector):
        out.append("skyline")
    if isinstance(tool, ModelDetector):
        out.append("model")
    if isinstance(tool, InputDetector):
        out.append("input")
    if isinstance(tool, Remover):
        out.append("remover")
    if isinstance(tool, Localizer):
        out.append("localizer")
    return out
