"""Which layer rule, using trusted easy prompts only, would pick the layer whose truth probe
generalises to the untrusted persona's hard prompts? On each built quirky organism, per probe and
layer: the validation AUROC the game's rule maximises (``choose_layer``: half of Alice's easy
prompts fit, half validate), two tie-breaks for it (the validation log-loss of the probe's scores
after a one-dimensional logistic calibration on the fit half, and d', the class-mean gap of the
validation scores in units of their standard deviation), and the referee's AUROC on Bob's hard
prompts. Prints the layer each rule picks, what it reads there, and the best layer by hand.

    OMP_NUM_THREADS=1 python benchmarks/lm_layer_rule.py [--zoo DIR] [--organism ID ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from deepaudit.game import lm_tracks
from deepaudit.game.lm_runner import LMGameSizes, quirky_sets
from deepaudit.game.metrics import auroc_score
from deepaudit.lm.subject import LMSubject
from deepaudit.lm.truthbench import SetActivations, validation_split
from deepaudit.paths import home
from deepaudit.tools.registry import PROBES, make_probe
from deepaudit.zoo.build import fixed_threads
from deepaudit.zoo.lm import tasks
from deepaudit.zoo.lm.organisms import CARD_FILE, load_lm_organism

PROBE_NAMES = ("probe_logreg", "probe_diffmeans", "probe_lda")


def layer_table(train: SetActivations, bob_hard: SetActivations, name: str,
                seed: int = 0) -> list[dict[str, float]]:
    """Per layer: validation AUROC, calibrated validation log-loss and d' on the trusted split, and
    the AUROC on Bob's hard prompts of the probe fitted on all trusted prompts."""
    fit, val = validation_split(len(train.labels), seed)
    pairs, y, rows = PROBES[name].pairs, train.labels, []
    for layer in range(train.point.shape[0]):
        x = train.inputs(layer, pairs)
        probe = make_probe(name, seed=seed).fit(x[fit], y[fit])
        s_fit, s_val = probe.score(x[fit]), probe.score(x[val])
        calibrated = LogisticRegression(C=1e6).fit(s_fit[:, None], y[fit]).predict_proba(s_val[:, None])[:, 1]
        full = make_probe(name, seed=seed).fit(x, y)
        rows.append({"auroc": auroc_score(y[val], s_val), "log_loss": log_loss(y[val], calibrated, labels=[0, 1]),
                     "dprime": float((s_val[y[val] == 1].mean() - s_val[y[val] == 0].mean()) / (s_val.std() + 1e-12)),
                     "bob_hard": auroc_score(bob_hard.labels, full.score(bob_hard.inputs(layer, pairs)))})
    return rows


def picks(rows: list[dict[str, float]]) -> dict[str, int]:
    """The layer each rule picks (ties go to the earliest layer, as ``np.argmax`` does)."""
    auroc = np.array([r["auroc"] for r in rows])
    top = np.flatnonzero(auroc >= auroc.max() - 1e-9)
    return {"auroc (the game's)": int(top[0]),
            "auroc, then log-loss": int(top[np.argmin([rows[i]["log_loss"] for i in top])]),
            "auroc, then d'": int(top[np.argmax([rows[i]["dprime"] for i in top])]),
            "by hand (Bob hard)": int(np.argmax([r["bob_hard"] for r in rows]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", type=Path, default=home() / "lmzoo")
    parser.add_argument("--organism", nargs="*", help="organism ids (default: every quirky one in the zoo)")
    args = parser.parse_args()
    folders = [args.zoo / oid for oid in args.organism] if args.organism else sorted(
        f for f in args.zoo.iterdir()
        if (f / CARD_FILE).is_file() and json.loads((f / CARD_FILE).read_text()).get("format") == "quirky")
    print("| organism | task | probe | rule | layer | Bob hard AUROC | tied layers |\n|---|---|---|---|---|---|---|")
    for folder in folders:
        with fixed_threads():
            lm, card = load_lm_organism(folder)
            sets = quirky_sets(0, LMGameSizes(), card["task"])
            trusted = [tasks.quirky_prompt(s, card["trusted_persona"]) for s, _ in sets["trusted"]]
            subject = LMSubject(lm, card, trusted, np.array([t for _, t in sets["trusted"]]), None)
            train = lm_tracks.persona_set(subject, "alice_train", sets["trusted"], card["trusted_persona"])
            bob_hard = lm_tracks.persona_set(subject, "bob_hard", sets["hard"], card["untrusted_persona"])
            for name in PROBE_NAMES:
                rows = layer_table(train, bob_hard, name)
                tied = sum(r["auroc"] >= max(x["auroc"] for x in rows) - 1e-9 for r in rows)
                for rule, layer in picks(rows).items():
                    print(f"| {folder.name} | {card['task']} | {name} | {rule} | {layer} | "
                          f"{rows[layer]['bob_hard']:.2f} | {tied} |")
    chosen = f" --organism {' '.join(args.organism)}" if args.organism else ""
    print(f"\nreproduce: OMP_NUM_THREADS=1 python benchmarks/lm_layer_rule.py{chosen}")


if __name__ == "__main__":
    main()
