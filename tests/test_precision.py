"""bf16-mixed for every cell and path: the recurrent block runs in bf16, master weights and
their gradients stay fp32, packed lengths and the carried state behave; trainer.precision=auto."""

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.nn.utils.rnn import PackedSequence

from rnnexp.runtime import precision
from rnnexp.data import ToyWordsDataModule
from rnnexp.models import RecurrentBackbone, SequenceTagger
from rnnexp.models.nets.cells import CELLS
from rnnexp.models.nets.unrolled import state_gradients
from tests.helpers import run_cli
from tests.helpers.precision import NO_BF16_LSTM

BF16 = torch.bfloat16
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


def _bf16():
    return torch.autocast("cpu", dtype=BF16)


BF16_CELLS = [pytest.param(c, marks=NO_BF16_LSTM) if c == "lstm" else c for c in sorted(CELLS)]
# bf16 keeps 8 significant bits: one rounding of a value in [-1, 1] is off by at most 2**-9, one
# unit in the last place (ulp) at 1 is 2**-8 = 0.0039.
ULP = 2.0 ** -8


def _block_dtypes(backbone):
    """Forward hooks recording the dtypes of every block's input, output and parameters. The output's
    dtype is the one the kernel ran in (autocast casts the LSTM's fp32 input inside the call)."""
    seen = []

    def hook(module, args, output):
        data = args[0].data if isinstance(args[0], PackedSequence) else args[0]
        out = output[0].data if isinstance(output[0], PackedSequence) else output[0]
        seen.append((data.dtype, out.dtype, {p.dtype for p in module.parameters()}))

    for block in backbone.blocks:
        block.register_forward_hook(hook)
    return seen


@pytest.mark.parametrize("cell", BF16_CELLS)
def test_each_cell_trains_a_few_steps_under_bf16_mixed_in_a_real_trainer(tmp_path, cell):
    dm = ToyWordsDataModule("hello_batch", repeat=1)
    torch.manual_seed(0)
    model = SequenceTagger(**dm.spec().model_kwargs(), cell=cell, hidden_size=16, optimizer=ADAM)
    seen = _block_dtypes(model.net.backbone)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, max_steps=4, limit_val_batches=1, precision="bf16-mixed")
    trainer.fit(model, datamodule=dm)
    assert seen and all(out == BF16 for _, out, _ in seen)  # the fused call ran in bf16
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.isfinite(trainer.callback_metrics["val/loss"])


# Every path of the backbone: fused, bidirectional, variational dropout (one module per layer),
# the TorchScript cell (elu), unequal widths.
PATHS = [
    dict(cell="gru"), dict(cell="rnn"), dict(cell="lstm"),
    dict(cell="gru", bidirectional=True), dict(cell="rnn", bidirectional=True),
    dict(cell="gru", dropout=0.3, variational_dropout=True),
    dict(cell="rnn", nonlinearity="elu"), dict(cell="rnn", nonlinearity="elu", bidirectional=True),
    dict(cell="lstm", hidden_sizes=[6, 4], bidirectional=True),
]


@pytest.mark.parametrize("kwargs", PATHS, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_block_runs_in_bf16_with_fp32_master_weights_and_gradients_and_packed_lengths(kwargs):
    torch.manual_seed(0)
    kwargs = {"hidden_size": 8, "num_layers": 2, **kwargs}
    backbone = RecurrentBackbone(5, **kwargs).train()
    seen = _block_dtypes(backbone)
    x, lengths = torch.randn(4, 7, 5), torch.tensor([7, 3, 5, 1])
    with _bf16():
        out, final = backbone(x, lengths)
        loss = out.float().pow(2).sum() + sum(t.float().sum() for s in final for t in (s if isinstance(s, tuple) else (s,)))
    loss.backward()
    assert seen and all(o == BF16 for _, o, _ in seen)
    # The padded outputs stay zero and every row's final state is its own last valid step's.
    assert (out[1, 3:] == 0).all() and (out[3, 1:] == 0).all()
    for param in backbone.parameters():
        assert param.dtype == torch.float32 and param.grad is not None and param.grad.dtype == torch.float32
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0
    # The final state is handed back in fp32, to be carried between windows (docs/precision.md).
    assert all(t.dtype == torch.float32 for s in final for t in (s if isinstance(s, tuple) else (s,)))


@pytest.mark.parametrize("cell", BF16_CELLS)
def test_bf16_agrees_with_fp32_and_a_carried_state_matches_one_long_window(cell):
    torch.manual_seed(0)
    backbone = RecurrentBackbone(5, cell=cell, hidden_size=16, num_layers=2).eval()
    x = torch.randn(3, 40, 5)
    with torch.no_grad():
        full32, _ = backbone(x)
        with _bf16():
            full, _ = backbone(x)
            first, state = backbone(x[:, :20])
            second, _ = backbone(x[:, 20:], lengths=None, state=state)
    # Outputs lie in [-1, 1]; every step rounds the inputs, weights and state to bf16, and the error
    # of 40 steps x 2 layers does not stay within one rounding: the measured worst case is 0.0031-0.0056
    # (gru, jordan, rnn; seeds 0-2; AMD EPYC, no AVX-512), the mean 0.0006-0.0012. The bounds allow
    # about 4x that: 5 ulps for the worst element, one ulp for the mean (an fp32 run scores ~1e-7).
    # The LRU's output is a linear readout, not squashed into [-1, 1] (max |y| 6-9 here); bf16's ulp
    # grows with the value, so the bounds are in ulps of the output's largest magnitude (LRU measured
    # 1.3-2.3 ulps worst, seeds 0-2).
    scale = max(1.0, float(full32.abs().max()))
    error = (full.float() - full32).abs()
    assert error.max() < 5 * ULP * scale and error.mean() < ULP * scale
    # Carrying the (fp32) state between two windows reads the sequence as one window does: the
    # state re-enters bf16 with the same rounding, so it is exact here (measured 0); one ulp of the
    # output's size is left for kernels that block the time loop differently (oneDNN with AMX).
    joined = torch.cat([first, second], 1).float()
    assert (joined - full.float()).abs().max() <= ULP * full.float().abs().max()


@pytest.mark.parametrize("cell,nonlinearity", [("gru", "tanh"), ("rnn", "elu"),
                                               pytest.param("lstm", "tanh", marks=NO_BF16_LSTM)])
def test_the_diagnostics_path_runs_in_bf16_and_gives_state_gradients(cell, nonlinearity):
    torch.manual_seed(0)
    backbone = RecurrentBackbone(3, cell=cell, hidden_size=6, nonlinearity=nonlinearity, bidirectional=True).eval()
    x, lengths = torch.randn(2, 6, 3), torch.tensor([6, 4])
    with _bf16():
        fused, _ = backbone(x, lengths)
        with backbone.record_states() as taps:
            unrolled, final = backbone(x, lengths)
        loss = unrolled.float().sum()
    grads = state_gradients(loss, taps)
    # The unrolled cells compute what the fused kernel does, in the same dtypes: equal here (measured
    # 0 for gru and rnn). oneDNN's bf16 LSTM (AVX-512 BF16 hosts) sums its gates in another order:
    # measured 1.2 ulps of the output's size (AMD EPYC, avx512_bf16, seed 0); two ulps are allowed.
    assert (unrolled.float() - fused.float()).abs().max() <= 2 * ULP * fused.float().abs().max()
    assert grads[0].shape == (2, 6, 12) and torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0


def test_every_cell_in_the_table_says_whether_autocast_covers_it():
    assert CELLS["lstm"].autocast_covers and not CELLS["gru"].autocast_covers and not CELLS["rnn"].autocast_covers


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert precision.cpu_bf16_flags(cpuinfo) == ("amx_bf16", "avx512_bf16")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert precision.cpu_bf16_flags(cpuinfo) == ()
    assert precision.cpu_bf16_flags(tmp_path / "missing") == ()


def test_the_probe_decides_from_the_measured_ratio():
    assert precision.decide(1.68)[0] == "bf16-mixed" and "1.68x" in precision.decide(1.68)[1]
    assert precision.decide(precision.MIN_SPEEDUP)[0] == "bf16-mixed"
    assert precision.decide(1.05)[0] == "32-true" and "1.05x" in precision.decide(1.05)[1]
    assert precision.decide(0.64)[0] == "32-true"
    assert precision.decide(None, "no kernel") == ("32-true", "bf16 did not run on this CPU (no kernel); fp32")


def test_the_probe_is_cached_per_key_and_survives_a_damaged_file(tmp_path):
    calls = []

    def measure(value):
        def run():
            calls.append(value)
            return value
        return run

    assert precision.cached_probe(tmp_path, "a", measure(1.5)) == (1.5, None, False)
    assert precision.cached_probe(tmp_path, "a", measure(9.0)) == (1.5, None, True)  # not measured again
    assert precision.cached_probe(tmp_path, "b", measure(0.8)) == (0.8, None, False)  # another model shape
    assert calls == [1.5, 0.8]
    saved = json.loads((tmp_path / precision.CACHE_FILE).read_text())
    assert saved["a"]["ratio"] == 1.5 and saved["b"]["host"] == precision.host_id()

    def no_kernel():
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive.\nmore")

    ratio, error, cached = precision.cached_probe(tmp_path, "c", no_kernel)
    assert ratio is None and error.startswith("could not create a primitive") and not cached
    assert precision.cached_probe(tmp_path, "c", measure(2.0))[:2] == (None, error)  # the failure is cached too
    (tmp_path / precision.CACHE_FILE).write_text("{not json")
    assert precision.cached_probe(tmp_path, "a", measure(1.2)) == (1.2, None, False)
    assert precision.cached_probe(None, "a", measure(1.3)) == (1.3, None, False)  # no cache folder: measure


def _tagger(cell):
    dm = ToyWordsDataModule("hello_batch", repeat=1)
    torch.manual_seed(0)
    return SequenceTagger(**dm.spec().model_kwargs(), cell=cell, hidden_size=16, optimizer=ADAM), dm


def test_the_probe_key_follows_the_model_shape_and_the_batch():
    model, dm = _tagger("gru")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    same, _ = _tagger("gru")
    wider = SequenceTagger(**dm.spec().model_kwargs(), cell="gru", hidden_size=32, optimizer=ADAM)
    assert precision.probe_key(model, batch) == precision.probe_key(same, batch)
    assert precision.probe_key(model, batch) != precision.probe_key(wider, batch)
    longer = {**batch, "inputs": torch.cat([batch["inputs"], batch["inputs"]], 1)}
    assert precision.probe_key(model, batch) != precision.probe_key(model, longer)


def test_a_real_probe_steps_a_copy_of_the_model_in_both_precisions_and_restores_the_rngs():
    model, dm = _tagger("gru")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    before = [p.detach().clone() for p in model.parameters()]
    ratio = precision.measure_speedup(model, batch, pairs=2, budget_s=0.0)
    assert ratio > 0 and math.isfinite(ratio)  # a speed, not asserted: timings are the benchmarks' job
    assert all(torch.equal(a, p) and p.grad is None for a, p in zip(before, model.parameters()))
    torch.manual_seed(5)
    precision.probe(model, dm, None)
    after_probe = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), after_probe)


@pytest.mark.parametrize("measured,expected", [(1.5, "bf16-mixed"), (0.9, "32-true")])
def test_auto_on_a_cpu_runs_the_probe_on_the_runs_model_and_logs_the_ratio(make_cfg, monkeypatch, caplog, measured,
                                                                          expected):
    import logging

    from hydra.utils import instantiate

    seen = []
    monkeypatch.setattr(precision, "measure_speedup", lambda model, batch: seen.append(type(model).__name__) or measured)
    cfg = make_cfg("trainer.precision=auto", "trainer.accelerator=cpu")
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, **datamodule.spec().model_kwargs())
    with caplog.at_level(logging.INFO, logger=precision.__name__):
        assert precision.resolve_precision(cfg, model, datamodule) == expected
    assert cfg.trainer.precision == expected and seen == [type(model).__name__]
    assert f"{measured:.2f}x as fast as fp32" in caplog.text and "measured now" in caplog.text
    assert (Path(cfg.paths.cache_dir) / precision.CACHE_FILE).is_file()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=precision.__name__):  # the next run reads the cache
        assert precision.resolve_precision(make_cfg("trainer.precision=auto"), model, datamodule) == expected
    assert seen == [type(model).__name__] and "cached in" in caplog.text


def test_auto_keeps_fp32_where_bf16_does_not_run_and_an_explicit_value_is_kept(make_cfg, monkeypatch):
    def no_kernel(model, batch):
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive.")

    monkeypatch.setattr(precision, "measure_speedup", no_kernel)
    cfg = make_cfg("trainer.precision=auto")
    from hydra.utils import instantiate

    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, **datamodule.spec().model_kwargs())
    assert precision.resolve_precision(cfg, model, datamodule) == "32-true"
    # An explicit value is kept whatever the hardware, under Lightning's own name: the one every reader sees.
    for value, unified in [("32", "32-true"), ("bf16", "bf16-mixed"), ("bf16-true", "bf16-true")]:
        cfg = make_cfg(f"trainer.precision={value}")
        assert precision.resolve_precision(cfg, model, datamodule) == unified and cfg.trainer.precision == unified
    # Dynamic evaluation steps under the autocast Lightning's plugin would (before: none for "bf16").
    from rnnexp.models.dynamic_eval import autocast_for

    for value, dtype in [("bf16", torch.bfloat16), ("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)]:
        with autocast_for(value, torch.device("cpu")):
            assert torch.get_autocast_dtype("cpu") == dtype and torch.is_autocast_enabled("cpu")
    for value in ("32", "32-true", "bf16-true", None):
        with autocast_for(value, torch.device("cpu")):
            assert not torch.is_autocast_enabled("cpu")
    # Without the run's model (a caller that has none) the CPU flags decide, as before the probe.
    for flags, expected in [(("amx_bf16", "avx512_bf16"), "bf16-mixed"), (("avx512_bf16",), "32-true"), ((), "32-true")]:
        monkeypatch.setattr(precision, "cpu_bf16_flags", lambda flags=flags: flags)
        assert precision.resolve_precision(make_cfg("trainer.precision=auto")) == expected


@pytest.mark.parametrize("value", ["32-true", "bf16-mixed", "auto"])
def test_precision_is_a_key_of_every_trainer_config(make_cfg, value):
    for trainer in ("default", "cpu", "ddp"):
        assert "precision" in make_cfg(f"trainer={trainer}").trainer
    assert make_cfg(f"trainer.precision={value}").trainer.precision == value


def test_an_unknown_precision_is_one_error_line(tmp_path):
    result = run_cli("trainer.precision=bf17", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: trainer.precision='bf17' is invalid: choose auto, 32-true or bf16-mixed" in result.stderr
    assert "Traceback" not in result.stderr


FUSED_ADAM = {**ADAM, "fused": True}


@pytest.mark.parametrize("precision_flag, clip, fused", [("bf16-mixed", 1.0, None), ("bf16-mixed", None, True), ("32-true", 1.0, True)])
def test_fused_adam_falls_back_only_where_lightning_refuses_to_clip_it(tmp_path, precision_flag, clip, fused):
    # conf/optimizer/adam.yaml asks for fused Adam and trainer.gradient_clip_val defaults to 1.0;
    # Lightning's mixed-precision plugin raises on clipping a fused optimizer, so that one
    # combination runs torch's foreach update instead of failing at the first step.
    dm = ToyWordsDataModule("hello_batch", repeat=1)
    model = SequenceTagger(**dm.spec().model_kwargs(), cell="gru", hidden_size=8, optimizer=FUSED_ADAM)
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, max_steps=2, limit_val_batches=1, precision=precision_flag,
                         gradient_clip_val=clip)
    trainer.fit(model, datamodule=dm)
    assert trainer.optimizers[0].defaults["fused"] is fused
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
