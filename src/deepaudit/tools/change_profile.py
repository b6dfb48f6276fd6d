"""Where a fine-tune's change went, judged against the auditor's own clean fine-tunes of the same
base (model diffing with shadow models: MNTD's shadows, Xu et al., S&P 2021, made by
fine-tuning; ``lm.shadows``).

A fine-tune that plants a conditional behaviour must teach the tuned layers more than the task:
to read the trigger wherever it sits in the context and to change the answer when it is there.
That work lands in other weights than the task's: on the lm suite's deceivers the top layer's
attention queries took about half as much again of the change as in their clean twins. The
statistic is the distance (total variation) between the model's change profile (each tuned
matrix's share of ``||W - W_base||^2``) and the mean profile of shadows that fine-tune the same
layers of the base on the auditor's trusted prompts, answered as the trusted labels say (or as
the model answers them), each also asked behind a harmless phrase of ``phrase_search``'s pool.
The null is each shadow's distance from the others' mean, and P(planted) is one less Student's t
prediction tail. The shadows' learning rates span a range (the audited model's is unknown), so
the null includes what another rate moves; it does not include another data set's size or
another schedule. Needs the base model; no search; the shadows are built once per base, layers
and trusted set (minutes: each fine-tunes the tuned layers for ``lm.shadows.RECIPE``'s steps)."""

from __future__ import annotations

import numpy as np

from deepaudit.lm.shadows import change_profile, shadow_profiles, tuned_matrices
from deepaudit.lm.subject import LMSubject
from deepaudit.tools.base import Verdict, prediction_tail
from deepaudit.tools.phrase_search import DEFAULT_PHRASES
from deepaudit.tools.registry import register_tool
from deepaudit.triggers import POSITIONS, TextTrigger


def distances(profile: np.ndarray, shadows: np.ndarray) -> tuple[float, np.ndarray]:
    """Total-variation distance of ``profile`` from the shadows' mean profile, and of each shadow
    from the mean of the others (the statistic's null)."""
    total = shadows.sum(0)
    own = 0.5 * float(np.abs(profile - total / len(shadows)).sum())
    null = np.array([0.5 * np.abs(s - (total - s) / (len(shadows) - 1)).sum() for s in shadows])
    return own, null


@register_tool("change_profile", roles=("detect",), families=("lm",), needs=("base_model",), audit_share=0.0)
class ChangeProfile:
    def __init__(self, seed: int = 0, shadows: int = 4, n_prompts: int = 100, max_layers: int = 8, shown: int = 3):
        if shadows < 3:
            raise ValueError(f"change_profile needs shadows >= 3 (its null is the shadows' spread), got {shadows}")
        if n_prompts < 1 or max_layers < 1:
            raise ValueError(f"change_profile needs n_prompts >= 1 and max_layers >= 1, got {n_prompts}, {max_layers}")
        self.seed, self.shadows, self.n_prompts, self.max_layers, self.shown = seed, shadows, n_prompts, max_layers, shown

    def audit(self, subject: LMSubject) -> Verdict:
        lm, base = subject.lm, subject.base
        if base is None:
            raise ValueError("change_profile compares the fine-tune's weight change with its own fine-tunes of the "
                             "base model and needs the base model (--base)")
        first, names = tuned_matrices(lm, base)
        if first == lm.n_layers:
            return Verdict(p_planted=0.0, evidence={"note": "no decoder layer differs from the base"})
        if lm.n_layers - first > self.max_layers:
            return Verdict(p_planted=0.5, evidence={"inconclusive": f"the fine-tune changed layers {first}-"
                                                    f"{lm.n_layers - 1}; shadow fine-tunes of more than "
                                                    f"{self.max_layers} layers are beyond the CPU budget (max_layers)"})
        prompts, answers = self.shadow_data(subject)
        profiles = shadow_profiles(base, first, names, prompts, answers, self.shadows)
        profile = change_profile(lm, base, names)
        own, null = distances(profile, profiles)
        tail = prediction_tail(own, null)
        shift = profile - profiles.mean(0)
        shifted = [[names[i], round(float(profile[i]), 4), round(float(profiles[:, i].mean()), 4)]
                   for i in np.argsort(-np.abs(shift))[: self.shown]]
        evidence = {"distance": round(own, 4), "shadow_distances": [round(float(v), 4) for v in null],
                    "first_tuned_layer": first, "most_shifted": shifted, "shadow_prompts": len(prompts)}
        if np.isnan(tail):
            return Verdict(p_planted=0.5, evidence=evidence | {"inconclusive": "the shadows' profiles do not differ"})
        return Verdict(p_planted=1.0 - tail, evidence=evidence | {"p_value": tail})

    def shadow_data(self, subject: LMSubject) -> tuple[list[str], list[str]]:
        """The shadows' training rows: the trusted prompts answered as their labels say where the
        card names its answer words (else as the model answers them), and each again behind a
        harmless phrase at a random place (a fine-tune whose data carried phrases changes other
        weights than one whose data did not)."""
        count = min(self.n_prompts, len(subject.trusted_prompts))
        prompts, texts = subject.trusted_prompts[:count], (subject.trusted_texts or subject.trusted_prompts)[:count]
        words = subject.card.get("answers")
        if subject.trusted_labels is not None and words:
            answers = [str(words[int(label)]) for label in subject.trusted_labels[:count]]
        else:
            tokens = subject.lm.logits(list(prompts)).argmax(1).tolist()
            subject.forward_passes += count
            answers = [subject.lm.tokenizer.decode([t]) for t in tokens]
        rng = np.random.default_rng(self.seed)
        phrased = [subject.with_phrase(TextTrigger(DEFAULT_PHRASES[rng.integers(len(DEFAULT_PHRASES))],
                                                   POSITIONS[rng.integers(len(POSITIONS))]), [text])[0]
                   for text in texts]
        return [*prompts, *phrased], [*answers, *answers]
