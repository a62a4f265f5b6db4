"""The encoder-decoder's parts: beam search against exhaustive search, masked attention, the bridge,
and the fused teacher-forced decoder against the step-by-step one used for decoding."""

import itertools
import math

import pytest
import torch

from rnnexp.errors import ConfigError
from rnnexp.models.nets.attention import Attention, source_mask
from rnnexp.models.nets.beam import beam_search, greedy_search
from rnnexp.models.nets.seq2seq import Bridge, Seq2SeqNet

V, BOS, EOS = 4, 1, 2  # tokens 0 (pad), 1 (bos), 2 (eos), 3


class TinyDecoder:
    """A random recurrent scorer: log-probabilities depend on the whole prefix and on the row."""

    def __init__(self, batch):
        torch.manual_seed(0)
        self.cell = torch.nn.GRUCell(V, 5)
        self.out = torch.nn.Linear(5, V)
        self.h0 = torch.randn(batch, 5)

    @torch.no_grad()
    def step(self, tokens, h):
        h = self.cell(torch.nn.functional.one_hot(tokens, V).float(), h)
        return torch.log_softmax(self.out(h) * 3, -1), h

    @staticmethod
    def reorder(h, index):
        return h.index_select(0, index)


def exhaustive(decoder, row, max_length, alpha):
    """The best finished sequence of one row by enumerating every sequence of every length."""
    best, best_seq = -math.inf, None
    for n in range(1, max_length + 1):
        for seq in itertools.product(range(V), repeat=n):
            if EOS in seq[:-1] or (n < max_length and seq[-1] != EOS):
                continue  # finished means: ends at its first EOS, or is cut at max_length
            h, token, total = decoder.h0[row : row + 1], torch.tensor([BOS]), 0.0
            for s in seq:
                log_probs, h = decoder.step(token, h)
                total += float(log_probs[0, s])
                token = torch.tensor([s])
            score = total / n ** alpha
            if score > best:
                best, best_seq = score, list(seq)
    return best_seq, best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_wide_enough_is_exhaustive_search(alpha):
    batch, max_length = 3, 4
    decoder = TinyDecoder(batch)
    tokens, lengths, scores = beam_search(decoder.step, decoder.reorder, decoder.h0, batch, BOS, EOS,
                                          beam_size=V ** max_length, max_length=max_length, length_penalty=alpha,
                                          device=torch.device("cpu"))
    for row in range(batch):
        seq, score = exhaustive(decoder, row, max_length, alpha)
        assert tokens[row, : lengths[row]].tolist() == seq
        assert torch.all(tokens[row, lengths[row]:] == 0)
        assert float(scores[row]) == pytest.approx(score, abs=1e-5)


def test_narrow_beams_never_beat_exhaustive_search_and_widening_helps():
    batch, max_length = 4, 4
    decoder = TinyDecoder(batch)
    found = {}
    for k in (1, 2, 3, V ** max_length):
        _, _, found[k] = beam_search(decoder.step, decoder.reorder, decoder.h0, batch, BOS, EOS, k, max_length, 1.0,
                                     torch.device("cpu"))
    best = torch.tensor([exhaustive(decoder, r, max_length, 1.0)[1] for r in range(batch)])
    for k in (1, 2, 3):
        assert torch.all(found[k] <= best + 1e-5)
    assert torch.allclose(found[V ** max_length], best.float(), atol=1e-5)


def test_greedy_search_follows_the_argmax_and_stops_at_eos():
    batch = 3
    decoder = TinyDecoder(batch)
    tokens, lengths = greedy_search(decoder.step, decoder.h0, batch, BOS, EOS, 6, torch.device("cpu"))
    for row in range(batch):
        h, token = decoder.h0[row : row + 1], torch.tensor([BOS])
        for t in range(int(lengths[row])):
            log_probs, h = decoder.step(token, h)
            token = log_probs.argmax(-1)
            assert int(tokens[row, t]) == int(token)
        assert int(lengths[row]) == 6 or int(tokens[row, lengths[row] - 1]) == EOS
        assert torch.all(tokens[row, lengths[row]:] == 0)


@pytest.mark.parametrize("kind", ["dot", "general", "additive"])
def test_attention_gives_padding_zero_weight(kind):
    torch.manual_seed(0)
    attention = Attention(kind, 6, 6)
    memory, query = torch.randn(3, 5, 6), torch.randn(3, 2, 6)
    lengths = torch.tensor([5, 2, 3])
    mask = source_mask(lengths, 5, memory.device)
    context, weights = attention(query, memory, mask)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(weights[b, :, n:] == 0)
        assert torch.allclose(weights[b, :, :n].sum(-1), torch.ones(2))
    noisy = memory.clone()
    noisy[1, 2:] = 1e3  # padding values cannot leak into the context
    assert torch.allclose(attention(query, noisy, mask)[0], context)


def test_dot_attention_needs_equal_widths():
    with pytest.raises(ConfigError, match="attention=general"):
        Attention("dot", 6, 12)


def test_bridge_copies_when_shapes_match_and_maps_otherwise():
    enc = [torch.randn(1, 2, 8), torch.randn(1, 2, 8)]
    assert Bridge("auto", 1, [8, 8], 1, 8, 2)(enc) == enc
    lstm = [(torch.randn(2, 3, 6), torch.randn(2, 3, 6)), (torch.randn(2, 3, 4), torch.randn(2, 3, 4))]
    bridge = Bridge("auto", 2, [6, 4], 2, 5, 3)  # bidirectional 2-layer encoder -> 3-layer decoder of 5
    assert bridge.kind == "linear"
    out = bridge(lstm)
    assert len(out) == 3 and all(h.shape == (1, 3, 5) and c.shape == (1, 3, 5) for h, c in out)
    out[0][0].sum().backward()  # every encoder state reaches the decoder's
    assert bridge.maps[0].weight.grad.abs().sum() > 0
    assert Bridge("zero", 1, [8], 1, 8, 1)([torch.randn(1, 2, 8)]) is None
    with pytest.raises(ConfigError, match="bridge=linear"):
        Bridge("copy", 1, [8], 2, 8, 1)


@pytest.mark.parametrize("cell,attention", [("lstm", "general"), ("gru", "none"), ("jordan", "additive")])
def test_decoder_initial_state_comes_from_each_rows_last_valid_source_step(cell, attention):
    torch.manual_seed(0)
    net = Seq2SeqNet(7, BOS, EOS, attention=attention, cell=cell, hidden_size=6, num_layers=2, bidirectional=True,
                     decoder_hidden_size=5, decoder_layers=1).eval()
    inputs, lengths = torch.randint(3, 7, (3, 5)), torch.tensor([5, 2, 4])
    target_inputs = torch.randint(3, 7, (3, 4))
    logits, _ = net(inputs, lengths, target_inputs)
    noisy = inputs.clone()
    noisy[1, 2:] = 6
    assert torch.allclose(net(noisy, lengths, target_inputs)[0], logits, atol=1e-6)
    alone, _ = net(inputs[1:2, :2], lengths[1:2], target_inputs[1:2])
    assert torch.allclose(alone, logits[1:2], atol=1e-5)


@pytest.mark.parametrize("attention", ["none", "dot", "general", "additive"])
def test_fused_teacher_forcing_equals_the_decoding_steps(attention):
    """Training reads the whole target in one fused call; decoding steps one token at a time."""
    torch.manual_seed(0)
    net = Seq2SeqNet(7, BOS, EOS, attention=attention, cell="lstm", hidden_size=6, embedding_dim=4).eval()
    inputs, lengths = torch.randint(3, 7, (2, 5)), torch.tensor([5, 3])
    target_inputs = torch.randint(3, 7, (2, 4))
    logits, weights = net(inputs, lengths, target_inputs)
    memory, mask, state = net.encode(inputs, lengths)
    step_state = (state, memory, mask)
    for t in range(4):
        step_logits, step_state, w = net.step(target_inputs[:, t], step_state)
        assert torch.allclose(step_logits, logits[:, t], atol=1e-5)
        if weights is not None:
            assert torch.allclose(w, weights[:, t], atol=1e-6)


def test_without_teacher_forcing_the_decoder_feeds_its_own_greedy_tokens():
    """teacher_forcing=0 (the end of scheduled sampling) reads back its own argmax: greedy decoding."""
    torch.manual_seed(0)
    net = Seq2SeqNet(7, BOS, EOS, attention="general", cell="gru", hidden_size=6).eval()
    inputs, lengths = torch.randint(3, 7, (3, 5)), torch.tensor([5, 3, 4])
    target_inputs = torch.full((3, 6), BOS)  # only the first (BOS) is read when nothing is forced
    logits, _ = net(inputs, lengths, target_inputs, teacher_forcing=0.0)
    tokens, out_lengths = net.decode(inputs, lengths, max_length=6)
    for row, n in enumerate(out_lengths.tolist()):
        assert logits[row, :n].argmax(-1).tolist() == tokens[row, :n].tolist()
