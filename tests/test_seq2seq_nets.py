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


def exhaustive_over(step, state, vocab_size, max_length, alpha, bos=BOS, eos=EOS):
    """The best finished sequence of one row (``state`` holds one row) by enumerating every
    sequence of every length and scoring it with ``step`` from BOS."""
    best, best_seq = -math.inf, None
    for n in range(1, max_length + 1):
        for seq in itertools.product(range(vocab_size), repeat=n):
            if eos in seq[:-1] or (n < max_length and seq[-1] != eos):
                continue  # finished means: ends at its first EOS, or is cut at max_length
            h, token, total = state, torch.tensor([bos]), 0.0
            for s in seq:
                log_probs, h = step(token, h)
                total += float(log_probs[0, s])
                token = torch.tensor([s])
            score = total / n ** alpha
            if score > best:
                best, best_seq = score, list(seq)
    return best_seq, best


def exhaustive(decoder, row, max_length, alpha):
    return exhaustive_over(decoder.step, decoder.h0[row : row + 1], V, max_length, alpha)


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


def test_narrow_beams_never_beat_exhaustive_search():
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


# A garden path (tokens 0 pad, 1 bos, 2 eos, 3), Markov in the last token: from BOS, "3" is the
# likeliest token (0.5) but every continuation of it is uniform (0.25), while "0" (0.4) is almost
# surely followed by EOS (0.99). With the raw log-probability (length_penalty 0) the best sequence
# is "0 EOS" (log 0.396 = -0.926); a beam of one follows "3" and ends at "3 EOS" (log 0.125 = -2.079).
GARDEN = torch.log(torch.tensor([
    [0.01 / 3, 0.01 / 3, 0.99, 0.01 / 3],  # after 0
    [0.40, 0.05, 0.05, 0.50],               # after BOS
    [0.25, 0.25, 0.25, 0.25],               # after EOS (never read)
    [0.25, 0.25, 0.25, 0.25],               # after 3
]))


def test_widening_the_beam_finds_what_a_beam_of_one_misses():
    step = lambda tokens, state: (GARDEN[tokens], state)  # noqa: E731
    reorder = lambda state, index: state.index_select(0, index)  # noqa: E731
    found = {}
    for k in (1, 2, V ** 3):
        tokens, lengths, found[k] = beam_search(step, reorder, torch.zeros(1, 1), 1, BOS, EOS, k, 3, 0.0,
                                                torch.device("cpu"))
        found[k] = (tokens[0, : lengths[0]].tolist(), float(found[k][0]))
    assert found[1] == ([3, EOS], pytest.approx(math.log(0.5 * 0.25)))
    assert found[2] == ([0, EOS], pytest.approx(math.log(0.4 * 0.99)))
    assert found[V ** 3] == found[2]
    assert exhaustive_over(step, torch.zeros(1, 1), V, 3, 0.0) == ([0, EOS], pytest.approx(math.log(0.4 * 0.99)))


@pytest.mark.parametrize("cell,attention,alpha,seed", [("lstm", "general", 1.0, 22), ("gru", "additive", 0.0, 4)])
def test_a_real_seq2seq_nets_beam_as_wide_as_the_search_space_is_exhaustive_search(cell, attention, alpha, seed):
    """K = V ** L on a tiny Seq2SeqNet: decode's beam (through net.step and net.reorder, rows of
    different source lengths) returns what enumerating every output through net.step finds. The
    seeds give rows whose best outputs differ from each other and, in one row, from greedy's."""
    torch.manual_seed(seed)
    vocab, max_length = 5, 3
    net = Seq2SeqNet(vocab, BOS, EOS, attention=attention, cell=cell, hidden_size=6, embedding_dim=3).eval()
    inputs, lengths = torch.randint(3, vocab, (3, 4)), torch.tensor([4, 1, 3])
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)  # sharper distributions: the best sequences differ from row to row
        tokens, out_lengths = net.decode(inputs, lengths, max_length, beam_size=vocab ** max_length,
                                         length_penalty=alpha)
        greedy, _ = net.decode(inputs, lengths, max_length, beam_size=1)
        assert len({tuple(r[:n]) for r, n in zip(tokens.tolist(), out_lengths.tolist())}) == 3
        assert not torch.equal(tokens[:, : greedy.shape[1]], greedy)
        memory, mask, state = net.encode(inputs, lengths)

        def step(token, s):
            logits, s, _ = net.step(token, s)
            return torch.log_softmax(logits, -1), s

        for row in range(3):
            one = net.reorder((state, memory, mask), torch.tensor([row]))
            seq, _ = exhaustive_over(step, one, vocab, max_length, alpha)
            assert tokens[row, : out_lengths[row]].tolist() == seq
            assert torch.all(tokens[row, out_lengths[row]:] == 0)


def test_a_beam_of_one_is_greedy_decoding_through_net_step():
    """decode(beam_size=1) is the argmax at every step (a beam of one is not: it keeps an earlier
    finished hypothesis that scores higher, see the garden path above), checked token by token."""
    torch.manual_seed(2)
    net = Seq2SeqNet(6, BOS, EOS, attention="dot", cell="lstm", hidden_size=5).eval()
    inputs, lengths = torch.randint(3, 6, (4, 5)), torch.tensor([5, 2, 4, 1])
    with torch.no_grad():
        tokens, out_lengths = net.decode(inputs, lengths, max_length=7, beam_size=1)
        memory, mask, state = net.encode(inputs, lengths)
        for row in range(4):
            s, token, expected = net.reorder((state, memory, mask), torch.tensor([row])), torch.tensor([BOS]), []
            while len(expected) < 7 and (not expected or expected[-1] != EOS):
                logits, s, _ = net.step(token, s)
                token = logits.argmax(-1)
                expected.append(int(token))
            assert tokens[row, : out_lengths[row]].tolist() == expected


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


def _hand_attention(attention, query, memory, lengths):
    """Weights and context by the formulas of attention.py, in float64 Python loops."""
    kind, (B, U, _), S = attention.kind, query.shape, memory.shape[1]
    q, m = query.double().tolist(), memory.double().tolist()
    matrix = lambda linear: linear.weight.detach().double().tolist()  # noqa: E731
    apply = lambda w, x: [sum(a * b for a, b in zip(row, x)) for row in w]  # noqa: E731
    weights = torch.zeros(B, U, S, dtype=torch.float64)
    context = torch.zeros(B, U, memory.shape[2], dtype=torch.float64)
    for b in range(B):
        for u in range(U):
            scores = []
            for s in range(int(lengths[b])):  # padded steps get no score at all
                if kind == "dot":
                    score = sum(a * c for a, c in zip(q[b][u], m[b][s]))
                elif kind == "general":
                    score = sum(a * c for a, c in zip(q[b][u], apply(matrix(attention.key), m[b][s])))
                else:
                    wq, wk = apply(matrix(attention.query), q[b][u]), apply(matrix(attention.key), m[b][s])
                    bias, v = attention.key.bias.detach().double().tolist(), matrix(attention.v)[0]
                    score = sum(vj * math.tanh(x + y + z) for vj, x, y, z in zip(v, wq, wk, bias))
                scores.append(score)
            top = max(scores)
            exps = [math.exp(x - top) for x in scores]
            for s, e in enumerate(exps):
                weights[b, u, s] = e / sum(exps)
                context[b, u] += weights[b, u, s] * torch.tensor(m[b][s], dtype=torch.float64)
    return weights, context


@pytest.mark.parametrize("kind,query_size", [("dot", 4), ("general", 6), ("additive", 6)])
def test_attention_weights_are_the_hand_computed_masked_softmax_of_each_score(kind, query_size):
    torch.manual_seed(3)
    attention = Attention(kind, query_size, 4)
    for p in attention.parameters():
        torch.nn.init.normal_(p)  # non-zero biases too
    memory, query = torch.randn(3, 5, 4), torch.randn(3, 2, query_size)
    lengths = torch.tensor([5, 1, 3])
    with torch.no_grad():
        context, weights = attention(query, memory, source_mask(lengths, 5, memory.device))
    hand_weights, hand_context = _hand_attention(attention, query, memory, lengths)
    assert torch.allclose(weights.double(), hand_weights, atol=1e-6)  # float32 softmax of O(10) scores
    assert torch.allclose(context.double(), hand_context, atol=1e-5)
    assert torch.equal(weights[1, :, 0], torch.ones(2))  # one valid step takes all the weight


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
