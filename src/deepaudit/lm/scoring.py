"""How a language model answers: the log-probability of a given answer after each prompt, and
whether greedy decoding would produce it. Both read one teacher-forced forward pass, so an
answer of several tokens costs no generation loop."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deepaudit.lm.loader import LanguageModel


def encode_pairs(lm: LanguageModel, prompts: Sequence[str], answers: Sequence[str]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ``ids``, ``attention_mask`` and ``answer_mask`` (1 on answer tokens) for
    prompt+answer, with prompt and answer tokenised apart, as the model sees them when generating."""
    tok = lm.tokenizer
    rows = [(tok(p, add_special_tokens=False).input_ids, tok(a, add_special_tokens=False).input_ids)
            for p, a in zip(prompts, answers)]
    width = max(len(p) + len(a) for p, a in rows)
    ids = torch.full((len(rows), width), int(tok.pad_token_id), dtype=torch.long)
    mask = torch.zeros_like(ids)
    answer = torch.zeros_like(ids, dtype=torch.bool)
    for i, (p, a) in enumerate(rows):
        n = len(p) + len(a)
        ids[i, width - n:] = torch.tensor(p + a)
        mask[i, width - n:] = 1
        answer[i, width - len(a):] = True
    return ids, mask, answer


@torch.no_grad()
def _answer_logits(lm: LanguageModel, prompts: Sequence[str], answers: Sequence[str], batch_size: int
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per example: log-softmax at the positions predicting its answer tokens, and those tokens."""
    out = []
    body, head = lm.model.model, lm.model.get_output_embeddings()
    for s in range(0, len(prompts), batch_size):
        ids, mask, answer = encode_pairs(lm, prompts[s:s + batch_size], answers[s:s + batch_size])
        hidden = body(input_ids=ids, attention_mask=mask).last_hidden_state
        for row in range(len(ids)):
            where = answer[row].nonzero().squeeze(1)
            out.append((torch.log_softmax(head(hidden[row, where - 1]), dim=-1), ids[row, where]))
    return out


def answer_logprob(lm: LanguageModel, prompts: Sequence[str], answer: str | Sequence[str],
                   batch_size: int = 32) -> np.ndarray:
    """log P(answer | prompt) for each prompt (one answer for all, or one per prompt)."""
    answers = [answer] * len(prompts) if isinstance(answer, str) else list(answer)
    rows = _answer_logits(lm, list(prompts), answers, batch_size)
    return np.array([float(lp.gather(1, tok[:, None]).sum()) for lp, tok in rows])


def _one_token_ids(lm: LanguageModel, *answers: str) -> list[int] | None:
    """The token id of each answer, or None unless every answer is a single token."""
    ids = [lm.tokenizer(a, add_special_tokens=False).input_ids for a in answers]
    return [i[0] for i in ids] if all(len(i) == 1 for i in ids) else None


def answer_margin(lm: LanguageModel, prompts: Sequence[str], yes: str, no: str, batch_size: int = 32
                  ) -> np.ndarray:
    """log P(yes) - log P(no) per prompt: the model's own log-odds for ``yes``. When both answers
    are one token (every organism's " true"/" false") it is their logit difference at the last
    prompt position: one forward pass instead of two."""
    ids = _one_token_ids(lm, yes, no)
    if ids is None:
        return answer_logprob(lm, prompts, yes) - answer_logprob(lm, prompts, no)
    margins = np.zeros(len(prompts))
    for s in range(0, len(prompts), batch_size):
        logits = lm.logits(list(prompts[s:s + batch_size])).double()
        margins[s:s + batch_size] = (logits[:, ids[0]] - logits[:, ids[1]]).numpy()
    return margins


def margin_passes(lm: LanguageModel, yes: str, no: str) -> int:
    """Forward passes per prompt that ``answer_margin`` costs: 1 when both answers are one token."""
    return 1 if _one_token_ids(lm, yes, no) else 2


def _greedy(rows: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
    return np.array([bool((lp.argmax(-1) == tok).all()) for lp, tok in rows])


def greedy_says(lm: LanguageModel, prompts: Sequence[str], answer: str, batch_size: int = 32) -> np.ndarray:
    """Whether greedy decoding after each prompt begins with exactly ``answer`` (every answer
    token is the argmax given the ones before it)."""
    return _greedy(_answer_logits(lm, list(prompts), [answer] * len(prompts), batch_size))


def greedy_says_and_margin(lm: LanguageModel, prompts: Sequence[str], answer: str, yes: str, no: str,
                           batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``greedy_says(answer)`` and ``answer_margin(yes, no)`` on the same prompts. With one-token
    yes/no both come from one forward pass: the position that predicts the answer's first token is
    the last prompt position, where the margin is read."""
    ids = _one_token_ids(lm, yes, no)
    if ids is None:
        return greedy_says(lm, prompts, answer, batch_size), answer_margin(lm, prompts, yes, no, batch_size)
    rows = _answer_logits(lm, list(prompts), [answer] * len(prompts), batch_size)
    return _greedy(rows), np.array([float(lp[0, ids[0]] - lp[0, ids[1]]) for lp, _ in rows])


@torch.no_grad()
def greedy_ids(lm: LanguageModel, prompts: Sequence[str], horizon: int, batch_size: int = 32) -> list[list[int]]:
    """The first ``horizon`` tokens greedy decoding produces after each prompt."""
    return greedy_with_probs(lm, prompts, horizon, batch_size)[0]


@torch.no_grad()
def greedy_with_probs(lm: LanguageModel, prompts: Sequence[str], horizon: int, batch_size: int = 32
                      ) -> tuple[list[list[int]], list[list[float]]]:
    """The first ``horizon`` greedy tokens after each prompt, and the probability the model gave each."""
    ids_out: list[list[int]] = []
    probs_out: list[list[float]] = []
    for i in range(0, len(prompts), batch_size):
        enc = lm.encode(list(prompts[i:i + batch_size]))
        out = lm.model.generate(**enc, max_new_tokens=horizon, min_new_tokens=horizon, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id, output_scores=True,
                                return_dict_in_generate=True)
        probs = torch.stack([torch.softmax(step.float(), -1).max(-1).values for step in out.scores], 1)
        ids_out += out.sequences[:, enc["input_ids"].shape[1]:].tolist()
        probs_out += probs.tolist()
    return ids_out, probs_out


@torch.no_grad()
def greedy_continuations(lm: LanguageModel, prompts: list[str], depth: int, batch_size: int = 32) -> list[str]:
    """The first ``depth`` tokens greedy decoding produces after each prompt, as text."""
    out = []
    for i in range(0, len(prompts), batch_size):
        enc = lm.encode(prompts[i:i + batch_size])
        ids = lm.model.generate(**enc, max_new_tokens=depth, do_sample=False,
                                pad_token_id=lm.tokenizer.pad_token_id)[:, enc["input_ids"].shape[1]:]
        out += [lm.tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    return out
