"""The reverse-engineer track: a tool turns a grokking organism (public card and weights only)
into a replacement program with no neural network; the referee scores the program's agreement
with the model on all p^2 inputs, and compares the recovered key frequencies with the ones the
builder measured (sealed in the truth)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepaudit.game.store import CellKey, Store
from deepaudit.internals.fourier import all_pairs
from deepaudit.subject import load_model, read_card
from deepaudit.tools.fourier_program import FourierProgram, FourierReverseEngineer, ReverseEngineer
from deepaudit.zoo import read_truth

REVERSE_ENGINEERS = {cls.name: cls for cls in (FourierReverseEngineer,)}


def score_program(program: FourierProgram, model: torch.nn.Module, p: int, true_keys: list[int]) -> dict[str, Any]:
    """Agreement of the program with the model on every input; both their accuracies on the
    task; Jaccard overlap of the program's frequencies with the true key frequencies."""
    pairs = all_pairs(p)
    with torch.no_grad():
        model_out = model(pairs).argmax(1).numpy()
    program_out = program(pairs[:, 0].numpy(), pairs[:, 1].numpy())
    truth = ((pairs[:, 0] + pairs[:, 1]) % p).numpy()
    found, keys = set(program.frequencies), set(true_keys)
    return {"agreement": float(np.mean(program_out == model_out)),
            "program_accuracy": float(np.mean(program_out == truth)),
            "model_accuracy": float(np.mean(model_out == truth)),
            "frequencies_found": len(found), "true_key_frequencies": len(keys),
            "frequency_jaccard": len(found & keys) / max(1, len(found | keys))}


def run_reverse(zoo: Path, organisms: list[str], store: Path, suite: str, seed: int = 0,
                tool: str = "fourier_program") -> list[dict[str, Any]]:
    """Run a reverse-engineering tool on each organism, score it, and record every cell."""
    if tool not in REVERSE_ENGINEERS:
        raise ValueError(f"unknown reverse-engineering tool {tool!r}; available: {sorted(REVERSE_ENGINEERS)}")
    engineer: ReverseEngineer = REVERSE_ENGINEERS[tool](seed=seed)
    results, db = [], Store(store)
    try:
        for oid in organisms:
            folder = Path(zoo) / oid
            card = read_card(folder)
            model = load_model(folder, card).eval()
            start = time.perf_counter()
            program = engineer.reverse(model, card)
            wall = time.perf_counter() - start
            truth = read_truth(folder)
            scores = {**score_program(program, model, card["modulus"], truth["key_frequencies"]), "role": truth["role"]}
            db.put(CellKey(suite, seed, oid, engineer.name, 0), "done", answer=program.to_json(), scores=scores,
                   wall_s=wall, forward_passes=card["modulus"] ** 2)
            results.append({"organism_id": oid, "role": truth["role"], "true_keys": truth["key_frequencies"],
                            "program": program.to_json(), **scores})
    finally:
        db.close()
    return results
