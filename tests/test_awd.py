"""AWD-LSTM regularisers (Merity et al. 2017) against hand-written formulas: DropConnect on the
recurrent weights, embedding row dropout, AR/TAR, the NT-ASGD switch, and the preset."""

from __future__ import annotations

import copy
import json
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.trainer.states import TrainerFn

from rnnexp.callbacks.nt_asgd import NTASGD, RAW_KEY, should_switch
from rnnexp.errors import ConfigError
from rnnexp.models import LanguageModel, RecurrentBackbone, SequenceModel
from rnnexp.models.nets.activation_penalty import activation_regularisation, temporal_activation_regularisation
from rnnexp.models.nets.encoders import InputEncoder
from rnnexp.models.nets.weight_drop import dropped_weights
from rnnexp.train import run
from tests.helpers import CONF, compose_config
from tests.helpers.precision import lstm_runs_in_bf16
from tests.helpers.data import write_all

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


# -- weight_drop ---------------------------------------------------------------------------------
def test_dropconnect_masks_every_recurrent_weight_and_scales_the_kept_ones():
    block = torch.nn.LSTM(4, 64, num_layers=2, bidirectional=True, batch_first=True)
    torch.manual_seed(0)
    params = dropped_weights(block, 0.4, training=True)
    names = [n for n in params if n.startswith("weight_hh")]
    assert sorted(names) == ["weight_hh_l0", "weight_hh_l0_reverse", "weight_hh_l1", "weight_hh_l1_reverse"]
    for name, raw in block.named_parameters():
        if name not in names:
            assert params[name] is raw  # input weights and biases untouched
            continue
        kept = params[name] != 0
        assert torch.allclose(params[name][kept], raw[kept] / 0.6)  # kept weights scaled by 1/(1-p)
        assert abs(1 - kept.float().mean().item() - 0.4) < 0.03  # about p of them dropped
    masks = [params[n] != 0 for n in names]
    assert not all(torch.equal(masks[0], m) for m in masks[1:])  # one mask per weight
    assert dropped_weights(block, 0.4, training=False) is None and dropped_weights(block, 0.0, training=True) is None


def _elman_loop(x, w_ih, w_hh, b_ih, b_hh):
    """h_t = tanh(W x_t + b_ih + U h_{t-1} + b_hh), written out step by step."""
    h = x.new_zeros(x.shape[0], w_hh.shape[0])
    outputs = []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        outputs.append(h)
    return torch.stack(outputs, 1)


def test_one_mask_per_forward_pass_is_used_at_every_step_and_gradients_reach_the_raw_weights():
    net = RecurrentBackbone(3, cell="rnn", hidden_size=5, weight_drop=0.5).train()
    block = net.blocks[0]
    x = torch.randn(2, 6, 3)
    torch.manual_seed(1)
    out, _ = net(x)
    torch.manual_seed(1)  # the same draw: the mask that forward used
    mask = (dropped_weights(block, 0.5, True)["weight_hh_l0"] != 0).float()
    dropped = (block.weight_hh_l0 * mask / 0.5).detach().requires_grad_()
    expected = _elman_loop(x, block.weight_ih_l0, dropped, block.bias_ih_l0, block.bias_hh_l0)
    assert torch.allclose(out, expected, atol=1e-6)  # the same dropped U at all six steps
    assert not torch.allclose(out, _elman_loop(x, block.weight_ih_l0, block.weight_hh_l0, block.bias_ih_l0, block.bias_hh_l0))

    out.square().sum().backward()
    expected.square().sum().backward()
    # dL/dU_raw = dL/dU_dropped * m / (1 - p): zero where dropped.
    assert torch.allclose(block.weight_hh_l0.grad, dropped.grad * mask / 0.5, atol=1e-6)
    assert (block.weight_hh_l0.grad[mask == 0] == 0).all() and block.weight_hh_l0.grad.abs().sum() > 0

    second, _ = net(x)
    assert not torch.allclose(second, out)  # a fresh mask at the next forward pass


@pytest.mark.parametrize("cell,kernel", [("lstm", "lstm"), ("gru", "gru"), ("rnn", "rnn_tanh")])
def test_weight_drop_keeps_one_fused_kernel_call_per_block(monkeypatch, cell, kernel):
    """No loop over steps: three layers of equal width are one block and one call of torch's kernel."""
    from torch.nn.modules import rnn as torch_rnn

    calls = []
    original = getattr(torch_rnn._VF, kernel)

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch_rnn, "_VF", SimpleNamespace(**{kernel: counted}))
    net = RecurrentBackbone(3, cell=cell, hidden_sizes=[4, 4, 4], weight_drop=0.5).train()
    out, _ = net(torch.randn(2, 30, 3), torch.tensor([30, 11]))
    assert len(net.blocks) == 1 and len(calls) == 1 and out.shape == (2, 30, 4)


class _NoRecurrentWeights(torch.nn.Module):
    """A cell module whose recurrent weights go by another name."""

    def __init__(self, input_size, hidden_size, num_layers, batch_first, bidirectional, dropout):
        super().__init__()
        self.hidden_size = hidden_size
        self.mix = torch.nn.Linear(input_size, hidden_size)

    def forward(self, x, hx=None):
        return self.mix(x), None


def test_weight_drop_on_a_cell_without_recurrent_weights_is_refused():
    from rnnexp.models.nets.cells import CELLS, CellKind

    CELLS["no_hh"] = CellKind(_NoRecurrentWeights)
    try:
        with pytest.raises(ConfigError, match="weight_drop=0.2 is invalid: cell=no_hh has no recurrent weights"):
            RecurrentBackbone(3, cell="no_hh", hidden_size=4, weight_drop=0.2)
        RecurrentBackbone(3, cell="no_hh", hidden_size=4)  # fine without it
    finally:
        del CELLS["no_hh"]


def test_weight_drop_is_a_no_op_in_eval():
    torch.manual_seed(0)
    net = RecurrentBackbone(3, cell="lstm", hidden_sizes=[4, 4], weight_drop=0.6).eval()
    plain = copy.deepcopy(net)
    plain.weight_drop = 0.0
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4])
    assert torch.equal(net(x, lengths)[0], plain(x, lengths)[0])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "jordan"])
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_weight_drop_runs_the_block_on_the_dropped_weights(cell, bf16, packed):
    """Every cell, two layers in one block, both directions, padded or packed rows, and bf16
    autocast: the training output is the eval output of a copy whose U are the dropped matrices."""
    if bf16 and cell == "lstm" and not lstm_runs_in_bf16():
        pytest.skip("no bf16 LSTM kernel on this CPU (oneDNN)")
    torch.manual_seed(0)
    net = RecurrentBackbone(3, cell=cell, hidden_sizes=[4, 4], bidirectional=True, weight_drop=0.3).train()
    x, lengths = torch.randn(3, 5, 3), torch.tensor([5, 2, 4]) if packed else None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        torch.manual_seed(2)
        out, final = net(x, lengths)
        torch.manual_seed(2)
        params = dropped_weights(net.blocks[0], 0.3, True)
        fixed = copy.deepcopy(net).eval()
        with torch.no_grad():
            for name, value in params.items():
                fixed.blocks[0].get_parameter(name).copy_(value)
        expected, _ = fixed(x, lengths)
    assert len([n for n in params if n.startswith("weight_hh")]) == 4
    assert torch.allclose(out.float(), expected.float(), atol=1e-2 if bf16 else 1e-6)
    assert torch.isfinite(out).all() and (not packed or (out[1, 2:] == 0).all())
    out.float().sum().backward()
    assert net.blocks[0].weight_hh_l1_reverse.grad.dtype == torch.float32


# -- embedding_dropout ---------------------------------------------------------------------------
def test_embedding_dropout_drops_whole_rows_for_every_occurrence():
    encoder = InputEncoder("embedding", 20, 6, "tokens", embedding_dropout=0.5).train()
    ids = torch.tensor([[1, 2, 3, 1, 2, 3, 4], [4, 4, 1, 5, 6, 7, 8]])
    torch.manual_seed(3)
    out = encoder(ids)
    torch.manual_seed(3)
    rows = F.dropout(torch.ones(20, 1), 0.5, True)  # the mask over the vocabulary, drawn once
    expected = encoder.embedding.weight[ids] * rows[ids]
    assert torch.allclose(out, expected)
    dropped = {int(t) for t in ids.flatten() if rows[t] == 0}
    assert dropped and len(dropped) < len(set(ids.flatten().tolist()))  # some tokens dropped, not all
    for token in ids.flatten().tolist():  # every occurrence alike: all zeros, or the row times 1/(1-p)
        positions = out[ids == token]
        target = torch.zeros(6) if token in dropped else encoder.embedding.weight[token] * 2
        assert torch.allclose(positions, target.expand_as(positions))
    encoder.eval()
    assert torch.equal(encoder(ids), encoder.embedding(ids))


def test_embedding_dropout_needs_an_embedding():
    with pytest.raises(ConfigError, match="embedding_dropout=0.1 is invalid: .*encoder=embedding"):
        SequenceModel(5, 5, many_to_one=False, encoder="onehot", embedding_dropout=0.1)


# -- AR / TAR ------------------------------------------------------------------------------------
def test_ar_and_tar_are_masked_means_over_the_valid_steps():
    torch.manual_seed(0)
    h, lengths = torch.randn(3, 5, 4), torch.tensor([5, 3, 1])
    h[1, 3:] = 100.0  # padding must not count
    h[2, 1:] = -100.0
    squares = sum(float(h[b, t, f] ** 2) for b in range(3) for t in range(int(lengths[b])) for f in range(4))
    assert activation_regularisation(h, lengths).item() == pytest.approx(squares / (9 * 4), rel=1e-5)
    diffs = sum(float((h[b, t, f] - h[b, t - 1, f]) ** 2) for b in range(3) for t in range(1, int(lengths[b])) for f in range(4))
    assert temporal_activation_regularisation(h, lengths).item() == pytest.approx(diffs / (6 * 4), rel=1e-5)
    assert temporal_activation_regularisation(h[:, :1], torch.ones(3, dtype=torch.long)).item() == 0.0


def test_the_model_penalises_dropped_outputs_with_ar_and_undropped_ones_with_tar():
    net = SequenceModel(6, 6, many_to_one=False, hidden_size=5, dropout=0.5, ar=2.0, tar=3.0).train()
    x, lengths = torch.randint(1, 6, (2, 7)), torch.tensor([7, 4])
    torch.manual_seed(4)
    penalties = net(x, lengths).penalties
    torch.manual_seed(4)
    out = net.backbone(net.encoder(x), lengths)
    dropped, undropped = out.outputs, out.undropped
    assert not torch.equal(dropped, undropped)
    assert torch.allclose(penalties["ar"], 2.0 * activation_regularisation(dropped, lengths))
    assert torch.allclose(penalties["tar"], 3.0 * temporal_activation_regularisation(undropped, lengths))
    assert net.eval()(x, lengths).penalties == {}
    logits, state = net(x, lengths)  # unpacks as the pair, as every caller reads it
    assert logits.shape == (2, 7, 6) and len(state) == 1


def test_the_training_loss_adds_the_penalties_and_validation_does_not():
    model = LanguageModel(input_size=6, num_classes=6, hidden_size=4, optimizer=ADAM, ar=2.0, tar=1.0).train()
    batch = {"inputs": torch.tensor([[1, 2, 3, 4]]), "lengths": torch.tensor([4]), "targets": torch.tensor([[2, 3, 4, 5]])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        loss = model._step(batch, "train")
    out = model.net(batch["inputs"], batch["lengths"])  # no dropout: deterministic
    logits, penalties = out.logits, out.penalties
    cross_entropy = F.cross_entropy(logits[0], batch["targets"][0])
    assert set(penalties) == {"ar", "tar"}
    assert torch.allclose(loss, cross_entropy + penalties["ar"] + penalties["tar"])
    assert torch.allclose(model._step(batch, "val"), cross_entropy)
    with pytest.raises(ConfigError, match="must be a number >= 0"):
        SequenceModel(5, 5, many_to_one=False, ar=-1.0)


# -- NT-ASGD -------------------------------------------------------------------------------------
def test_the_switch_follows_merity_s_rule():
    # Merity: t > nonmono and val_loss > min(best_val_loss[:-nonmono])
    history = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7]
    assert should_switch(history, 3.1, 3)  # worse than min(5, 4, 3)
    assert not should_switch(history, 2.9, 3)
    assert not should_switch(history[:3], 9.0, 3)  # too few evaluations
    assert not should_switch(history[:4], 4.5, 3)  # only history[:1] = [5.0] is old enough
    assert should_switch(history[:4], 5.5, 3)


def test_asgd_with_lambd_0_is_sgd_then_averages_from_t0():
    torch.manual_seed(0)
    targets = torch.randn(8, 3)
    w_sgd = torch.zeros(3, requires_grad=True)
    w_asgd = torch.zeros(3, requires_grad=True)
    sgd = torch.optim.SGD([w_sgd], lr=0.1)
    asgd = torch.optim.ASGD([w_asgd], lr=0.1, lambd=0.0, t0=1e6)
    iterates = []
    for step in range(8):
        if step == 3:
            asgd.param_groups[0]["t0"] = 3.0  # what the callback does after 3 steps
        for w, opt in ((w_sgd, sgd), (w_asgd, asgd)):
            opt.zero_grad()
            (w - targets[step]).square().sum().backward()
            opt.step()
        assert torch.equal(w_sgd, w_asgd)  # plain SGD throughout
        iterates.append(w_sgd.detach().clone())
    # Merity's fresh ASGD(t0=0) averages from its second iterate on: steps 5..8 here.
    assert torch.allclose(asgd.state[w_asgd]["ax"], torch.stack(iterates[4:]).mean(0), atol=1e-6)


def _asgd_fixture():
    model = LanguageModel(input_size=6, num_classes=6, hidden_size=4, optimizer=ADAM, encoder="embedding",
                          embedding_dim=4, tie_weights=True)
    optimizer = torch.optim.ASGD(model.parameters(), lr=0.5, lambd=0.0, t0=0.0)  # averaging from the start
    for _ in range(4):
        optimizer.zero_grad()
        logits, _ = model(torch.tensor([[1, 2, 3, 4]]))
        logits.square().mean().backward()
        optimizer.step()
    trainer = SimpleNamespace(optimizers=[optimizer], sanity_checking=False, global_step=4, callback_metrics={},
                              state=SimpleNamespace(fn=TrainerFn.FITTING))
    return model, optimizer, trainer


def test_validation_and_checkpoints_use_the_average_and_resume_trains_on_the_raw_weights():
    model, optimizer, trainer = _asgd_fixture()
    callback = NTASGD(nonmono=2)
    callback.switched_at = 0
    raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
    average = {k: optimizer.state[p]["ax"].clone() for k, p in model.state_dict(keep_vars=True).items()}
    assert any(not torch.equal(raw[k], average[k]) for k in raw)

    callback.on_validation_start(trainer, model)
    assert all(torch.equal(v, average[k]) for k, v in model.state_dict().items())
    callback.on_validation_end(trainer, model)
    assert all(torch.equal(v, raw[k]) for k, v in model.state_dict().items())

    checkpoint = {"state_dict": {k: v.clone() for k, v in model.state_dict().items()}}
    callback.on_save_checkpoint(trainer, model, checkpoint)
    assert all(torch.equal(checkpoint["state_dict"][k], average[k]) for k in raw)  # tied names both
    assert all(torch.equal(checkpoint[RAW_KEY][k], raw[k]) for k in raw)
    model.load_state_dict(checkpoint["state_dict"])  # what Lightning loads
    callback.on_load_checkpoint(trainer, model, checkpoint)  # fitting: back to the SGD iterate
    assert all(torch.equal(v, raw[k]) for k, v in model.state_dict().items())

    restored = NTASGD(nonmono=2)
    callback.history = [3.0, 2.0]
    restored.load_state_dict(callback.state_dict())
    assert restored.history == [3.0, 2.0] and restored.switched_at == 0


def test_the_callback_sets_t0_at_the_switch():
    model, optimizer, trainer = _asgd_fixture()
    optimizer.param_groups[0]["t0"] = 1e6
    callback = NTASGD(nonmono=1)
    for step, value in ((10, 3.0), (20, 2.0), (30, 3.5)):  # 3.5 > min([3.0]): switch at the third
        trainer.global_step, trainer.callback_metrics = step, {"val/loss": torch.tensor(value)}
        callback.on_validation_end(trainer, model)
        assert (callback.switched_at is not None) == (step == 30)
    assert optimizer.param_groups[0]["t0"] == 30.0 and callback.history == [3.0, 2.0, 3.5]


# -- the preset and a run with every key on ------------------------------------------------------
def test_the_preset_has_at_most_3m_parameters_as_its_header_says(tmp_path):
    cfg = compose_config(["experiment=tweets_awd"], tmp_path)
    network = {k: v for k, v in cfg.model.items() if k not in ("_target_", "_recursive_", "optimizer", "scheduler")}
    net = SequenceModel(93, 93, many_to_one=False, input_kind="tokens", **network)  # the tweets' 93 characters
    count = sum(p.numel() for p in net.parameters())
    stated = re.search(r"([\d,]+) parameters", (CONF / "experiment" / "tweets_awd.yaml").read_text()).group(1)
    assert count == int(stated.replace(",", "")) <= 3_000_000
    assert net.head.proj.weight is net.encoder.embedding.weight


def _awd_run(out, data_dir, *extra):
    """Every AWD key on a tiny stream LM; optimizer.lr=30 makes the seeded run's validation loss
    bounce, so NT-ASGD switches after the third epoch (step 9)."""
    cfg = compose_config([
        "data=tweets", "data.batching=stream", "data.num_steps=12", "data.batch_size=4", "model=lm",
        "model.hidden_sizes=[8,8,6]", "model.encoder=embedding", "model.embedding_dim=6", "model.tie_weights=true",
        "model.weight_drop=0.5", "model.embedding_dropout=0.1", "model.dropout=0.2", "model.ar=2.0", "model.tar=1.0",
        "optimizer=asgd", "optimizer.lr=30", "callbacks=nt_asgd", "callbacks.nt_asgd.nonmono=1",
        "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2",
        "trainer.log_every_n_steps=1", "logger=csv", *extra,
    ], out)
    cfg.paths.data_dir = str(data_dir)
    run(cfg)
    return json.loads((out / "metrics.json").read_text())


def test_a_tiny_run_with_every_awd_key_on_switches_averages_and_resumes(tmp_path):
    data_dir = write_all(tmp_path / "data")
    whole = _awd_run(tmp_path / "whole", data_dir, "trainer.max_epochs=5")
    assert all(torch.isfinite(torch.tensor(v)) for k, v in whole.items() if isinstance(v, float))
    header = (tmp_path / "whole" / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/ar", "train/tar"} <= set(header)
    last = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)
    state = last["callbacks"]["NTASGD"]
    assert len(state["history"]) == 4 and state["switched_at"] == 9  # last.ckpt: the best, epoch 4
    assert last["optimizer_states"][0]["param_groups"][0]["t0"] == 9.0
    averages = [s["ax"] for s in last["optimizer_states"][0]["state"].values()]
    saved = [last["state_dict"][k] for k in last[RAW_KEY]]
    assert any(torch.equal(a, s) for a in averages for s in saved)  # the average is what was saved
    assert not any(torch.equal(last[RAW_KEY][k], last["state_dict"][k]) for k in last[RAW_KEY])

    # Stopped an epoch after the switch (average and raw weights differ) and continued from its
    # last checkpoint: the same run.
    _awd_run(tmp_path / "first", data_dir, "trainer.max_epochs=4", "test=false")
    continued = _awd_run(tmp_path / "continued", data_dir, "trainer.max_epochs=5", "test=false",
                         f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}")
    for key in ("last_epoch/val/loss", "train/loss"):
        assert continued[key] == pytest.approx(whole[key], rel=1e-5), key


def test_the_backbone_pair_and_its_undropped_outputs_agree_without_dropout():
    """``.undropped`` is the outputs before dropout: equal to the outputs when dropout is off."""
    net = SequenceModel(6, 6, many_to_one=False, hidden_size=5, dropout=0.0).train()
    x, lengths = torch.randint(1, 6, (2, 7)), torch.tensor([7, 4])
    out = net.backbone(net.encoder(x), lengths)
    outputs, state = out
    assert torch.equal(outputs, out.undropped) and outputs is out.outputs and state is out.state
    assert net(x, lengths).penalties == {}  # no coefficient set: no term, in training too
