"""Batched greedy and beam search over any step function.

``step(tokens [N], state) -> (log_probs [N, V], state)`` runs a decoder one step for N rows;
``reorder(state, index [N'])`` picks (and repeats) rows of a state. The searches know nothing
else about the model, so they are tested against an exhaustive search on a tiny vocabulary.

Beam search keeps ``beam_size`` live hypotheses per row. A candidate ending in ``eos`` leaves
the beam as a finished hypothesis scored ``log p / length ** length_penalty`` (length counts
EOS; 0 gives the raw sum, 1 the mean per token); at ``max_length`` every live hypothesis
finishes. The best finished hypothesis of each row is returned. It stops early once no live
hypothesis can beat a row's best finished one (log-probabilities only fall, so a live score
``s`` can at best reach ``s / max_length ** length_penalty``). With a beam wide enough to hold
every prefix it is an exhaustive search.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import torch
from torch import Tensor

from rnnexp.batch import PAD_INDEX

Step = Callable[[Tensor, Any], Tuple[Tensor, Any]]
Reorder = Callable[[Any, Tensor], Any]


def greedy_search(step: Step, state: Any, batch: int, bos: int, eos: int, max_length: int,
                  device: torch.device) -> Tuple[Tensor, Tensor]:
    """``(tokens [B, L], lengths [B])``: the argmax at every step, EOS included, ``PAD_INDEX`` after it."""
    tokens = torch.full((batch,), bos, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.full((batch,), max_length, dtype=torch.long, device=device)
    out = []
    for t in range(max_length):
        log_probs, state = step(tokens, state)
        tokens = log_probs.argmax(-1).masked_fill(done, PAD_INDEX)
        out.append(tokens)
        ended = (tokens == eos) & ~done
        lengths = torch.where(ended, torch.full_like(lengths, t + 1), lengths)
        done = done | ended
        if bool(done.all()):
            break
    return torch.stack(out, 1), lengths.cpu()


def beam_search(step: Step, reorder: Reorder, state: Any, batch: int, bos: int, eos: int, beam_size: int,
                max_length: int, length_penalty: float, device: torch.device) -> Tuple[Tensor, Tensor, Tensor]:
    """``(tokens [B, max_length] with PAD_INDEX after each row's end, lengths [B], scores [B])``."""
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    K, rows = beam_size, torch.arange(batch, device=device)
    state = reorder(state, rows.repeat_interleave(K))
    tokens = torch.full((batch * K,), bos, dtype=torch.long, device=device)
    scores = torch.full((batch, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis to start with
    history = torch.zeros(batch * K, 0, dtype=torch.long, device=device)
    best = torch.full((batch,), float("-inf"), device=device)
    best_tokens = torch.full((batch, max_length), PAD_INDEX, dtype=torch.long, device=device)
    best_lengths = torch.zeros(batch, dtype=torch.long, device=device)

    for t in range(1, max_length + 1):
        log_probs, state = step(tokens, state)
        V = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs.float()).view(batch, K, V)
        # Finishing candidates: those ending in EOS, or all of them at the last step.
        last = t == max_length
        finishing = candidates.view(batch, K * V) if last else candidates[:, :, eos]
        value, where = (finishing / t ** length_penalty).max(-1)
        beam, token = (where // V, where % V) if last else (where, torch.full_like(where, eos))
        better = value > best
        new = torch.cat([history.view(batch, K, t - 1)[rows, beam], token[:, None]], 1)
        best_tokens[better, :t] = new[better]
        best_tokens[better, t:] = PAD_INDEX
        best_lengths = torch.where(better, torch.full_like(best_lengths, t), best_lengths)
        best = torch.where(better, value, best)
        if last:
            break
        live = candidates.clone()
        live[:, :, eos] = float("-inf")
        scores, where = live.view(batch, K * V).topk(K, dim=-1)
        origin = (rows[:, None] * K + where // V).view(-1)
        tokens = (where % V).view(-1)
        history = torch.cat([history[origin], tokens[:, None]], 1)
        state = reorder(state, origin)
        if bool((best >= scores.max(-1).values / max_length ** length_penalty).all()):
            break
    return best_tokens, best_lengths.cpu(), best
