"""Neural Cleanse against distilled students: the student copies the model on clean inputs, a
student is the same whenever it is distilled again, one distilled in rounds until it agrees is the
one trained that long in one go, and the tool's answer is shaped as its combinations read it."""

from __future__ import annotations

import pytest
import torch

from deepaudit.subject import load_subject
from deepaudit.tools import make_tool
from deepaudit.tools.nc_distill import distil
from deepaudit.zoo import read_truth


def test_a_distilled_student_copies_the_model_on_clean_inputs_and_is_reproducible(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=128)
    student = distil(subject, seed=0).model
    with torch.no_grad():
        copied = student(subject.clean_x).argmax(1) == subject.predict(subject.clean_x).argmax(1)
        assert float(copied.float().mean()) >= 0.8
        again = distil(subject, seed=0).model
        assert torch.equal(student(subject.clean_x), again(subject.clean_x))
        other = distil(subject, seed=1).model
        assert not torch.equal(student(subject.clean_x), other(subject.clean_x))



def test_a_student_trains_in_rounds_until_it_agrees_and_equals_one_trained_that_long_at_once(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=128)
    assert distil(subject, seed=0, steps=20, until_agreement=0.0, max_steps=60).steps == 20  # agrees at once
    rounds = distil(subject, seed=0, steps=20, until_agreement=1.0, max_steps=60)
    assert rounds.steps in (20, 40, 60) and (rounds.agreement == 1.0 or rounds.steps == 60)
    with torch.no_grad():
        predicted = subject.predict(subject.clean_x).argmax(1)
        assert rounds.agreement == float((rounds.model(subject.clean_x).argmax(1) == predicted).float().mean())
        at_once = distil(subject, seed=0, steps=rounds.steps)
        assert torch.equal(rounds.model(subject.clean_x), at_once.model(subject.clean_x))


def test_nc_distill_names_the_smoke_trojans_target_and_keeps_its_evidence(smoke_zoo):
    subject = load_subject(smoke_zoo.trojan, budget=128)
    verdict = make_tool("nc_distill", students=1).audit(subject)
    assert verdict.target == read_truth(smoke_zoo.trojan)["target"]
    assert verdict.evidence["p_value"] == pytest.approx(1.0 - verdict.p_planted)
    assert len(verdict.evidence["shift"]) == subject.num_classes and len(verdict.evidence["student_accuracy"]) == 1


def test_nc_distill_refuses_no_students():
    with pytest.raises(ValueError, match="students"):
        make_tool("nc_distill", students=0)
