"""Gradient through time: the unrolled diagnostic path, vanishing gradients in a tanh RNN and
not (nearly as much) in an LSTM, and the callback's figure in the run directory and the loggers."""


import pandas as pd
import pytest
import torch

from rnnexp.callbacks.gradient_through_time import GradientThroughTime, gradient_norms_through_time
from rnnexp.models import RecurrentBackbone, SequenceClassifier
from rnnexp.models.nets.unrolled import state_gradients
from rnnexp.train import run
from tests.helpers import compose_config
from tests.helpers.wandb_reader import read_run


@pytest.mark.parametrize("cell,nonlinearity", [("rnn", "tanh"), ("lstm", "tanh"), ("gru", "tanh"), ("rnn", "softplus")])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_unrolled_path_gives_the_fused_values_and_the_total_derivative(cell, nonlinearity, bidirectional):
    torch.manual_seed(0)
    net = RecurrentBackbone(3, cell=cell, hidden_sizes=[4, 4, 5], bidirectional=bidirectional,
                            nonlinearity=nonlinearity).eval()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    out, final = net(x, lengths)
    with net.record_states() as taps:
        out_u, final_u = net(x, lengths)
    assert len(taps) == 3 and torch.allclose(out, out_u, atol=1e-5)
    for a, b in zip(final, final_u):
        for p, q in zip(*((a, b) if isinstance(a, tuple) else ((a,), (b,)))):
            assert torch.allclose(p, q, atol=1e-5)
    # A loss on the first layer's state at step 2 of row 0 only: dL/dh_t is zero after t=2
    # for the forward direction (the future does not reach the past) and non-zero before it.
    (grads,) = state_gradients(taps[0].states[0][2][0].sum(), taps[:1])
    norms = grads[0, :, :4].norm(dim=-1)
    assert norms[3:].abs().max() == 0 and (norms[:3] > 0).all()


def _vanishing_ratio(cell, forget_bias=None, seed=0):
    """||dL/dh_1|| / ||dL/dh_T|| on sequences of 100 steps whose label is the first input."""
    torch.manual_seed(seed)
    model = SequenceClassifier(input_size=2, num_classes=2, cell=cell, hidden_size=32, forget_bias=forget_bias)
    inputs = torch.randint(0, 2, (16, 100))
    batch = {"inputs": inputs, "lengths": torch.full((16,), 100), "targets": inputs[:, 0]}
    norms = gradient_norms_through_time(model, batch)
    assert norms.shape == (1, 100)
    return float(norms[0, 0] / norms[0, -1])


def test_tanh_rnn_gradients_vanish_over_100_steps_and_an_lstm_with_forget_bias_keeps_far_more():
    for seed in (0, 1):
        rnn, lstm = _vanishing_ratio("rnn", seed=seed), _vanishing_ratio("lstm", 1.0, seed=seed)
        assert rnn < 1e-12  # twelve orders of magnitude lost from step 100 back to step 1
        assert lstm > 1e-10 and rnn < 1e-4 * lstm


def test_the_diagnostic_leaves_training_untouched(tmp_path):
    """Same seed, callback on every step or off: identical weights (no RNG draw, no .grad change)."""
    results = []
    for every in (None, 1):
        cfg = compose_config(["trainer.max_epochs=1", "data.repeat=5", "model.dropout=0.3", "model.num_layers=2", "logger=csv",
                              f"callbacks.gradient_through_time.every_n_steps={every or 'null'}", "test=false"],
                             tmp_path / str(every))
        run(cfg)
        state = torch.load(tmp_path / str(every) / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        results.append(state)
    assert results[0].keys() == results[1].keys()
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert len(list((tmp_path / "1" / "gradient_through_time").glob("step_*.png"))) == 5
    assert not (tmp_path / "None" / "gradient_through_time").exists()


def test_callback_writes_pngs_and_sends_figure_and_ratios_to_every_logger(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_config(["logger=many", "cell=rnn", "model.num_layers=2", "trainer.max_epochs=1",
                          "callbacks.gradient_through_time.every_n_steps=10", "trainer.enable_progress_bar=false",
                          "test=false"], tmp_path)
    run(cfg)
    pngs = sorted(p.name for p in (tmp_path / "gradient_through_time").glob("*.png"))
    assert pngs == ["step_000010.png", "step_000020.png"]
    assert (tmp_path / "gradient_through_time" / pngs[0]).read_bytes()[:4] == b"\x89PNG"

    csv = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    for layer in (0, 1):
        ratios = csv[f"diagnostics/grad_first_over_last/layer_{layer}"].dropna()
        assert list(csv.loc[ratios.index, "step"]) == [10, 20] and (ratios > 0).all()

    (events,) = (tmp_path / "tensorboard").rglob("events.out.tfevents*")
    board = EventAccumulator(str(events.parent), size_guidance={"images": 0})
    board.Reload()
    images = board.Images("diagnostics/gradient_through_time")  # tbparse reads images only with tensorflow
    assert [i.step for i in images] == [10, 20] and images[0].encoded_image_string[:4] == b"\x89PNG"

    (wandb_dir,) = sorted((tmp_path / "wandb").glob("offline-run-*"))
    logged = [row for row in read_run(wandb_dir)["history"] if "diagnostics/gradient_through_time/_type" in row]
    assert len(logged) == 2 and logged[0]["diagnostics/gradient_through_time/_type"] == "images/separated"
    assert len(list((wandb_dir / "files" / "media").rglob("*.png"))) == 2


def test_off_by_default_and_bad_values_are_config_errors(tmp_path):
    cfg = compose_config([], tmp_path)
    assert cfg.callbacks.gradient_through_time.every_n_steps is None
    from rnnexp.errors import ConfigError

    with pytest.raises(ConfigError, match="every_n_steps"):
        GradientThroughTime(every_n_steps=0)
