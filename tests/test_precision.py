"""bf16-mixed for every cell and path: the recurrent block runs in bf16, master weights and
their gradients stay fp32, packed lengths and the carried state behave; trainer.precision=auto."""

import pytest
import pytorch_lightning as pl
import torch
from torch.nn.utils.rnn import PackedSequence

from rnnexp.runtime import precision as precision
from rnnexp.data import ToyWordsDataModule
from rnnexp.models import RecurrentBackbone, SequenceTagger
from rnnexp.models.nets.cells import CELLS
from rnnexp.models.nets.unrolled import state_gradients
from tests.helpers import run_cli

BF16 = torch.bfloat16
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


def _bf16():
    return torch.autocast("cpu", dtype=BF16)


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


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_each_cell_trains_a_few_steps_under_bf16_mixed_in_a_real_trainer(tmp_path, cell):
    dm = ToyWordsDataModule("hello_batch")
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


@pytest.mark.parametrize("cell", sorted(CELLS))
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
    assert (full.float() - full32).abs().max() < 0.05  # bf16 keeps 8 bits of mantissa
    # Carrying the (fp32) state between two windows reads the sequence as one window does.
    joined = torch.cat([first, second], 1).float()
    assert (joined - full.float()).abs().max() < 0.05


@pytest.mark.parametrize("cell,nonlinearity", [("gru", "tanh"), ("rnn", "elu"), ("lstm", "tanh")])
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
    assert (unrolled.float() - fused.float()).abs().max() < 0.05
    assert grads[0].shape == (2, 6, 12) and torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0


def test_every_cell_in_the_table_says_whether_autocast_covers_it():
    assert CELLS["lstm"].autocast_covers and not CELLS["gru"].autocast_covers and not CELLS["rnn"].autocast_covers


def test_auto_picks_bf16_only_where_the_cpu_has_amx(tmp_path, monkeypatch, make_cfg):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert precision.cpu_bf16_flags(cpuinfo) == ("amx_bf16", "avx512_bf16")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert precision.cpu_bf16_flags(cpuinfo) == ()
    assert precision.cpu_bf16_flags(tmp_path / "missing") == ()

    # AVX-512 BF16 without AMX runs bf16 matmuls slower than fp32 (docs/precision.md).
    for flags, expected in [(("amx_bf16", "avx512_bf16"), "bf16-mixed"), (("avx512_bf16",), "32-true"), ((), "32-true")]:
        monkeypatch.setattr(precision, "cpu_bf16_flags", lambda flags=flags: flags)
        cfg = make_cfg("trainer.precision=auto")
        assert precision.resolve_precision(cfg) == expected and cfg.trainer.precision == expected
    cfg = make_cfg("trainer.precision=32")  # an explicit value is kept whatever the hardware
    assert precision.resolve_precision(cfg) == "32" and cfg.trainer.precision == 32


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
    dm = ToyWordsDataModule("hello_batch")
    model = SequenceTagger(**dm.spec().model_kwargs(), cell="lstm", hidden_size=8, optimizer=FUSED_ADAM)
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, max_steps=2, limit_val_batches=1, precision=precision_flag,
                         gradient_clip_val=clip)
    trainer.fit(model, datamodule=dm)
    assert trainer.optimizers[0].defaults["fused"] is fused
    assert torch.isfinite(trainer.callback_metrics["val/loss"])
