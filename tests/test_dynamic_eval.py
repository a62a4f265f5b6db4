"""Dynamic evaluation (rnnexp.models.dynamic_eval) and its command (python -m rnnexp.evaluate), on a tiny
language model trained for a few steps on the tweets fixture."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from rnnexp.data.stream_windows import StreamWindows
from rnnexp.data.tweets import TweetsDataModule
from rnnexp.models.dynamic_eval import Updater, dynamic_score, mean_squared_gradients, run_stream
from rnnexp.errors import UserError
from rnnexp.models.tasks.language_model import LanguageModel
from rnnexp.train import run
from tests.helpers import compose_config, run_cli
from tests.helpers.tweets import make_tweets, write_tweets

TRAIN = ["data=tweets", "model=lm", "logger=none", "data.batch_size=8", "data.num_steps=20", "model.hidden_size=24",
         "trainer.max_epochs=1", "+trainer.limit_train_batches=6", "+trainer.limit_val_batches=2", "test=false",
         "trainer.enable_progress_bar=false"]


def train_tiny(folder: Path, *extra: str) -> Path:
    write_tweets(folder / "data")
    run(compose_config([*TRAIN, *extra], folder))
    return folder / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("lm"))


def datamodule_of(ckpt: Path, **kwargs) -> TweetsDataModule:
    dm = TweetsDataModule(data_dir=str(ckpt.parents[1] / "data" / "tweets"), download=False, batch_size=8,
                          num_steps=20, **kwargs)
    dm.setup()
    return dm


def trainer_test_bpc(model, dm, precision="32-true") -> float:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, precision=precision, accelerator="cpu")
    trainer.test(model, datamodule=dm, verbose=False)
    return float(trainer.callback_metrics["test/bpc"])


def repetitive_windows(dm: TweetsDataModule, copies: int = 30):
    ids = np.asarray(dm.vocab.ids((make_tweets()[3] + "\n") * copies), dtype=np.int64)
    windows = StreamWindows([ids], rows=1, num_steps=20)
    return [windows[(0, k)] for k in range(len(windows))]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the algorithm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("rows", [8, 1])
def test_static_bpc_equals_trainer_test(ckpt, rows):
    model = LanguageModel.load_from_checkpoint(ckpt)
    dm = datamodule_of(ckpt, eval_batch_size=rows)
    expected = trainer_test_bpc(model, dm)
    static = run_stream(model.net, dm.test_dataloader())
    assert static.bpc == pytest.approx(expected, rel=1e-6)
    # By hand: the summed cross-entropy of every window, the state carried, over every target character.
    nats, chars, state = 0.0, 0, None
    with torch.no_grad():
        for batch in dm.test_dataloader():
            logits, state = model.net(batch["inputs"], batch["lengths"], state)
            nats += F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), reduction="sum").item()
            chars += batch["targets"].numel()
    assert static.chars == chars and static.bpc == pytest.approx(nats / chars / math.log(2), rel=1e-6)


def test_lr_zero_equals_static_and_the_weights_stay(ckpt):
    model = LanguageModel.load_from_checkpoint(ckpt)
    before = copy.deepcopy(model.state_dict())
    dm = datamodule_of(ckpt)
    static = run_stream(model.net, dm.test_dataloader())
    for method, ms in (("sgd", None), ("rms", [torch.ones_like(p) for p in model.net.parameters()])):
        dynamic = dynamic_score(model.net, dm.test_dataloader(), method, 0.0, ms=ms)
        assert dynamic.windows == pytest.approx(static.windows, rel=1e-6, abs=1e-7)
    dynamic = dynamic_score(model.net, dm.test_dataloader(), "sgd", 1.0)
    assert dynamic.bpc != pytest.approx(static.bpc)
    for key, value in model.state_dict().items():  # θ₀ untouched: a copy was adapted
        assert torch.equal(value, before[key]), key


def test_sgd_lowers_bpc_on_a_repetitive_text(ckpt):
    model = LanguageModel.load_from_checkpoint(ckpt)
    windows = repetitive_windows(datamodule_of(ckpt))
    static = run_stream(model.net, windows)
    dynamic = dynamic_score(model.net, windows, "sgd", 0.5)
    assert dynamic.bpc < static.bpc - 0.3, (static.bpc, dynamic.bpc)
    # It learns as it goes: the last windows gain more than the first ones.
    gain = np.subtract(static.windows, dynamic.windows)
    assert gain[0] == pytest.approx(0.0, abs=1e-6) and gain[-5:].mean() > gain[1:6].mean()


@pytest.mark.parametrize("method", ["sgd", "rms"])
def test_a_window_is_scored_before_the_update_on_it(ckpt, method):
    """Window k's dynamic score is the static score of the weights adapted on windows 0..k-1 only."""
    model = LanguageModel.load_from_checkpoint(ckpt)
    windows = repetitive_windows(datamodule_of(ckpt))
    ms = mean_squared_gradients(model.net, windows[:3]) if method == "rms" else None
    lr = 0.5 if method == "sgd" else 1e-3
    full = dynamic_score(model.net, windows, method, lr, 0.01 if method == "rms" else 0.0, ms=ms)
    for k in (1, 4):
        adapted = copy.deepcopy(model.net)
        kept = []
        run_stream(adapted, windows[:k], updater=Updater(adapted, method, lr, 0.01 if method == "rms" else 0.0, ms=ms),
                   keep_state=kept)
        alone = run_stream(adapted, windows[k:k + 1], state=kept[0])  # no update: what window k saw
        assert alone.windows[0] == pytest.approx(full.windows[k], rel=1e-5)
        # Changing window k's own text changes its score only through the forward pass, as statically.
        altered = dict(windows[k], targets=torch.roll(windows[k]["targets"], 1, dims=1))
        changed = dynamic_score(model.net, [*windows[:k], altered], method, lr, 0.01 if method == "rms" else 0.0, ms=ms)
        again = run_stream(adapted, [altered], state=kept[0])
        assert changed.windows[k] == pytest.approx(again.windows[0], rel=1e-5)
        assert changed.windows[:k] == pytest.approx(full.windows[:k], rel=1e-6)


def test_rms_update_is_krauses_formula_and_decay_pulls_to_the_trained_weights(ckpt):
    model = LanguageModel.load_from_checkpoint(ckpt)
    net = copy.deepcopy(model.net)
    theta0 = [p.detach().clone() for p in net.parameters()]
    ms = [torch.rand_like(p) + 0.1 for p in net.parameters()]
    lr, decay, eps = 1e-3, 0.25, 2e-5
    updater = Updater(net, "rms", lr, decay, eps, ms)  # θ₀ is the weights when the updater is made
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    batch = repetitive_windows(datamodule_of(ckpt))[0]
    start = [p.detach().clone() for p in net.parameters()]
    logits, _ = net(batch["inputs"], batch["lengths"])
    loss = F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten())
    grads = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)
    updater.step(loss)
    for p, p_start, p0, g, m in zip(net.parameters(), start, theta0, grads, ms):
        expected = p_start - lr * g / (m.sqrt() + eps) + decay * (p0 - p_start)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-7)
    # Without gradient steps (lr=0) every weight goes a quarter of the way back per window.
    updater.lr = 0.0
    offset = [p.detach() - p0 for p, p0 in zip(net.parameters(), theta0)]
    for _ in range(3):
        logits, _ = net(batch["inputs"], batch["lengths"])
        updater.step(F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten()))
    for p, p0, d in zip(net.parameters(), theta0, offset):
        torch.testing.assert_close(p.detach() - p0, d * 0.75**3, rtol=1e-4, atol=1e-6)


def test_rms_scaled_decay_is_the_papers_global_prior(ckpt):
    """decay_scale=rms: each weight's decay is decay*RMS/mean(RMS) over all weights, capped at 1."""
    net = copy.deepcopy(LanguageModel.load_from_checkpoint(ckpt).net)
    theta0 = [p.detach().clone() for p in net.parameters()]
    generator = torch.Generator().manual_seed(1)
    ms = [torch.rand(p.shape, generator=generator) ** 4 for p in net.parameters()]  # a wide spread of RMS
    decay = 0.5  # RMS/mean(RMS) reaches ~3 here: the cap at 1 applies to the largest
    updater = Updater(net, "rms", 0.0, decay, 2e-5, ms, decay_scale="rms")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    batch = repetitive_windows(datamodule_of(ckpt))[0]
    logits, _ = net(batch["inputs"], batch["lengths"])
    updater.step(F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten()))
    rms = [m.sqrt() for m in ms]
    mean = sum(r.sum() for r in rms) / sum(r.numel() for r in rms)
    capped = 0
    for p, p0, r in zip(net.parameters(), theta0, rms):
        rate = torch.minimum(decay * r / mean, torch.ones_like(r))
        capped += int((decay * r / mean > 1).sum())
        torch.testing.assert_close(p.detach() - p0, 1.0 - rate, rtol=1e-5, atol=1e-6)
    assert capped > 0  # the cap is exercised


def test_mean_squared_gradients_by_hand(ckpt):
    model = LanguageModel.load_from_checkpoint(ckpt)
    windows = repetitive_windows(datamodule_of(ckpt))[:2]
    ms = mean_squared_gradients(model.net, windows)
    params = list(model.net.parameters())
    logits, state = model.net(windows[0]["inputs"], windows[0]["lengths"])
    g1 = torch.autograd.grad(F.cross_entropy(logits.flatten(0, 1), windows[0]["targets"].flatten()), params)
    state = [tuple(s.detach() for s in layer) if isinstance(layer, tuple) else layer.detach() for layer in state]
    logits, _ = model.net(windows[1]["inputs"], windows[1]["lengths"], state)
    g2 = torch.autograd.grad(F.cross_entropy(logits.flatten(0, 1), windows[1]["targets"].flatten()), params)
    for m, a, b in zip(ms, g1, g2):
        torch.testing.assert_close(m, (a**2 + b**2) / 2, rtol=1e-5, atol=1e-10)


# -- the command -----------------------------------------------------------------------------------

def test_command_writes_json_tunes_on_val_and_leaves_the_checkpoint(ckpt, capsys):
    from rnnexp.evaluate import main

    digest = sha(ckpt)
    model = LanguageModel.load_from_checkpoint(ckpt)
    expected = trainer_test_bpc(model, datamodule_of(ckpt, eval_batch_size=1))
    result = main([f"ckpt_path={ckpt}", "tune=true", "method=rms", "lr_grid=[1e-4,1e-3]", "decay_grid=[0,0.02]",
                   "ms_windows=5", "data.eval_batch_size=1"])
    assert sha(ckpt) == digest
    saved = json.loads((ckpt.parents[1] / "dynamic_eval.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["split"] == "test" and saved["method"] == "rms" and saved["eval_batch_size"] == 1
    assert saved["static"]["bpc"] == pytest.approx(expected, rel=1e-6)
    tried = saved["tuning"]["tried"]
    assert len(tried) == 4 and {t["lr"] for t in tried} == {1e-4, 1e-3}
    best = min(tried, key=lambda t: t["val_bpc"])
    assert (saved["lr"], saved["decay"]) == (best["lr"], best["decay"])
    assert saved["chars"] > 0 and saved["dynamic"]["bpc"] > 0
    out = capsys.readouterr().out
    assert "static   test bpc" in out and "dynamic  test bpc" in out


def test_bf16_checkpoint_is_scored_under_autocast(tmp_path):
    # A GRU: oneDNN has a bf16 GRU on every CPU, a bf16 LSTM only with AVX-512 BF16 or AMX.
    ckpt = train_tiny(tmp_path, "cell=gru", "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=null")
    model = LanguageModel.load_from_checkpoint(ckpt)
    dm = datamodule_of(ckpt)
    expected = trainer_test_bpc(model, dm, "bf16-mixed")
    static = run_stream(model.net, dm.test_dataloader(), "bf16-mixed")
    assert static.bpc == pytest.approx(expected, rel=1e-5)
    assert static.bpc != pytest.approx(run_stream(model.net, dm.test_dataloader()).bpc, rel=1e-7)
    from rnnexp.evaluate import main

    result = main([f"ckpt_path={ckpt}", "dynamic=true", "lr=0.1"])
    assert result["precision"] == "bf16-mixed" and result["static"]["bpc"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["ckpt_path=/nonexistent/last.ckpt"], "no such checkpoint file"),
    (["dynamic=true", "method=adam"], "method='adam' is invalid"),
    (["dynamic=true", "lr=0"], "lr=0"),
    (["dynamic=true", "lr=-1"], "lr=-1"),
    (["tune=true", "split=val"], "split='val'"),
    (["checkpoint=x"], "unknown argument"),
    (["dynamic=true", "decay=0.1"], "decay=0.1"),
    (["dynamic=true", "method=rms", "decay_scale=global"], "decay_scale='global'"),
])
def test_bad_input_is_one_line(ckpt, args, message):
    from rnnexp.runtime.cli import describe
    from rnnexp.evaluate import main

    argv = args if args[0].startswith(("ckpt_path", "checkpoint")) else [f"ckpt_path={ckpt}", *args]
    with pytest.raises(UserError) as info:
        main(argv)
    assert message in describe(info.value)


def test_not_a_language_model_exits_2(tmp_path, ckpt):
    bad = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"input_size": 3}}, bad)
    result = run_cli(f"ckpt_path={bad}", "dynamic=true", cwd=tmp_path, module="rnnexp.evaluate")
    assert result.returncode == 2 and result.stderr.startswith("error:"), result.stderr
    assert "not a language-model checkpoint" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = run_cli(f"ckpt_path={ckpt}", "dynamic=true", "lr=0", cwd=tmp_path, module="rnnexp.evaluate")
    assert result.returncode == 2 and result.stderr.strip() == (
        "error: lr=0.0 is invalid: must be a number > 0 (dynamic=false scores without adaptation)")


@pytest.mark.parametrize("network", [dict(cell="lstm"), dict(cell="gru", num_layers=2), dict(cell="jordan"),
                                     dict(cell="rnn", nonlinearity="elu"), dict(cell="lstm", learn_initial_state=True)])
def test_every_cell_adapts_a_copy(network):
    """Every cell (the fused kernels, Jordan's, the TorchScript one) is copied and adapted; θ₀ stays."""
    torch.manual_seed(0)
    model = LanguageModel(input_size=12, num_classes=12, hidden_size=8, **network)
    ids = torch.arange(82).remainder(7).view(2, 41)  # a periodic text: one step in, the copy predicts it better
    windows = [{"inputs": ids[:, s:s + 10], "targets": ids[:, s + 1:s + 11], "lengths": torch.full((2,), 10),
                "carry_state": True} for s in range(0, 40, 10)]
    before = [p.detach().clone() for p in model.net.parameters()]
    static = run_stream(model.net, windows)
    assert dynamic_score(model.net, windows, "sgd", 0.0).windows == pytest.approx(static.windows, rel=1e-6)
    adapted = dynamic_score(model.net, windows, "sgd", 1.0)
    assert adapted.windows[0] == pytest.approx(static.windows[0], rel=1e-6)
    assert adapted.windows[-1] < static.windows[-1] - 0.05
    assert all(torch.equal(p, b) for p, b in zip(model.net.parameters(), before))
