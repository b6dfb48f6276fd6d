"""Latent-knowledge benchmark on the statement sets: per decoder layer, fit every truth probe
on trusted statements from one set (cities), then measure its AUROC on held-out statements
of that set and on other sets (negations, translations, numbers, companies), with bootstrap
95% intervals. Each probe's layer is chosen by a rule that sees only the trusted training
statements: fit on one half, keep the layer whose probe ranks the other half best (highest
AUROC, ties to the earlier layer), then refit on all of them. Point probes read the bare
statement; pair probes read the statement followed by "This statement is true." / "...false."."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.progress import Progress

from deepaudit.game.metrics import auroc_score, bootstrap_ci
from deepaudit.lm.activations import last_token_residuals
from deepaudit.lm.loader import LanguageModel
from deepaudit.lm.truth import StatementSet, load_statements
from deepaudit.tools.registry import PROBES, make_probe

SCHEMA_VERSION = 1
PAIR_SUFFIXES = (" This statement is true.", " This statement is false.")
EVAL_SETS = ("neg_cities", "sp_en_trans", "larger_than", "companies_true_false")
LAYER_RULE = ("fit on a random half of the trusted training statements, keep the layer whose probe has the "
              "highest AUROC on the other half (ties to the earlier layer), refit on all training statements")


@dataclass
class SetActivations:
    """Residuals of one statement set: ``point`` ``(L, N, d)``, ``pairs`` ``(L, N, 2, d)``, labels ``(N,)``."""

    name: str
    point: np.ndarray
    pairs: np.ndarray
    labels: np.ndarray

    def take(self, idx: np.ndarray, name: str | None = None) -> "SetActivations":
        return SetActivations(name or self.name, self.point[:, idx], self.pairs[:, idx], self.labels[idx])

    def inputs(self, layer: int, pairs: bool) -> np.ndarray:
        return self.pairs[layer] if pairs else self.point[layer]


def set_activations(lm: LanguageModel, statements: StatementSet, layers: Sequence[int],
                    batch_size: int = 32, progress: Progress | None = None) -> SetActivations:
    """Last-token residuals of the bare statements and of their true/false contrast pairs."""
    def run(suffix: str) -> np.ndarray:
        prompts = [s + suffix for s in statements.statements]
        return last_token_residuals(lm, prompts, layers, batch_size, progress)

    pairs = np.stack([run(PAIR_SUFFIXES[0]), run(PAIR_SUFFIXES[1])], axis=2)
    return SetActivations(statements.name, run(""), pairs, statements.labels)


def auroc_with_ci(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> dict[str, float]:
    """AUROC and its percentile-bootstrap 95% interval over statements."""
    ci = bootstrap_ci(lambda idx: auroc_score(labels[idx], scores[idx]), len(labels), seed, need_both=labels)
    return {"value": auroc_score(labels, scores), "ci_low": ci[0], "ci_high": ci[1], "n": int(len(labels))}


def validation_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The layer rule's split of ``n`` trusted prompts: a random half fits, the other validates."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // 2], order[n // 2 :]


def choose_layer(probe_name: str, train: SetActivations, seed: int = 0) -> tuple[int, list[float]]:
    """The ``LAYER_RULE``: index into ``train``'s layers, and the validation AUROC of every layer."""
    fit_idx, val_idx = validation_split(len(train.labels), seed)
    pairs = PROBES[probe_name].pairs
    scores = []
    for layer in range(train.point.shape[0]):
        x = train.inputs(layer, pairs)
        probe = make_probe(probe_name, seed=seed).fit(x[fit_idx], train.labels[fit_idx])
        scores.append(auroc_score(train.labels[val_idx], probe.score(x[val_idx])))
    return int(np.argmax(scores)), scores


def evaluate(train: SetActivations, tests: Sequence[SetActivations], layers: Sequence[int],
             probes: Sequence[str], seed: int = 0) -> dict:
    """Per probe: the chosen layer with AUROC (+CI) on every test set, and the AUROC of every layer."""
    results = {}
    for name in probes:
        pairs = PROBES[name].pairs
        best, val_scores = choose_layer(name, train, seed)
        per_layer: dict[str, list[float]] = {t.name: [] for t in tests}
        chosen: dict[str, dict[str, float]] = {}
        for row in range(len(layers)):
            probe = make_probe(name, seed=seed).fit(train.inputs(row, pairs), train.labels)
            for test in tests:
                scores = probe.score(test.inputs(row, pairs))
                per_layer[test.name].append(auroc_score(test.labels, scores))
                if row == best:
                    chosen[test.name] = auroc_with_ci(test.labels, scores, seed)
        results[name] = {"layer": int(layers[best]), "validation_auroc": val_scores, "chosen": chosen,
                         "per_layer_auroc": per_layer}
    return results


def run_truth_benchmark(lm: LanguageModel, train_set: str = "cities", eval_sets: Sequence[str] = EVAL_SETS,
                        n_train: int = 256, n_eval: int = 256, layers: Sequence[int] | None = None,
                        probes: Sequence[str] | None = None, seed: int = 0, batch_size: int = 32,
                        progress: Progress | None = None) -> dict:
    """Sample class-balanced statements (``n_train`` trusted + ``n_eval`` held out from
    ``train_set``, ``n_eval`` from each of ``eval_sets``), read their residuals, score the probes."""
    layers = list(range(lm.n_layers)) if layers is None else list(layers)
    probes = list(probes or PROBES)
    source = load_statements(train_set).sample(n_train + n_eval, seed)
    acts = set_activations(lm, source, layers, batch_size, progress)
    idx = np.arange(len(source.labels))
    train = acts.take(idx[:n_train])
    tests = [acts.take(idx[:n_train], f"{train_set} (train)"), acts.take(idx[n_train:], f"{train_set} (held out)")]
    for name in eval_sets:
        tests.append(set_activations(lm, load_statements(name).sample(n_eval, seed), layers, batch_size, progress))
    return {"schema_version": SCHEMA_VERSION, "model": lm.source, "train_set": train_set, "layers": layers,
            "n_train": int(len(train.labels)), "layer_rule": LAYER_RULE, "pair_suffixes": list(PAIR_SUFFIXES),
            "seed": seed, "probes": evaluate(train, tests, layers, probes, seed)}
