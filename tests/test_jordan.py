"""cell=jordan against a step-by-step Python reference of CS20's equations
h_t = σ_h(W_h x_t + U_h y_{t-1} + b_h), y_t = σ_y(W_y h_t + b_y): lengths, padding, final state,
bidirectional, layers, carried state, and the per-step diagnostics."""

import pytest
import torch

from rnnexp.models import RecurrentBackbone, detach_state
from rnnexp.models.nets.jordan import JordanRNN
from rnnexp.models.nets.unrolled import state_gradients

ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def reference(block: JordanRNN, x, lengths, hx=None):
    """One row, one step, one scalar equation at a time; past a row's length nothing happens."""
    directions = 2 if block.bidirectional else 1
    act = ACT[block.nonlinearity]
    batch, steps, H = x.shape[0], x.shape[1], block.hidden_size
    finals = []
    for layer in range(block.num_layers):
        out = torch.zeros(batch, steps, directions * H)
        for d, suffix in enumerate(("", "_reverse")[:directions]):
            p = {w: getattr(block, f"{w}_l{layer}{suffix}") for w in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hy", "bias_hy")}
            final = torch.zeros(batch, H)
            for b in range(batch):
                n = int(lengths[b])
                y = torch.zeros(H) if hx is None else hx[layer * directions + d, b]
                order = range(n) if d == 0 else reversed(range(n))
                for t in order:
                    h = act(p["weight_ih"] @ x[b, t] + p["weight_hh"] @ y + p["bias_ih"] + p["bias_hh"])
                    y = act(p["weight_hy"] @ h + p["bias_hy"])
                    out[b, t, d * H:(d + 1) * H] = y
                final[b] = y
            finals.append(final)
        x = out
    return x, torch.stack(finals)


def _block(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("hidden_size", 4)
    return JordanRNN(3, batch_first=True, **kwargs)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("nonlinearity", ["tanh", "sigmoid"])
def test_matches_the_equations_with_lengths(bidirectional, num_layers, nonlinearity):
    block = _block(num_layers=num_layers, bidirectional=bidirectional, nonlinearity=nonlinearity)
    lengths = torch.tensor([5, 2, 4, 1])
    x = torch.randn(4, 5, 3)
    with torch.no_grad():
        expected, expected_final = reference(block, x, lengths)
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, final = block(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=5)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(final, expected_final, atol=1e-6)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[b, n:] == 0)


def test_the_state_is_the_output_not_the_hidden_layer():
    """y_{t-1} (the previous output) feeds step t: a given initial state equals the reference's."""
    block = _block()
    x, hx = torch.randn(2, 3, 3), torch.randn(1, 2, 4)
    with torch.no_grad():
        out, final = block(x, hx)
        expected, expected_final = reference(block, x, torch.tensor([3, 3]), hx)
    assert torch.allclose(out, expected, atol=1e-6) and torch.allclose(final, expected_final, atol=1e-6)
    assert torch.equal(final[0], out[:, -1])  # the carried state is the last output


def _backbone(**kwargs):
    torch.manual_seed(0)
    return RecurrentBackbone(3, cell="jordan", hidden_size=4, **kwargs).eval()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_backbone_contract_rows_alone_equal_padded_batch(bidirectional):
    net = _backbone(num_layers=2, bidirectional=bidirectional)
    lengths = torch.tensor([4, 1, 3])
    x = torch.randn(3, 4, 3)
    x_noisy = x.clone()
    x_noisy[1, 1:] = 100.0  # padding values change nothing
    out, final = net(x_noisy, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_final = net(x[b:b + 1, :n])
        assert torch.allclose(out[b, :n], alone[0], atol=1e-6)
        assert torch.all(out[b, n:] == 0)
        for layer, layer_alone in zip(final, alone_final):
            assert torch.allclose(layer[:, b:b + 1], layer_alone, atol=1e-6)


def test_carried_state_across_chunks_equals_the_whole_sequence():
    net = _backbone(num_layers=2)
    x = torch.randn(2, 6, 3)
    whole, whole_final = net(x)
    first, state = net(x[:, :4])
    second, final = net(x[:, 4:], state=detach_state(state))
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(final, whole_final))


def test_per_step_diagnostics_use_all_the_layer_weights():
    """record_states runs each step through a one-layer module with this layer's parameters,
    W_y included: same outputs as the normal path, and a gradient for every step."""
    net = _backbone(bidirectional=True)
    x, lengths = torch.randn(2, 4, 3), torch.tensor([4, 2])
    expected, _ = net(x, lengths)
    with net.record_states() as taps:
        out, _ = net(x, lengths)
    assert torch.allclose(out, expected, atol=1e-6)
    grads = state_gradients(out.sum(), taps)
    assert grads[0].shape == (2, 4, 8) and grads[0][0].abs().sum() > 0


def test_identity_init_and_gradients_reach_every_weight():
    net = RecurrentBackbone(3, cell="jordan", hidden_size=4, init="identity", nonlinearity="relu")
    block = net.blocks[0]
    assert torch.equal(block.weight_hh_l0, torch.eye(4)) and torch.all(block.bias_hy_l0 == 0)
    out, _ = net(torch.randn(2, 3, 3))
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
