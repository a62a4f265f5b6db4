"""Training recipes: schedules, clipping (automatic and manual optimization), gradient-norm
logging, activations on the TorchScript cell, initialisation, dropout, weight decay."""

import csv
import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnexp.callbacks.gradient_norm import GradientNorm
from rnnexp.data import ToyWordsDataModule
from rnnexp.errors import ConfigError
from rnnexp.models import RecurrentBackbone, SequenceClassifier
from rnnexp.models.nets.scripted_rnn import ScriptedRNN
from rnnexp.models.nets.variational_dropout import VariationalMasks
from rnnexp.models.schedules import exponential_decay
from tests.helpers import compose_config, lr_trace
from tests.helpers.tensors import noisy_padding
from tests.helpers.trainer import small_trainer

ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


def _trainer(tmp_path, steps, callbacks=(), **kwargs):
    return small_trainer(tmp_path, max_steps=steps, enable_checkpointing=False, num_sanity_val_steps=0,
                         limit_val_batches=0, callbacks=list(callbacks), **kwargs)


def _classifier(dm, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("optimizer", ADAM)
    return SequenceClassifier(cell="rnn", hidden_size=8, **dm.spec().model_kwargs(), **kwargs)


# -- schedules ---------------------------------------------------------------------------------

def _tf_exponential_decay(lr, step, decay_steps, decay_rate, staircase):
    exponent = step // decay_steps if staircase else step / decay_steps
    return lr * decay_rate ** exponent


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_schedule_follows_tensorflows_formula(tmp_path, staircase):
    cfg = compose_config(["schedule=exponential", "schedule.scheduler.decay_steps=3",
                          "schedule.scheduler.decay_rate=0.5", f"schedule.scheduler.staircase={staircase}"], tmp_path)
    assert cfg.schedule.interval == "step" and cfg.schedule.frequency == 1
    seen = lr_trace(cfg.schedule, 0.2, 10)
    assert seen == pytest.approx([_tf_exponential_decay(0.2, s, 3, 0.5, staircase) for s in range(10)])
    assert (seen[1] == seen[0]) == staircase


def test_exponential_schedule_steps_per_optimizer_step_in_a_trainer_run(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", repeat=4)  # 4 batches per epoch
    sched = {"scheduler": {"_target_": "rnnexp.models.schedules.exponential_decay", "_partial_": True,
                           "decay_steps": 3, "decay_rate": 0.5, "staircase": True}, "interval": "step", "frequency": 1}
    model = _classifier(dm, scheduler=sched)
    trainer = _trainer(tmp_path, 7)
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 7
    # After 7 optimizer steps the LR for step 7 is lr * 0.5 ** floor(7 / 3).
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01 * 0.5**2)


def test_exponential_gamma_shorthand_is_torchs_exponential_lr():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = exponential_decay(opt, gamma=0.9)
    for _ in range(4):
        opt.step()
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.9**4)


def test_cosine_schedule_warms_up_linearly_then_follows_a_cosine(tmp_path):
    cfg = compose_config(["schedule=cosine", "schedule.scheduler.total_steps=10", "schedule.scheduler.warmup_steps=4",
                          "schedule.scheduler.warmup_start_factor=0.25", "schedule.scheduler.min_lr=0.1"], tmp_path)
    assert cfg.schedule.interval == "step"
    seen = lr_trace(cfg.schedule, 1.0, 11)
    assert seen[:5] == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0])
    cosine = [0.1 + 0.9 * (1 + math.cos(math.pi * k / 6)) / 2 for k in range(7)]
    assert seen[4:] == pytest.approx(cosine)


def test_cosine_total_steps_null_means_the_whole_run(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", repeat=4)
    sched = {"scheduler": {"_target_": "rnnexp.models.schedules.warmup_cosine", "_partial_": True,
                           "total_steps": None, "warmup_steps": 2}, "interval": "step", "frequency": 1}
    model = _classifier(dm, scheduler=sched)
    trainer = _trainer(tmp_path, -1, max_epochs=2)
    trainer.fit(model, datamodule=dm)
    assert trainer.lr_scheduler_configs[0].scheduler._schedulers[1].T_max == 8 - 2
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name,interval", [("none", "epoch"), ("step", "epoch"), ("exponential", "step"),
                                           ("cosine", "step"), ("plateau", "epoch")])
def test_every_schedule_says_how_often_it_steps(tmp_path, name, interval):
    assert compose_config([f"schedule={name}"], tmp_path).schedule.interval == interval


@pytest.mark.parametrize("override,key", [("decay_steps=0", "decay_steps"), ("decay_rate=-1", "decay_rate")])
def test_bad_schedule_values_are_config_errors(override, key):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    name, value = override.split("=")
    with pytest.raises(ConfigError, match=key):
        exponential_decay(opt, **{name: float(value) if "." in value or "-" in value else int(value)})


# -- clipping and the gradient norm ------------------------------------------------------------

class RecordingSGD(torch.optim.SGD):
    """Keeps a copy of the gradients it steps with, i.e. after Lightning has clipped them."""

    seen: list = []

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        RecordingSGD.seen.append([p.grad.clone() for g in self.param_groups for p in g["params"] if p.grad is not None])
        super().step()
        return loss


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_trainer_clips_by_norm_and_by_value_and_logs_the_norm_before_clipping(tmp_path, algorithm):
    dm = ToyWordsDataModule("i_like_dog", repeat=4)
    RecordingSGD.seen = []
    model = _classifier(dm, optimizer={"_target_": "tests.test_recipes.RecordingSGD", "_partial_": True, "lr": 0.5})
    clip = 1e-3
    logger = pl.loggers.CSVLogger(tmp_path, name="csv")
    trainer = _trainer(tmp_path, 4, [GradientNorm()], gradient_clip_val=clip, gradient_clip_algorithm=algorithm,
                       logger=logger, log_every_n_steps=1)
    trainer.fit(model, datamodule=dm)
    assert len(RecordingSGD.seen) == 4
    for grads in RecordingSGD.seen:
        if algorithm == "norm":
            assert float(torch.nn.utils.get_total_norm(grads)) <= clip * (1 + 1e-5)
        else:
            assert max(float(g.abs().max()) for g in grads) == pytest.approx(clip)  # engaged, and never above
    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    before = [float(r["train/grad_norm"]) for r in rows if r.get("train/grad_norm")]
    assert len(before) == 4 and min(before) > 100 * clip  # the logged norm is the one before clipping


def test_grad_norm_is_logged_only_on_logging_steps(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", repeat=4)
    logger = pl.loggers.CSVLogger(tmp_path, name="csv")
    trainer = _trainer(tmp_path, 8, [GradientNorm()], logger=logger, log_every_n_steps=4)
    trainer.fit(_classifier(dm), datamodule=dm)
    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    assert [int(r["step"]) for r in rows if r.get("train/grad_norm")] == [3, 7]


class ManualClassifier(SequenceClassifier):
    """A manual-optimization module written with SequenceTask.manual_step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False
        self.clipped = []

    def training_step(self, batch, batch_idx):
        logits, _ = self(batch["inputs"], batch["lengths"])
        loss = torch.nn.functional.cross_entropy(logits, batch["targets"])
        self.manual_step(loss)

    def clip_gradients(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        super().clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        self.clipped.append([p.grad.clone() for p in self.parameters() if p.grad is not None])


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_manual_step_clips_and_steps_step_interval_schedulers(tmp_path, algorithm):
    dm = ToyWordsDataModule("i_like_dog", repeat=4)
    sched = {"scheduler": {"_target_": "rnnexp.models.schedules.exponential_decay", "_partial_": True,
                           "decay_steps": 1, "decay_rate": 0.5}, "interval": "step", "frequency": 2}
    torch.manual_seed(0)
    model = ManualClassifier(cell="rnn", hidden_size=8, optimizer={**ADAM, "lr": 0.5}, scheduler=sched,
                             gradient_clip_val=1e-3, gradient_clip_algorithm=algorithm, **dm.spec().model_kwargs())
    before = [p.detach().clone() for p in model.parameters()]
    trainer = _trainer(tmp_path, 6)  # Trainer(gradient_clip_val=...) would raise under manual optimization
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 6 and len(model.clipped) == 6
    for grads in model.clipped:
        if algorithm == "norm":
            assert float(torch.nn.utils.get_total_norm(grads)) <= 1e-3 * (1 + 1e-5)
        else:
            assert max(float(g.abs().max()) for g in grads) == pytest.approx(1e-3)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # it did step
    # frequency 2: the scheduler stepped after optimizer steps 2, 4 and 6.
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.5 * 0.5**3)


def test_manual_step_logs_the_norm_before_its_clipping(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", repeat=4)
    torch.manual_seed(0)
    model = ManualClassifier(cell="rnn", hidden_size=8, optimizer={**ADAM, "lr": 0.5}, gradient_clip_val=1e-4,
                             **dm.spec().model_kwargs())
    logger = pl.loggers.CSVLogger(tmp_path, name="csv")
    trainer = _trainer(tmp_path, 3, [GradientNorm()], logger=logger, log_every_n_steps=1)
    trainer.fit(model, datamodule=dm)
    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    logged = [float(r["train/grad_norm"]) for r in rows if r.get("train/grad_norm")]
    assert len(logged) == 3 and min(logged) > 1e-2


def test_bad_clip_settings_are_config_errors():
    dm = ToyWordsDataModule("i_like_dog")
    with pytest.raises(ConfigError, match="gradient_clip_algorithm"):
        _classifier(dm, gradient_clip_algorithm="global")
    with pytest.raises(ConfigError, match="gradient_clip_val"):
        _classifier(dm, gradient_clip_val=-1.0)


# -- activations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_scripted_cell_matches_nn_rnn_with_the_same_weights(bidirectional, activation):
    torch.manual_seed(0)
    ref = nn.RNN(3, 5, num_layers=2, batch_first=True, bidirectional=bidirectional, nonlinearity=activation)
    mine = ScriptedRNN(3, 5, num_layers=2, bidirectional=bidirectional, nonlinearity=activation)
    mine.load_state_dict(ref.state_dict())  # same parameter names and shapes
    x, lengths = torch.randn(4, 6, 3), torch.tensor([6, 2, 4, 1])
    h0 = torch.randn(2 * (2 if bidirectional else 1), 4, 5)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    (a, ha), (b, hb) = ref(packed, h0), mine(packed, h0)
    assert torch.allclose(pad_packed_sequence(a, batch_first=True)[0], pad_packed_sequence(b, batch_first=True)[0], atol=1e-5)
    assert torch.allclose(ha, hb, atol=1e-5)
    (a, ha), (b, hb) = ref(x), mine(x)
    assert torch.allclose(a, b, atol=1e-5) and torch.allclose(ha, hb, atol=1e-5)
    # Gradients agree too: the scripted loop is differentiated by autograd like the kernel.
    ga = torch.autograd.grad(a.square().sum(), ref.weight_hh_l0)[0]
    gb = torch.autograd.grad(b.square().sum(), mine.weight_hh_l0)[0]
    assert torch.allclose(ga, gb, atol=1e-4)


@pytest.mark.parametrize("activation,function", [
    ("elu", torch.nn.functional.elu), ("softplus", torch.nn.functional.softplus),
    ("softsign", torch.nn.functional.softsign), ("relu6", torch.nn.functional.relu6), ("sigmoid", torch.sigmoid)])
def test_custom_activation_is_the_recurrence_nonlinearity(activation, function):
    torch.manual_seed(0)
    net = RecurrentBackbone(3, cell="rnn", hidden_size=4, nonlinearity=activation)
    assert isinstance(net.blocks[0], ScriptedRNN)
    x = torch.randn(2, 3, 3)
    out, final = net(x)
    w = net.blocks[0]
    h = torch.zeros(2, 4)
    for t in range(3):
        h = function(x[:, t] @ w.weight_ih_l0.T + w.bias_ih_l0 + h @ w.weight_hh_l0.T + w.bias_hh_l0)
        assert torch.allclose(out[:, t], h, atol=1e-6)
    assert torch.allclose(final[0][0], h, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_custom_activation_keeps_the_padding_contract(bidirectional):
    torch.manual_seed(0)
    net = RecurrentBackbone(3, cell="rnn", hidden_sizes=[4, 4, 6], nonlinearity="elu", bidirectional=bidirectional).eval()
    lengths = torch.tensor([5, 2, 4, 1])
    x = torch.randn(4, 5, 3)
    noisy = noisy_padding(x, lengths)
    out, final = net(x, lengths)
    out_noisy, final_noisy = net(noisy, lengths)
    assert torch.allclose(out, out_noisy) and all(torch.allclose(a, b) for a, b in zip(final, final_noisy))
    for b, n in enumerate(lengths.tolist()):
        alone_out, alone_final = net(x[b : b + 1, :n])
        assert torch.allclose(out[b, :n], alone_out[0], atol=1e-6) and torch.all(out[b, n:] == 0)
        assert all(torch.allclose(f[:, b : b + 1], a, atol=1e-6) for f, a in zip(final, alone_final))


def test_fused_activations_stay_on_nn_rnn_and_bad_ones_are_config_errors():
    assert type(RecurrentBackbone(3, cell="rnn", nonlinearity="relu").blocks[0]) is nn.RNN
    with pytest.raises(ConfigError, match="nonlinearity"):
        RecurrentBackbone(3, cell="rnn", nonlinearity="swish")
    with pytest.raises(ConfigError, match="nonlinearity"):
        RecurrentBackbone(3, cell="gru", nonlinearity="elu")


def test_custom_activation_trains_end_to_end(tmp_path):
    dm = ToyWordsDataModule("i_like_dog", repeat=10)
    model = _classifier(dm, nonlinearity="softsign")
    before = model.net.backbone.blocks[0].weight_hh_l0.detach().clone()
    _trainer(tmp_path, 5).fit(model, datamodule=dm)
    assert not torch.equal(before, model.net.backbone.blocks[0].weight_hh_l0)


# -- initialisation ------------------------------------------------------------------------------

def test_init_and_forget_bias_reach_the_backbone_from_the_config(tmp_path):
    cfg = compose_config(["model.init=orthogonal", "model.forget_bias=1.0", "model.hidden_size=6"], tmp_path)
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, **dm.spec().model_kwargs())
    lstm = model.net.backbone.blocks[0]
    for gate in lstm.weight_hh_l0.split(6):
        assert torch.allclose(gate @ gate.T, torch.eye(6), atol=1e-5)
    assert torch.all(lstm.bias_ih_l0[6:12] + lstm.bias_hh_l0[6:12] == 1.0)


def test_identity_init_on_the_scripted_cell():
    net = RecurrentBackbone(3, cell="rnn", hidden_size=4, nonlinearity="relu6", init="identity")
    block = net.blocks[0]
    assert torch.equal(block.weight_hh_l0, torch.eye(4)) and not block.bias_ih_l0.any()


# -- dropout and weight decay ---------------------------------------------------------------------

def test_input_dropout_acts_only_in_training():
    torch.manual_seed(0)
    net = RecurrentBackbone(8, cell="gru", hidden_size=4, input_dropout=0.5)
    x = torch.randn(3, 5, 8)
    seen = []
    net.input_dropout.register_forward_hook(lambda m, i, o: seen.append(o))
    net.train()(x)
    assert (seen[-1] == 0).float().mean() > 0.2
    net.eval()(x)
    assert torch.equal(seen[-1], x)


@pytest.mark.parametrize("packed", [False, True])
def test_variational_dropout_reuses_one_mask_per_sequence_at_every_step(packed):
    torch.manual_seed(0)
    net = RecurrentBackbone(6, cell="lstm", hidden_sizes=[16, 16], dropout=0.5, input_dropout=0.5,
                            variational_dropout=True)
    assert net.runs == [1, 1]  # layers run apart so the tensors between them can be masked
    inputs = []
    net.blocks[0].register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    x = torch.ones(3, 7, 6)
    lengths = torch.tensor([7, 4, 7]) if packed else None
    out, _ = net.train()(x, lengths)
    first = inputs[-1]
    if packed:
        first, _ = pad_packed_sequence(first, batch_first=True)
    for b, n in enumerate([7, 4, 7] if packed else [7, 7, 7]):
        dropped_in = first[b, :n] == 0
        assert torch.all(dropped_in == dropped_in[0]), "one input mask per sequence"
        dropped_out = out[b, :n] == 0
        assert torch.all(dropped_out == dropped_out[0]), "one output mask per sequence"
        assert 0 < dropped_out[0].float().mean() < 1
    assert not torch.equal(out[0] == 0, out[2] == 0)  # masks differ between sequences
    eval_out, _ = net.eval()(x, lengths)
    assert not (eval_out == 0).all(dim=1).any()


@pytest.mark.parametrize("lengths", [[6, 2, 5, 1, 6], [6, 6, 5, 2, 1]])  # unsorted, and sorted (no sorted_indices)
def test_a_variational_mask_on_packed_data_is_the_padded_batch_mask_row_for_row(lengths):
    torch.manual_seed(0)
    masks = VariationalMasks(len(lengths), training=True)
    padded = torch.randn(len(lengths), 6, 8)
    sorted_ = lengths == sorted(lengths, reverse=True)
    packed = pack_padded_sequence(padded, torch.tensor(lengths), batch_first=True, enforce_sorted=sorted_)
    assert (packed.sorted_indices is None) == sorted_
    on_padded = masks.apply(padded, 0, 0.5)  # draws the mask
    on_packed, _ = pad_packed_sequence(masks.apply(packed, 0, 0.5), batch_first=True, total_length=6)
    for row, n in enumerate(lengths):
        assert torch.equal(on_packed[row, :n], on_padded[row, :n])
    assert (on_padded == 0).any() and masks.apply(packed, 1, 0.0) is packed


def test_standard_dropout_draws_a_new_mask_at_every_step():
    torch.manual_seed(0)
    net = RecurrentBackbone(6, cell="lstm", hidden_size=16, dropout=0.5).train()
    out, _ = net(torch.ones(2, 7, 6))
    assert not torch.all((out[0] == 0) == (out[0, :1] == 0))


def test_dropout_keys_compose_and_reach_the_backbone(tmp_path):
    cfg = compose_config(["model.input_dropout=0.2", "model.variational_dropout=true", "model.dropout=0.3",
                          "model.num_layers=2"], tmp_path)
    dm = instantiate(cfg.data)
    backbone = instantiate(cfg.model, **dm.spec().model_kwargs()).net.backbone
    assert backbone.variational and backbone.input_dropout.p == 0.2 and backbone.runs == [1, 1]
    with pytest.raises(ConfigError, match="input_dropout"):
        RecurrentBackbone(3, input_dropout=1.0)


def test_weight_decay_reaches_the_optimizer(tmp_path):
    cfg = compose_config(["optimizer=sgd", "optimizer.weight_decay=0.25", "trainer.max_epochs=1"], tmp_path)
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, **dm.spec().model_kwargs())
    trainer = _trainer(tmp_path, 1)
    trainer.fit(model, datamodule=dm)
    assert trainer.optimizers[0].param_groups[0]["weight_decay"] == 0.25
