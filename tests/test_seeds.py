"""One test per row of docs/seeds.md: each construct the seeds use, and the rnnexp config
or object that reproduces it, checked against the construct's own definition."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from rnnexp.data import ToyWordsDataModule
from rnnexp.models import IGNORE_INDEX, ManyToManyHead, RecurrentBackbone, SequenceTagger, sequence_loss
from rnnexp.models.nets.heads import ManyToOneHead
from rnnexp.sampling import next_token_distribution
from tests.helpers import compose_config, lr_trace


def _backbone(cell="rnn", **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("hidden_size", 4)
    return RecurrentBackbone(3, cell=cell, **kwargs).eval()


def test_BasicRNNCell_is_cell_rnn_h_t_equals_tanh_of_the_affine_map(tmp_path):
    assert compose_config(["cell=rnn"], tmp_path).model.nonlinearity == "tanh"
    net = _backbone("rnn")
    rnn, x = net.blocks[0], torch.randn(2, 5, 3)
    out, (h_n,) = net(x)
    h = torch.zeros(2, 4)
    for t in range(5):  # BasicRNNCell: output = new_state = tanh(W [x, h] + b)
        h = torch.tanh(x[:, t] @ rnn.weight_ih_l0.T + h @ rnn.weight_hh_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0)
        assert torch.allclose(out[:, t], h, atol=1e-6)
    assert torch.allclose(h_n[0], h, atol=1e-6)  # output and state are the same tensor in BasicRNNCell


def test_BasicLSTMCell_state_is_tuple_is_cell_lstm_with_forget_bias_1():
    net = _backbone("lstm", forget_bias=1.0)
    _, (state,) = net(torch.randn(2, 5, 3))
    assert isinstance(state, tuple) and [s.shape for s in state] == [(1, 2, 4), (1, 2, 4)]  # LSTMStateTuple(c, h)
    lstm = net.blocks[0]
    assert torch.all(lstm.bias_ih_l0[4:8] + lstm.bias_hh_l0[4:8] == 1.0)


def test_zero_state_is_the_default_initial_state():
    net = _backbone("lstm")
    x = torch.randn(2, 5, 3)
    zeros = [(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))]  # cell.zero_state(batch_size, tf.float32)
    assert torch.equal(net(x)[0], net(x, state=zeros)[0])


def test_dynamic_rnn_sequence_length_and_time_major():
    net = _backbone("gru")
    x, lengths = torch.randn(3, 4, 3), torch.tensor([1, 3, 2])  # sequence_length=[1, 3, 2]
    out, (h,) = net(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[b, n:] == 0)  # dynamic_rnn zeroes outputs past the length
        assert torch.allclose(h[0, b], out[b, n - 1])  # and copies the state through
    # time_major=True: data laid out [T, B, F]. rnnexp is batch-first, so the recipe is to transpose
    # in and out; the reference is torch's own time-major GRU (batch_first=False) run on each row's
    # valid steps, with the backbone's weights.
    gru = nn.GRU(3, 4)
    gru.load_state_dict(net.blocks[0].state_dict())
    x_tm = torch.randn(4, 3, 3)  # [T, B, F]
    out_tm = net(x_tm.transpose(0, 1), lengths)[0].transpose(0, 1)  # [T, B, H]
    assert out_tm.shape == (4, 3, 4)
    for b, n in enumerate(lengths.tolist()):
        expected, _ = gru(x_tm[:n, b : b + 1])
        assert torch.allclose(out_tm[:n, b], expected[:, 0], atol=1e-6)
        assert torch.all(out_tm[n:, b] == 0)


def test_static_rnn_equals_dynamic_rnn_on_full_length_sequences():
    net = _backbone("lstm")
    lstm, x = net.blocks[0], torch.randn(2, 5, 3)
    cell = nn.LSTMCell(3, 4)  # static_rnn: the cell called once per step in a Python loop
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in lstm.state_dict().items()})
    h = c = torch.zeros(2, 4)
    outs = []
    for t in range(5):
        h, c = cell(x[:, t], (h, c))
        outs.append(h)
    assert torch.allclose(net(x)[0], torch.stack(outs, 1), atol=1e-6)


def test_MultiRNNCell_is_num_layers_or_hidden_sizes(tmp_path):
    cfg = compose_config(["model.hidden_sizes=[128,256]", "cell=gru"], tmp_path)  # CS20: [GRUCell(s) for s in (128, 256)]
    model = instantiate(cfg.model, **instantiate(cfg.data).spec().model_kwargs())
    assert model.net.backbone.hidden_sizes == [128, 256]
    net = _backbone("lstm", num_layers=2)
    _, final = net(torch.randn(2, 5, 3))
    assert len(final) == 2 and all(isinstance(s, tuple) for s in final)  # one state tuple per layer


def test_bidirectional_dynamic_rnn_is_bidirectional_true():
    net = _backbone("gru", bidirectional=True)
    gru = net.blocks[0]
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    out, _ = net(x, lengths)
    fw = nn.GRU(3, 4, batch_first=True)
    bw = nn.GRU(3, 4, batch_first=True)
    fw.load_state_dict({k: v for k, v in gru.state_dict().items() if not k.endswith("_reverse")})
    bw.load_state_dict({k.replace("_reverse", ""): v for k, v in gru.state_dict().items() if k.endswith("_reverse")})
    for b, n in enumerate(lengths.tolist()):  # the backward cell reads each row's valid part reversed
        row = x[b : b + 1, :n]
        assert torch.allclose(out[b, :n, :4], fw(row)[0][0], atol=1e-6)
        assert torch.allclose(out[b, :n, 4:], bw(row.flip(1))[0][0].flip(0), atol=1e-6)


def test_sequence_loss_weights():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    weights = torch.tensor([[1.0, 1.0, 0.5, 0.0], [1.0, 2.0, 1.0, 1.0]])
    per_step = F.cross_entropy(logits.reshape(-1, 5), targets.reshape(-1), reduction="none").view(2, 4)
    # tf.contrib.seq2seq.sequence_loss(average_across_timesteps=True, average_across_batch=True)
    assert torch.allclose(sequence_loss(logits, targets, weights), (per_step * weights).sum() / weights.sum())


def test_boolean_mask_loss_is_ignore_index_padding():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    full_loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    expected = full_loss[mask].mean()  # tf.reduce_mean(tf.boolean_mask(full_loss, mask))
    assert torch.allclose(sequence_loss(logits, targets.masked_fill(~mask, IGNORE_INDEX)), expected)


def test_clip_by_global_norm_is_the_default_trainer_clipping(tmp_path):
    cfg = compose_config([], tmp_path)
    assert cfg.trainer.gradient_clip_val == 1.0 and cfg.trainer.gradient_clip_algorithm == "norm"
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2))]
    grads = [torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 12.0])]  # global norm 13
    for p, g in zip(params, grads):
        p.grad = g.clone()
    trainer.precision_plugin.clip_gradients(torch.optim.SGD(params, lr=1.0), 1.0, "norm")
    for p, g in zip(params, grads):  # t * clip_norm / max(global_norm, clip_norm)
        assert torch.allclose(p.grad, g / 13.0, atol=1e-6)


def test_exponential_decay_staircase_is_schedule_exponential(tmp_path):
    cfg = compose_config(["schedule=exponential", "schedule.scheduler.decay_steps=2", "schedule.scheduler.decay_rate=0.1",
                          "schedule.scheduler.staircase=true"], tmp_path)
    lrs = lr_trace(cfg.schedule, 1.0, 6)
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])  # 0.1 ** floor(global_step / 2)


def test_DropoutWrapper_output_keep_prob_is_model_dropout():
    net = _backbone("gru", hidden_size=64, dropout=0.25)  # output_keep_prob=0.75
    x = torch.randn(8, 5, 3)
    clean, _ = net.eval()(x)
    torch.manual_seed(1)
    noisy, _ = net.train()(x)
    kept = noisy != 0
    assert 0.6 < kept.float().mean() < 0.9
    assert torch.allclose(noisy[kept], clean[kept] / 0.75, atol=1e-5)  # inverted dropout, like tf.nn.dropout


def test_keras_SimpleRNN_return_sequences_and_return_state():
    net = _backbone("rnn")
    x = torch.randn(2, 5, 3)
    sequences, (state,) = net(x)  # return_sequences=True, return_state=True
    assert sequences.shape == (2, 5, 4) and torch.allclose(sequences[:, -1], state[0])
    # return_sequences=False: the last step's output, a many-to-one head's pooling="last".
    head = ManyToOneHead(4, 7, pooling="last")
    assert torch.allclose(head.pool(sequences, torch.tensor([5, 5])), state[0])


def test_TimeDistributed_dense_is_the_many_to_many_head():
    torch.manual_seed(0)
    head = ManyToManyHead(4, 6)
    outputs = torch.randn(2, 5, 4)
    per_step = torch.stack([head.proj(outputs[:, t]) for t in range(5)], 1)  # the same Dense at every step
    assert torch.allclose(head(outputs), per_step, atol=1e-6)
    model = SequenceTagger(input_size=4, num_classes=6, cell="rnn", hidden_size=8,
                           optimizer={"_target_": "torch.optim.Adam", "_partial_": True})
    assert isinstance(model.net.head, ManyToManyHead)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_pytorch_nn_RNN_batch_first_bidirectional_num_layers(bidirectional):
    net = _backbone("rnn", hidden_size=8, num_layers=2, bidirectional=bidirectional)
    torch.manual_seed(1)
    seed = nn.RNN(input_size=3, hidden_size=8, num_layers=2, batch_first=True, bidirectional=bidirectional)
    seed.load_state_dict(net.blocks[0].state_dict())  # the same parameters under the same names
    x = torch.randn(3, 4, 3)
    output, hidden = seed(x)
    out, final = net(x)
    assert torch.allclose(out, output, atol=1e-6)
    assert torch.allclose(torch.cat(final), hidden, atol=1e-6)  # [num_layers * num_directions, B, H]


def test_temperature_sampling_is_softmax_of_logits_over_T():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    for temperature in (0.5, 1.0, 2.0):
        expected = torch.softmax(logits / temperature, -1)
        assert torch.allclose(next_token_distribution(logits, temperature), expected)
    assert next_token_distribution(logits, 0.05)[0, 0] > 0.99  # T -> 0: greedy


def test_other_activations_tf_nn_relu6_elu_softplus_softsign_sigmoid_are_model_nonlinearity():
    x = torch.randn(2, 3, 3)
    for name, fn in [("relu6", F.relu6), ("elu", F.elu), ("softplus", F.softplus), ("softsign", F.softsign),
                     ("sigmoid", torch.sigmoid)]:
        net = _backbone("rnn", nonlinearity=name)
        w = net.blocks[0]
        first = fn(x[:, 0] @ w.weight_ih_l0.T + w.bias_ih_l0 + w.bias_hh_l0)
        assert torch.allclose(net(x)[0][:, 0], first, atol=1e-6)


def test_the_seeds_toy_tasks_are_data_tasks():
    hihello = ToyWordsDataModule("hihello", batch_size=1)
    (sample,) = hihello.samples
    assert hihello.vocab.decode(sample["inputs"].tolist()) == "hihell"
    assert hihello.vocab.decode(sample["targets"].tolist()) == "ihello"
    batch = ToyWordsDataModule("hello_batch")
    assert [batch.vocab.decode(s["inputs"].tolist()) for s in batch.samples] == ["hell", "eoll", "llee"]
