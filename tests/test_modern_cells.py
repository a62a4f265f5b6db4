"""minGRU, minLSTM and the LRU (rnnexp.models.nets.elementwise_rnn) against their papers' equations
written out step by step here, the scans against a plain loop and gradcheck, whole-sequence
against step mode, residual blocks for every cell, refusals, and a real run with a checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rnnexp.errors import ConfigError
from rnnexp.models import RecurrentBackbone
from rnnexp.models.nets import linear_recurrence as lr
from rnnexp.models.nets.seq2seq import Seq2SeqNet
from rnnexp.models.nets.sequence_model import SequenceModel
from rnnexp.train import run
from tests.helpers import compose_config

NEW = ["mingru", "minlstm", "lru"]


# -- the papers' equations, one row and one step at a time -------------------------------------
def _sig(v):
    return 1 / (1 + torch.exp(-v))


def _reference_step(cell, layer, x, h):
    """One step of one direction of one layer from its parameters, as the papers write it.
    ``h`` is the state as carried (for the LRU: real and imaginary parts interleaved)."""
    if cell == "mingru":  # Feng et al. 2024, minGRU (sequential mode)
        w, b = layer.proj.weight, layer.proj.bias
        size = layer.hidden_size
        z = _sig(w[:size] @ x + b[:size])
        cand = w[size:] @ x + b[size:]
        new = (1 - z) * h + z * cand
        return new, new
    if cell == "minlstm":  # Feng et al. 2024, minLSTM with normalised gates
        w, b = layer.proj.weight, layer.proj.bias
        size = layer.hidden_size
        f = _sig(w[:size] @ x + b[:size])
        i = _sig(w[size : 2 * size] @ x + b[size : 2 * size])
        cand = w[2 * size :] @ x + b[2 * size :]
        new = f / (f + i) * h + i / (f + i) * cand
        return new, new
    # Orvieto et al. 2023: lambda = exp(-exp(nu) + i exp(theta)), x_t = lambda x_{t-1} + gamma (B u_t),
    # y_t = Re(C x_t) + D u_t, with B, C complex and gamma = exp(gamma_log).
    lam = torch.exp(-torch.exp(layer.nu_log) + 1j * torch.exp(layer.theta_log))
    gamma = torch.exp(layer.gamma_log)
    B = layer.B.weight[0::2] + 1j * layer.B.weight[1::2]
    C = layer.C.weight[:, 0::2] - 1j * layer.C.weight[:, 1::2]
    state = h[0::2] + 1j * h[1::2]
    state = lam * state + gamma * (B @ x.to(B.dtype))
    y = (C @ state).real + layer.D.weight @ x + layer.D.bias
    return y, torch.stack([state.real, state.imag], -1).flatten()


def _reference(net, cell, x, lengths, state):
    """The whole backbone (plain blocks) by the loop above: each row on its own, its own length."""
    D = net.num_directions
    module = net.blocks[0]
    outs = torch.zeros(x.shape[0], x.shape[1], net.output_size, dtype=x.dtype)
    finals = [torch.zeros(D, x.shape[0], module.state_size, dtype=x.dtype) for _ in range(net.num_layers)]
    for row in range(x.shape[0]):
        n = int(lengths[row])
        inputs = x[row, :n]
        for index in range(net.num_layers):
            per_direction = []
            for d in range(D):
                layer = module.cells[index * D + d]
                h = state[index][d, row] if state is not None else torch.zeros(module.state_size, dtype=x.dtype)
                ys = [None] * n
                for t in (range(n) if d == 0 else reversed(range(n))):
                    ys[t], h = _reference_step(cell, layer, inputs[t], h)
                finals[index][d, row] = h
                per_direction.append(torch.stack(ys))
            inputs = torch.cat(per_direction, -1)
        outs[row, :n] = inputs
    return outs, finals


@pytest.mark.parametrize("cell", NEW)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("scan", ["sequential", "chunked", "parallel"])
def test_each_cell_follows_its_papers_equations(cell, bidirectional, scan):
    torch.manual_seed(0)
    extra = {"state_size": 3} if cell == "lru" else {}
    net = RecurrentBackbone(3, cell=cell, hidden_size=4, num_layers=2, bidirectional=bidirectional, scan=scan,
                            **extra).double().eval()
    x = torch.randn(3, 7, 3, dtype=torch.double)
    lengths = torch.tensor([7, 3, 5])
    width = net.blocks[0].state_size
    state = [torch.randn(net.num_directions, 3, width, dtype=torch.double) for _ in range(2)]
    out, final = net(x, lengths, state)
    ref_out, ref_final = _reference(net, cell, x, lengths, state)
    assert torch.allclose(out, ref_out, atol=1e-10)
    for got, want in zip(final, ref_final):
        assert torch.allclose(got, want, atol=1e-10)


# -- the scans -------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", lr.IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("steps", [1, 2, 11])
@pytest.mark.parametrize("shared", [False, True], ids=["a_per_step", "a_shared"])
def test_every_scan_matches_the_loop_and_passes_gradcheck(impl, dtype, steps, shared):
    """``a`` [T, B, H], or [H] shared by every step and row (the LRU's eigenvalues)."""
    torch.manual_seed(steps)
    shape = (3,) if shared else (steps, 2, 3)
    a = torch.rand(shape, dtype=torch.float64) * 0.95
    if dtype.is_complex:
        a = a * torch.exp(1j * torch.randn(shape, dtype=torch.float64))
    b, h0 = torch.randn(steps, 2, 3, dtype=dtype), torch.randn(2, 3, dtype=dtype)
    full = a.expand(steps, 2, 3)
    assert torch.allclose(lr.linear_recurrence(a, b, h0, impl), lr.reference(full, b, h0), atol=1e-12)
    backwards = lr.reference(full.flip(0), b.flip(0), h0).flip(0)
    assert torch.allclose(lr.scan(impl, full, b, h0, reverse=True), backwards, atol=1e-12)
    inputs = tuple(t.clone().requires_grad_() for t in (a, b, h0))
    assert torch.autograd.gradcheck(lambda *t: lr.linear_recurrence(*t, impl), inputs)


@pytest.mark.parametrize("cell", NEW)
@pytest.mark.parametrize("lengths", [[4, 2], None])
def test_gradcheck_through_a_tiny_layer(cell, lengths):
    """Every parameter too (the LRU's nu, theta, gamma through its shared-a path without lengths)."""
    torch.manual_seed(1)
    extra = {"state_size": 2} if cell == "lru" else {}
    net = RecurrentBackbone(2, cell=cell, hidden_size=2, bidirectional=True, **extra).double()
    x = torch.randn(2, 4, 2, dtype=torch.double, requires_grad=True)
    h = torch.randn(2, 2, net.blocks[0].state_size, dtype=torch.double, requires_grad=True)
    lengths = None if lengths is None else torch.tensor(lengths)
    names, params = zip(*net.named_parameters())

    def run(x, h, *weights):
        out = torch.func.functional_call(net, dict(zip(names, weights)), (x, lengths, [h]))
        return out[0]

    assert torch.autograd.gradcheck(run, (x, h) + tuple(p.detach().clone().requires_grad_() for p in params))


def test_auto_picks_by_device_and_length():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert lr.choose("chunked", cpu, 10) == "chunked"
    assert lr.choose("auto", cpu, 784) == "sequential"
    assert lr.choose("auto", gpu, 784) == "parallel" and lr.choose("auto", gpu, 1) == "sequential"


# -- the backbone's contract, step mode and residual blocks -------------------------------------------
@pytest.mark.parametrize("cell,block", [(c, b) for c in NEW for b in ("plain", "residual")]
                         + [("lstm", "residual"), ("gru", "residual"), ("rnn", "residual")])
def test_step_mode_agrees_with_the_whole_sequence(cell, block):
    torch.manual_seed(2)
    net = RecurrentBackbone(3, cell=cell, hidden_size=6, num_layers=2, block=block).eval()
    x = torch.randn(4, 9, 3)
    state = [tuple(torch.randn_like(t) for t in s) if isinstance(s, tuple) else torch.randn_like(s)
             for s in net(x[:, :1])[1]]
    whole, whole_final = net(x, None, state)
    steps, carried = [], state
    for t in range(9):
        out, carried = net(x[:, t : t + 1], None, carried)
        steps.append(out)
    assert torch.allclose(torch.cat(steps, 1), whole, atol=1e-5)
    for got, want in zip(carried, whole_final):
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            assert torch.allclose(g, w, atol=1e-5)


@pytest.mark.parametrize("cell", NEW + ["lstm", "gru"])
@pytest.mark.parametrize("block", ["plain", "residual"])
def test_padded_rows_equal_running_them_alone_and_padding_changes_nothing(cell, block):
    torch.manual_seed(3)
    net = RecurrentBackbone(3, cell=cell, hidden_size=4, num_layers=2, bidirectional=True, block=block,
                            learn_initial_state=True).eval()
    with torch.no_grad():
        for p in net.initial_state:
            p.normal_()
    lengths = torch.tensor([6, 2, 4])
    x = torch.randn(3, 6, 3)
    noisy = x.clone()
    for row, n in enumerate(lengths.tolist()):
        noisy[row, n:] = torch.randn_like(noisy[row, n:]) * 100
    out, final = net(x, lengths)
    noisy_out, noisy_final = net(noisy, lengths)
    assert torch.equal(out, noisy_out)
    for row, n in enumerate(lengths.tolist()):
        alone, alone_final = net(x[row : row + 1, :n])
        assert torch.allclose(out[row, :n], alone[0], atol=1e-5) and torch.all(out[row, n:] == 0)
        for s, a in zip(final, alone_final):
            for p, q in zip(s if isinstance(s, tuple) else (s,), a if isinstance(a, tuple) else (a,)):
                assert torch.allclose(p[:, row : row + 1], q, atol=1e-5)


def test_residual_blocks_have_their_parts_and_any_cell_fits():
    net = RecurrentBackbone(1, cell="lstm", hidden_size=8, num_layers=3, block="residual", norm="rms", mlp_ratio=1.5)
    assert len(net.residual_blocks) == 3 and isinstance(net.final_norm, torch.nn.RMSNorm)
    assert net.residual_blocks[0].mlp.down.in_features == 12 and isinstance(net.input_proj, torch.nn.Linear)
    assert RecurrentBackbone(8, cell="gru", hidden_size=8, block="residual", mlp_ratio=0).residual_blocks[0].mlp is None



def test_a_residual_lm_with_a_tied_head_starts_near_the_uniform_loss():
    """The residual stream carries the embedding to the tied head: at std 1 it predicted the input
    token (262 nats at this size); the initial loss must be about log V, the uniform guess's."""
    torch.manual_seed(0)
    vocab = 93
    net = SequenceModel(vocab, vocab, False, encoder="embedding", embedding_dim=64, tie_weights=True, cell="mingru",
                        hidden_size=64, num_layers=2, block="residual")
    tokens = torch.randint(1, vocab, (8, 50))
    logits, _ = net(tokens)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens.roll(-1, 1).reshape(-1))
    assert abs(loss.item() - math.log(vocab)) < 0.5
    assert net.encoder.embedding.weight[0].abs().sum() == 0  # the padding row stays zero

def test_lru_ring_initialisation_and_state_width():
    torch.manual_seed(0)
    net = RecurrentBackbone(2, cell="lru", hidden_size=5, state_size=400, r_min=0.5, r_max=0.8, max_phase=math.pi)
    layer = net.blocks[0].cells[0]
    lam = layer.eigenvalues()
    assert lam.abs().min() >= 0.5 - 1e-6 and lam.abs().max() <= 0.8 + 1e-6
    assert lam.angle().min() >= 0 and lam.angle().max() <= math.pi + 1e-6 and lam.angle().max() > 2.5
    assert torch.allclose(torch.exp(layer.gamma_log), torch.sqrt(1 - lam.abs() ** 2), atol=1e-5)
    out, state = net(torch.randn(3, 4, 2))
    assert out.shape == (3, 4, 5) and state[0].shape == (1, 3, 800) and net.state_sizes == [800]


def test_adamw_spares_the_lru_eigenvalue_parametrisation_from_weight_decay():
    from rnnexp.models.tasks.classifier import SequenceClassifier
    adamw = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.1, "weight_decay": 0.5}
    model = SequenceClassifier(input_size=2, num_classes=3, optimizer=adamw, cell="lru", hidden_size=4,
                               state_size=3, block="residual", num_layers=2)
    optimizer = model.configure_optimizers()
    decayed, spared = optimizer.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)].rsplit(".", 1)[1] for p in spared["params"]) == sorted(["nu_log", "theta_log", "gamma_log"] * 2)
    assert spared["weight_decay"] == 0.0 and decayed["weight_decay"] == 0.5
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # zero gradients: only decoupled weight decay moves a weight, by lr * wd
    for n, p in model.named_parameters():
        spare = n.rsplit(".", 1)[1] in ("nu_log", "theta_log", "gamma_log")
        expected = before[n] if spare else before[n] * (1 - 0.1 * 0.5)
        assert torch.allclose(p, expected, atol=1e-7), n
    gru = SequenceClassifier(input_size=2, num_classes=3, optimizer=adamw, cell="gru", hidden_size=4)
    assert len(gru.configure_optimizers().param_groups) == 1  # no hook: one group, as before


def test_minlstm_forget_bias_sets_the_forget_gate_bias():
    net = RecurrentBackbone(2, cell="minlstm", hidden_size=3, forget_bias=2.0)
    assert torch.equal(net.blocks[0].cells[0].proj.bias[:3], torch.full((3,), 2.0))


@pytest.mark.parametrize("cell", NEW)
def test_long_streams_stay_finite_and_the_recurrence_runs_in_fp32_under_bf16(cell):
    torch.manual_seed(4)
    net = RecurrentBackbone(2, cell=cell, hidden_size=8, block="residual")
    x = torch.randn(2, 10_000, 2) * 3
    out, state = net(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and all(torch.isfinite(p.grad).all() for p in net.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, low_state = net(x[:, :784])
    high, high_state = net(x[:, :784])
    assert low_state[0].dtype == torch.float32 and torch.isfinite(low).all()
    assert (low.float() - high).abs().max() < 0.2  # bf16 projections, fp32 recurrence


@pytest.mark.parametrize("kwargs,key", [
    ({"cell": "mingru", "nonlinearity": "relu"}, "nonlinearity"),
    ({"cell": "mingru", "weight_drop": 0.3}, "weight_drop"),
    ({"cell": "lru", "init": "orthogonal"}, "init"),
    ({"cell": "mingru", "forget_bias": 1.0}, "forget_bias"),
    ({"cell": "lstm", "scan": "chunked"}, "scan"),
    ({"cell": "gru", "state_size": 4}, "state_size"),
    ({"cell": "mingru", "r_min": 0.5}, "r_min"),
    ({"cell": "lru", "r_min": 0.9, "r_max": 0.5}, "r_min"),
    ({"cell": "lru", "r_max": 1.0}, "r_min"),
    ({"cell": "lru", "max_phase": 0}, "max_phase"),
    ({"cell": "lru", "scan": "fast"}, "scan"),
    ({"cell": "lstm", "norm": "rms"}, "norm"),
    ({"cell": "lstm", "block": "dense"}, "block"),
    ({"cell": "mingru", "block": "residual", "hidden_sizes": [4, 8]}, "hidden_sizes"),
    ({"cell": "mingru", "block": "residual", "mlp_ratio": -1}, "mlp_ratio"),
])
def test_options_that_do_not_apply_are_refused_in_one_line(kwargs, key):
    with pytest.raises(ConfigError) as info:
        RecurrentBackbone(3, hidden_size=4, **kwargs)
    assert info.value.key == key and "\n" not in str(info.value)


def test_the_per_step_diagnostic_refuses_elementwise_cells():
    net = RecurrentBackbone(3, cell="lru", hidden_size=4)
    with pytest.raises(ConfigError):
        with net.record_states():
            pass


# -- the places that step: generation, beam search; a real run and its checkpoint -----------------
def test_sampling_and_beam_search_step_new_cells():
    from rnnexp.data.vocab import Vocab
    from rnnexp.sampling import generate

    vocab = Vocab.build(["ab\n", "ba"])
    torch.manual_seed(0)
    net = SequenceModel(len(vocab), len(vocab), many_to_one=False, cell="lru", hidden_size=8, block="residual")
    texts = generate(net, vocab, ["ab", "b"], length=5, generator=torch.Generator().manual_seed(0))
    assert [len(t) for t in texts] == [7, 6]
    s2s = Seq2SeqNet(vocab_size=7, bos=1, eos=2, cell="lru", hidden_size=6, state_size=3, bidirectional=True).eval()
    source, lengths = torch.randint(3, 7, (2, 5)), torch.tensor([5, 3])
    greedy, _ = s2s.decode(source, lengths, max_length=6)
    beam, beam_lengths = s2s.decode(source, lengths, max_length=6, beam_size=3)
    assert greedy.shape[0] == beam.shape[0] == 2 and beam_lengths.shape == (2,)


def test_a_real_run_of_a_new_cell_trains_and_its_checkpoint_loads_with_weights_only(tmp_path):
    cfg = compose_config(["data=toy_words", "data.task=i_like_dog", "cell=minlstm", "model.block=residual",
                          "model.hidden_size=16", "trainer.max_epochs=30", "optimizer.lr=0.02",
                          "trainer.enable_progress_bar=false", "logger=none"], tmp_path)
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train/acc"] == 1.0
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert any(".residual_blocks." in k for k in ckpt["state_dict"]) and ckpt["hyper_parameters"]["cell"] == "minlstm"
