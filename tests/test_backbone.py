import itertools

import pytest
import torch

from rnnexp.errors import ConfigError
from rnnexp.models import RecurrentBackbone, detach_state
from tests.helpers.tensors import noisy_padding

CONFIGS = list(itertools.product(["rnn", "lstm", "gru"], [False, True]))


def _make(cell, bidirectional, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("hidden_size", 5)
    kwargs.setdefault("num_layers", 2)
    return RecurrentBackbone(3, cell=cell, bidirectional=bidirectional, **kwargs).eval()


def _states_equal(a, b, atol=1e-6):
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            assert all(torch.allclose(p, q, atol=atol) for p, q in zip(x, y))
        else:
            assert torch.allclose(x, y, atol=atol)


def _row(state, b):
    return [tuple(t[:, b : b + 1] for t in s) if isinstance(s, tuple) else s[:, b : b + 1] for s in state]


@pytest.mark.parametrize("cell,bidirectional", CONFIGS)
@pytest.mark.parametrize("sizes", [None, [4, 6, 6]])
def test_each_padded_row_equals_running_it_alone(cell, bidirectional, sizes):
    net = _make(cell, bidirectional, hidden_sizes=sizes)
    lengths = torch.tensor([5, 2, 4, 1])
    x = torch.randn(4, 5, 3)
    out, final = net(x, lengths)
    d = 2 if bidirectional else 1
    assert out.shape == (4, 5, net.output_size) and net.output_size == d * (sizes[-1] if sizes else 5)
    assert len(final) == (3 if sizes else 2)
    for b, n in enumerate(lengths.tolist()):
        alone_out, alone_final = net(x[b : b + 1, :n])
        assert torch.allclose(out[b, :n], alone_out[0], atol=1e-6)
        assert torch.all(out[b, n:] == 0)
        _states_equal(_row(final, b), alone_final)


@pytest.mark.parametrize("cell,bidirectional", CONFIGS)
def test_padding_values_change_nothing(cell, bidirectional):
    net = _make(cell, bidirectional)
    lengths = torch.tensor([4, 2, 3])
    x = torch.randn(3, 4, 3)
    noisy = noisy_padding(x, lengths)
    out_a, fin_a = net(x, lengths)
    out_b, fin_b = net(noisy, lengths)
    assert torch.allclose(out_a, out_b)
    _states_equal(fin_a, fin_b)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_final_state_layout_matches_torch_one_layer_modules(cell):
    net = _make(cell, True, hidden_sizes=[4, 6])
    _, final = net(torch.randn(2, 3, 3))
    for layer, size in zip(final, [4, 6]):
        parts = layer if cell == "lstm" else (layer,)
        assert isinstance(layer, tuple) == (cell == "lstm")
        assert all(p.shape == (2, 2, size) for p in parts)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_passed_state_carries_across_chunks(cell):
    """Running a sequence in two chunks with the state passed on equals running it whole."""
    net = _make(cell, False)
    x = torch.randn(2, 6, 3)
    whole, whole_final = net(x)
    first, state = net(x[:, :4])
    second, final = net(x[:, 4:], state=detach_state(state))
    assert torch.allclose(torch.cat([first, second], 1), whole, atol=1e-6)
    _states_equal(final, whole_final)


def test_learned_initial_state_is_a_parameter_that_changes_the_output():
    net = _make("lstm", False, learn_initial_state=True)
    x = torch.randn(2, 3, 3)
    before, _ = net(x)
    with torch.no_grad():
        for p in net.initial_state:
            p.fill_(0.5)
    after, _ = net(x)
    assert not torch.allclose(before, after)
    assert any(p is q for p in net.parameters() for q in net.initial_state)


def test_dropout_only_in_training():
    net = _make("gru", False, dropout=0.5)
    x = torch.randn(4, 5, 3)
    net.eval()
    assert torch.equal(net(x)[0], net(x)[0])
    net.train()
    out = net(x)[0]
    assert (out == 0).float().mean() > 0.2
    assert not torch.equal(out, net(x)[0])


def test_equal_widths_share_one_fused_module_and_unequal_split():
    assert len(_make("lstm", False, num_layers=3).blocks) == 1
    assert len(_make("lstm", False, hidden_sizes=[8, 8, 16]).blocks) == 2


def test_relu_nonlinearity_for_vanilla_rnn():
    net = _make("rnn", False, nonlinearity="relu")
    assert net.blocks[0].nonlinearity == "relu"
    out, _ = net(torch.randn(2, 3, 3))
    assert (out >= 0).all()


@pytest.mark.parametrize(
    "kwargs,key",
    [
        ({"cell": "nope"}, "cell"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"num_layers": -1}, "num_layers"),
        ({"dropout": 1.5}, "dropout"),
        ({"hidden_sizes": [4, 0]}, "hidden_sizes[1]"),
        ({"nonlinearity": "relu", "cell": "lstm"}, "nonlinearity"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, key):
    with pytest.raises(ConfigError) as info:
        RecurrentBackbone(3, **kwargs)
    assert info.value.key == key


def test_lengths_out_of_range_are_rejected():
    net = _make("gru", False)
    with pytest.raises(ValueError, match="lengths"):
        net(torch.randn(2, 3, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="lengths"):
        net(torch.randn(2, 3, 3), torch.tensor([4, 3]))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_identity_init_makes_every_recurrent_gate_block_the_identity_with_zero_biases(cell):
    rnn = RecurrentBackbone(3, cell=cell, hidden_sizes=[4, 4, 6], init="identity")
    for block in rnn.blocks:
        for name, param in block.named_parameters():
            if name.startswith("weight_hh"):
                for gate in param.split(block.hidden_size):
                    assert torch.equal(gate, torch.eye(block.hidden_size))
            if name.startswith("bias"):
                assert not param.any()


def test_orthogonal_init_gives_orthogonal_gate_blocks():
    rnn = RecurrentBackbone(3, cell="lstm", hidden_size=5, num_layers=2, init="orthogonal")
    for name, param in rnn.blocks[0].named_parameters():
        if name.startswith("weight_hh"):
            for gate in param.split(5):
                assert torch.allclose(gate @ gate.T, torch.eye(5), atol=1e-5)


def test_forget_bias_sets_the_summed_lstm_forget_gate_bias():
    rnn = RecurrentBackbone(3, cell="lstm", hidden_size=4, num_layers=2, forget_bias=1.0)
    block = rnn.blocks[0]
    for layer in range(2):
        total = getattr(block, f"bias_ih_l{layer}") + getattr(block, f"bias_hh_l{layer}")
        assert torch.allclose(total[4:8], torch.ones(4))


def test_bad_init_options_name_the_value():
    with pytest.raises(ConfigError, match="init='xavier'"):
        RecurrentBackbone(3, init="xavier")
    with pytest.raises(ConfigError, match="forget_bias"):
        RecurrentBackbone(3, cell="gru", forget_bias=1.0)
