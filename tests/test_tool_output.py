"""What the tools print: the progress line of an epoch, ``rnnexp.generate``'s sample labels and
``rnnexp.translate``'s attention plot (every source, and where the file is)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from rnnexp.callbacks.console import ProgressLog
from tests.helpers import ROOT, compose_config

LM = str(ROOT / "tests" / "fixtures" / "lm_v1.ckpt")


def _epoch_line(caplog, max_epochs, metrics, monitor="val/loss") -> str:
    trainer = SimpleNamespace(max_epochs=max_epochs, callback_metrics={k: torch.tensor(v) for k, v in metrics.items()},
                              checkpoint_callback=SimpleNamespace(monitor=monitor))
    progress = ProgressLog()
    progress._has_tokens = False
    with caplog.at_level(logging.INFO, logger="rnnexp.progress"):
        progress._write(trainer, 2, "", ("train/", "val/"), 1.0, 10, 0)
    (record,) = [r for r in caplog.records if r.name == "rnnexp.progress"]
    caplog.clear()
    return record.getMessage()


def test_the_epoch_line_counts_epochs_only_when_they_are_limited(caplog):
    assert _epoch_line(caplog, 10, {"train/loss": 1.0}).startswith("epoch 3/10  train/loss 1")
    for unlimited in (-1, None):  # max_epochs=-1 with max_steps, or no limit at all
        line = _epoch_line(caplog, unlimited, {"train/loss": 1.0})
        assert line.startswith("epoch 3  train/loss 1") and "/-1" not in line and "None" not in line


def test_the_epoch_line_shows_the_monitored_metric_of_seq2seq_and_any_other(caplog):
    line = _epoch_line(caplog, 5, {"train/loss": 1.0, "val/loss": 0.5, "val/exact": 0.25, "val/bleu": 0.7},
                       monitor="val/exact")
    assert "val/exact 0.25" in line and "val/bleu" not in line
    line = _epoch_line(caplog, 5, {"val/loss": 0.5, "val/bleu": 0.7}, monitor="val/bleu")
    assert "val/bleu 0.7" in line  # whatever the checkpoint monitors is on the line


def test_every_sample_is_labelled_with_its_own_seed_and_can_be_drawn_again_alone(capsys):
    from rnnexp.generate import main

    texts = main([f"ckpt_path={LM}", "prime=the ", "length=30", "num_samples=3", "seed=5", "temperature=1.5"])
    out = capsys.readouterr().out
    labels = [line for line in out.splitlines() if line.startswith("--- sample")]
    assert [label.rsplit("seed=", 1)[1].rstrip(")") for label in labels] == ["5", "6", "7"]
    assert len(set(texts)) == 3  # three seeds, three samples
    for i, seed in enumerate((5, 6, 7)):
        (alone,) = main([f"ckpt_path={LM}", "prime=the ", "length=30", "num_samples=1", f"seed={seed}",
                         "temperature=1.5"])
        assert alone == texts[i]


def _png_size(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # width, height from the IHDR chunk


def test_translate_plots_every_source_and_says_where(tmp_path, capsys):
    from rnnexp.translate import main

    cfg = compose_config(["model=seq2seq", "data=seq2seq_toy", "data.task=reverse", "data.max_length=4",
                          "data.num_train=200", "model.hidden_size=8"], tmp_path)
    dm = instantiate(cfg.data)
    model = instantiate(cfg.model, **dm.spec().model_kwargs())
    ckpt = tmp_path / "s2s.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams), "epoch": 0,
                "global_step": 0, "pytorch-lightning_version": pl.__version__}, ckpt)
    sizes = {}
    for name, texts in (("one", ["abc"]), ("three", ["abc", "dcba", "b"])):
        plot = tmp_path / f"{name}.png"
        outputs = main([f"ckpt_path={ckpt}", *[f"text={t}" for t in texts], "max_length=6", f"plot={plot}"])
        captured = capsys.readouterr()
        assert len(outputs) == len(texts) and len(captured.out.splitlines()) == len(texts)  # stdout: translations only
        assert captured.err.strip() == f"attention of {len(texts)} source{'s' * (len(texts) > 1)} plotted in {plot.resolve()}"
        sizes[name] = _png_size(plot)
    assert sizes["three"][1] > 1.5 * sizes["one"][1]  # a panel per source, stacked (one plot was 395 px high)
