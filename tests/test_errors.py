"""Bad input is refused with a clear deepaudit error naming the file or value at fault, a
pickle is never executed, and one broken organism cannot spoil a game or its store."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deepaudit.errors import DataError, DeepAuditError, OrganismError
from deepaudit.game import Store, run_game
from deepaudit.subject import Subject, load_model, load_subject
from deepaudit.weights import load_state_dict


def weights(folder):
    return folder / "weights.safetensors"


class Payload:
    """A pickle that creates a file when (and only when) it is unpickled."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_pickle_payload_really_executes(tmp_path):
    """Sanity check of the payload used below: plain pickle.load does create the sentinel."""
    sentinel = tmp_path / "SENTINEL"
    pickle.loads(pickle.dumps(Payload(sentinel))).close()
    assert sentinel.exists()


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_corrupt_weights_raise_organism_error(organism_copy, damage):
    """Random bytes, a truncated or an empty safetensors file: OrganismError naming the file."""
    folder = organism_copy()
    path = weights(folder)
    data = path.read_bytes()
    if damage == "random":
        junk = np.random.default_rng(0).bytes(4096)
        assert not junk.startswith(b"\x80")
        path.write_bytes(junk)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"")
    with pytest.raises(OrganismError, match="weights.safetensors"):
        load_state_dict(path)
    with pytest.raises(OrganismError, match=str(folder)):
        load_subject(folder)


def test_missing_weights_file(organism_copy):
    """A folder without its weights file: OrganismError naming the missing file."""
    folder = organism_copy()
    weights(folder).unlink()
    with pytest.raises(OrganismError, match="weights.safetensors"):
        load_subject(folder)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_weights_are_refused_unexecuted(organism_copy, tmp_path, protocol):
    """A code-executing pickle saved as weights is refused as a pickle and never runs."""
    folder = organism_copy()
    sentinel = tmp_path / "SENTINEL"
    with weights(folder).open("wb") as f:
        pickle.dump(Payload(sentinel), f, protocol=protocol)
    with pytest.raises(OrganismError, match="pickle") as info:
        load_subject(folder)
    assert "weights.safetensors" in str(info.value)
    assert not sentinel.exists()


def test_old_protocol_pickle_is_refused_unexecuted(organism_copy, tmp_path):
    """A protocol-0 pickle (no 0x80 magic byte) is refused too, and never runs."""
    folder = organism_copy()
    sentinel = tmp_path / "SENTINEL"
    weights(folder).write_bytes(pickle.dumps(Payload(sentinel), protocol=0))
    with pytest.raises(OrganismError, match="weights.safetensors.*pickle"):
        load_state_dict(weights(folder))
    assert not sentinel.exists()


def test_trusted_pickle_still_loads_tensors_only(organism_copy, tmp_path):
    """trust_pickle=True loads a torch.save file, yet still never executes a payload."""
    folder = organism_copy()
    state = load_file(str(weights(folder)))
    saved = tmp_path / "model.pt"
    torch.save(state, saved)
    with pytest.raises(OrganismError, match="pickle"):
        load_state_dict(saved)
    loaded = load_state_dict(saved, trust_pickle=True)
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)

    sentinel = tmp_path / "SENTINEL"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Payload(sentinel), protocol=2))
    with pytest.raises(OrganismError, match="weights_only"):
        load_state_dict(evil, trust_pickle=True)
    assert not sentinel.exists()


def test_missing_card(organism_copy):
    """An organism folder without card.json: OrganismError that mentions the card."""
    folder = organism_copy()
    (folder / "card.json").unlink()
    with pytest.raises(OrganismError, match="card"):
        load_subject(folder)


def test_card_missing_fields(organism_copy):
    """A card lacking required fields: OrganismError naming the missing fields."""
    folder = organism_copy()
    card = json.loads((folder / "card.json").read_text())
    del card["arch"], card["input_shape"]
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(OrganismError, match="arch") as info:
        load_subject(folder)
    assert "input_shape" in str(info.value)


def test_card_not_json(organism_copy):
    """A card that is not JSON: OrganismError naming the card."""
    folder = organism_copy()
    (folder / "card.json").write_text("{not json")
    with pytest.raises(OrganismError, match="card.json"):
        load_subject(folder)


def test_card_not_an_object(organism_copy):
    """A card.json holding valid JSON that is not an object: OrganismError, not a TypeError."""
    folder = organism_copy()
    (folder / "card.json").write_text("1")
    with pytest.raises(OrganismError, match="card.json"):
        load_subject(folder)


@pytest.mark.parametrize("budget", [0, -3])
def test_empty_budget(smoke_zoo, budget):
    """A clean budget of zero or less is a DataError."""
    with pytest.raises(DataError, match="budget"):
        load_subject(smoke_zoo.trojan, budget=budget)


@pytest.mark.parametrize("fault", ["nan", "shape", "empty", "labels"])
def test_subject_rejects_bad_clean_data(smoke_zoo, fault):
    """NaN, mis-shaped, empty or mislabelled clean data: DataError."""
    good = load_subject(smoke_zoo.trojan, budget=8)
    x, y = good.clean_x.clone(), good.clean_y
    if fault == "nan":
        x[3, 0, 2, 2] = float("nan")
    elif fault == "shape":
        x = x.reshape(8, 1, 64)
    elif fault == "empty":
        x, y = x[:0], y[:0]
    else:
        y = y[:5]
    with pytest.raises(DataError):
        Subject(model=load_model(smoke_zoo.trojan), card=good.card, clean_x=x, clean_y=y)


def test_subject_accepts_good_clean_data(smoke_zoo):
    """The same construction with valid data succeeds (the checks above are not vacuous)."""
    good = load_subject(smoke_zoo.trojan, budget=8)
    subject = Subject(model=load_model(smoke_zoo.trojan), card=good.card, clean_x=good.clean_x, clean_y=good.clean_y)
    assert subject.predict(subject.clean_x).shape == (8, 10)


def test_wrong_weight_shape_names_key(organism_copy):
    """Weights of the wrong shape: OrganismError naming the offending key."""
    folder = organism_copy()
    state = load_file(str(weights(folder)))
    state["fc2.weight"] = torch.zeros(3, 3)
    save_file(state, str(weights(folder)))
    with pytest.raises(OrganismError, match="fc2.weight"):
        load_subject(folder)


def test_missing_weight_key_names_key(organism_copy):
    """Weights lacking a tensor: OrganismError naming the missing key."""
    folder = organism_copy()
    state = load_file(str(weights(folder)))
    del state["head.bias"]
    save_file(state, str(weights(folder)))
    with pytest.raises(OrganismError, match="head.bias"):
        load_subject(folder)


def test_store_on_non_sqlite_file(tmp_path):
    """Opening a store on a file that is not SQLite is a DeepAuditError naming it."""
    path = tmp_path / "results.sqlite"
    path.write_text("this is not a database\n" * 50)
    with pytest.raises(DeepAuditError, match="results.sqlite"):
        Store(path)


def test_corrupt_organism_does_not_spoil_the_store(smoke_zoo, tmp_path):
    """A corrupt organism fails only its own cells: no crash, earlier results kept, error recorded."""
    store = tmp_path / "results.sqlite"
    first = run_game("smoke", tools=["weight_stats", "random"], store=store, zoo_dir=smoke_zoo.dir)
    assert (first.ran, first.failed) == (6, [])

    zoo = tmp_path / "zoo"
    shutil.copytree(smoke_zoo.dir, zoo)
    bad = smoke_zoo.trojan.name
    (zoo / bad / "weights.safetensors").write_bytes(b"not safetensors at all" * 10)

    second = run_game("smoke", tools=["weight_stats", "random", "strip"], store=store, zoo_dir=zoo)
    assert (second.already_done, second.ran, second.not_applicable) == (6, 0, 2)
    assert [(oid, tool) for oid, tool, _ in second.failed] == [(bad, "strip")]
    assert "OrganismError" in second.failed[0][2]

    db = Store(store)
    try:
        done = {(c["organism_id"], c["tool"]) for status in ("done", "skipped") for c in db.cells("smoke", 0, status)}
        errors = list(db.cells("smoke", 0, status="error"))
    finally:
        db.close()
    assert {(bad, "weight_stats"), (bad, "random")} <= done
    assert len(done) == 8
    assert [(c["organism_id"], c["tool"]) for c in errors] == [(bad, "strip")]
    assert "weights.safetensors" in errors[0]["error"]
