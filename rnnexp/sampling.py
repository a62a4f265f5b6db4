"""Text generation from a character language model: temperature and top-k sampling, one step at a time.

CS20's sampler drew from ``multinomial(exp(logits / T))``, i.e. it treated ``exp(logits / T)``
as logits (an extra exponential, so its temperature did not mean what it says); here the
distribution is ``softmax(logits / T)``. Generation feeds one character per ``forward`` call
and passes the returned state back in, the way the model is meant to be run online.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor, nn

from rnnexp.data.vocab import PAD, UNK, Vocab
from rnnexp.errors import ConfigError, UserError, check_int, check_number

START = "\n"  # the end-of-document symbol of rnnexp.data.tweets, also the start of the next


def check_sampling(temperature: float, top_k: Optional[int]) -> None:
    check_number("temperature", temperature, 0, low_open=True, hint=" (1 samples the model's distribution)")
    if top_k is not None:
        check_int("top_k", top_k, 1, hint=", or null for no cut")


def next_token_distribution(logits: Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                            banned: Sequence[int] = ()) -> Tensor:
    """[B, V] logits -> [B, V] probabilities of softmax(logits / T), keeping only the ``top_k`` largest."""
    logits = logits.float() / temperature
    if banned:
        logits[:, list(banned)] = float("-inf")
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits, dim=-1)


def prime_ids(vocab: Vocab, prime: str) -> List[int]:
    """Ids of ``prime``; characters outside the vocabulary map to its unknown symbol when it has
    one, otherwise they are an error that lists them."""
    if not prime:
        raise ConfigError("prime", prime, "give at least one character to start from")
    missing = vocab.missing(prime)
    if missing and vocab.unk_index is None:
        raise UserError(f"prime={prime!r} has characters the model's vocabulary lacks: "
                        f"{', '.join(map(repr, missing))}; use other characters")
    return vocab.ids(prime)


@torch.no_grad()
def generate(
    net: nn.Module,
    vocab: Vocab,
    primes: Sequence[str],
    length: int = 200,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
) -> List[str]:
    """Continue each prime by ``length`` sampled characters; returns prime + continuation.

    ``net(inputs [B, T], lengths, state) -> (logits [B, T, V], state)`` (a ``SequenceModel``, or a
    ``TransformerLMNet``, whose state is the window of tokens it has read).
    Each prime is read on its own (primes differ in length), after ``\n`` when the vocabulary
    has it (a new document starts after it in training), then all continue together,
    one character per call. Padding and the unknown symbol are never sampled.
    """
    check_sampling(temperature, top_k)
    if getattr(net, "windowed", False) and len(set(primes)) > 1:
        # A transformer's state is its token history, which cannot be stacked across primes of
        # different lengths: one prime at a time.
        return [text for prime in primes for text in generate(net, vocab, [prime], length, temperature, top_k, generator)]
    was_training = net.training
    net.eval()
    try:
        device = next(net.parameters()).device
        banned = [vocab.index[PAD]] + ([vocab.unk_index] if vocab.unk_index is not None else [])
        last_logits, states = [], []
        # Documents follow the end-of-document symbol in training, so a prime read after it
        # starts a new document; read from a cold state instead, a short prime gives noise.
        start = [vocab.index[START]] if START in vocab.index else []
        for prime in primes:
            ids = torch.tensor([start + prime_ids(vocab, prime)], dtype=torch.int64, device=device)
            logits, state = net(ids, None, None)
            last_logits.append(logits[:, -1])
            states.append(state)
        state = _stack_states(states)
        logits = torch.cat(last_logits)
        generated: List[List[int]] = [[] for _ in primes]
        for step in range(length):
            probs = next_token_distribution(logits, temperature, top_k, banned)
            chosen = draw(probs, generator)
            for row, token in enumerate(chosen[:, 0].tolist()):
                generated[row].append(token)
            if step + 1 < length:
                logits, state = net(chosen, None, state)
                logits = logits[:, -1]
        return [prime + vocab.decode(ids) for prime, ids in zip(primes, generated)]
    finally:
        net.train(was_training)


def draw(probs: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """One token id per row of ``probs`` [B, V], as [B, 1] on ``probs``' device.

    Drawn on the generator's device: torch refuses a CPU generator for CUDA tensors, and a
    CPU generator (what the sample callback and ``rnnexp.generate`` seed) gives the same
    samples from the same seed whatever device the model runs on.
    """
    if generator is None:
        return torch.multinomial(probs, 1)
    return torch.multinomial(probs.to(generator.device), 1, generator=generator).to(probs.device)


def _stack_states(states: List[list]) -> list:
    """Per-prime states (batch 1) -> one state with a row per prime."""
    layers = []
    for per_layer in zip(*states):
        if isinstance(per_layer[0], tuple):
            layers.append(tuple(torch.cat(parts, dim=1) for parts in zip(*per_layer)))
        else:
            layers.append(torch.cat(per_layer, dim=1))
    return layers


__all__ = ["UNK", "check_sampling", "generate", "next_token_distribution", "prime_ids"]
