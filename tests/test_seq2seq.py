"""data=seq2seq_toy and model=seq2seq end to end: the pairs, the batch contract, a real Trainer
run with decoded metrics, and the translate CLI on its checkpoint."""

import datetime
import json

import pytest
import torch

from rnnexp.batch import BOS, EOS, IGNORE_INDEX, PAD_INDEX
from rnnexp.data.seq2seq_toy import DATE_FORMATS, Seq2SeqToyDataModule, generate_pairs
from rnnexp.errors import ConfigError
from rnnexp.train import run
from rnnexp.translate import main as translate
from tests.helpers import compose_config, run_cli


@pytest.mark.parametrize("task", ["reverse", "sort", "add", "dates"])
def test_pairs_are_right_seeded_and_splits_are_disjoint_by_source(task):
    dm = Seq2SeqToyDataModule(task, num_train=300, num_val=50, num_test=50, max_length=8)
    again = Seq2SeqToyDataModule(task, num_train=300, num_val=50, num_test=50, max_length=8)
    assert dm.pairs == again.pairs
    sources = {split: {s for s, _ in pairs} for split, pairs in dm.pairs.items()}
    assert sum(map(len, sources.values())) == 400  # distinct within and across splits
    for source, target in dm.pairs["train"]:
        if task == "reverse":
            assert target == source[::-1] and 1 <= len(source) <= 8
        elif task == "sort":
            assert target == "".join(sorted(source))
        elif task == "add":
            a, b = source.split("+")
            assert int(target) == int(a) + int(b)
        else:
            assert 1950 <= datetime.date.fromisoformat(target).year < 2050


def test_dates_come_in_many_formats():
    pairs = generate_pairs("dates", 2000, seed=1)
    day = datetime.date(2019, 3, 3)
    assert DATE_FORMATS["Mar 3, 2019"](day) == "Mar 3, 2019" and DATE_FORMATS["03/03/19"](day) == "03/03/19"
    shapes = {"".join("9" if c.isdigit() else ("a" if c.isalpha() else c) for c in s) for s, _ in pairs}
    assert len(shapes) >= len(DATE_FORMATS)


def test_batches_follow_the_contract_and_buckets_cut_padding():
    dm = Seq2SeqToyDataModule("reverse", num_train=640, num_val=10, num_test=10, max_length=20, batch_size=32)
    vocab = dm.vocab
    batch = next(iter(dm.train_dataloader()))
    assert batch["lengths"].device.type == "cpu" and batch["target_lengths"].dtype == torch.int64
    for row in range(len(batch["lengths"])):
        n, u = int(batch["lengths"][row]), int(batch["target_lengths"][row])
        source = vocab.decode(batch["inputs"][row, :n])
        assert torch.all(batch["inputs"][row, n:] == PAD_INDEX)
        assert vocab.decode(batch["targets"][row, : u - 1]) == source[::-1]
        assert int(batch["targets"][row, u - 1]) == vocab.index[EOS]
        assert torch.all(batch["targets"][row, u:] == IGNORE_INDEX)
        assert int(batch["target_inputs"][row, 0]) == vocab.index[BOS]
        assert torch.equal(batch["target_inputs"][row, 1:u], batch["targets"][row, : u - 1])

    def padding(bucketing):
        loader = Seq2SeqToyDataModule("reverse", num_train=640, num_val=10, num_test=10, max_length=20,
                                      batch_size=32, bucketing=bucketing).train_dataloader()
        return sum(int(b["inputs"].numel() - b["lengths"].sum()) for b in loader)

    assert padding(True) < padding(False) / 3


def test_too_few_distinct_sources_is_a_config_error():
    with pytest.raises(ConfigError, match="num_train"):
        Seq2SeqToyDataModule("add", num_train=200, num_val=10, num_test=10, max_digits=1)


def test_a_real_run_decodes_logs_and_translates(tmp_path, capsys):
    cfg = compose_config(["model=seq2seq", "data=seq2seq_toy", "data.task=reverse", "data.max_length=4",
                          "data.num_train=1500", "data.num_val=64", "data.num_test=64", "data.batch_size=32",
                          "cell=gru", "model.hidden_size=48", "optimizer.lr=0.01", "model.beam_size=3",
                          "trainer.max_epochs=4", "trainer.enable_progress_bar=false"], tmp_path)
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/exact", "test/token_acc", "test/bleu", "val/exact", "test/loss", "test/acc"):
        assert 0 <= metrics[key] <= max(1, metrics[key])
    assert metrics["test/exact"] > 0.5  # reversing up to 4 letters is learnt in a few epochs
    assert metrics["test/token_acc"] >= metrics["test/exact"]
    ckpt = str(next((tmp_path / "checkpoints").glob("last.ckpt")))
    capsys.readouterr()
    plot = tmp_path / "attention.png"
    outputs = translate([f"ckpt_path={ckpt}", "text=abc", "text=dcba", "beam_size=2", f"plot={plot}"])
    assert len(outputs) == 2 and "abc\t" in capsys.readouterr().out
    assert plot.stat().st_size > 0


def test_translate_refuses_a_checkpoint_of_another_model(tmp_path):
    from tests.helpers import ROOT

    result = run_cli("ckpt_path=" + str(ROOT / "tests/fixtures/lm_v1.ckpt"), "text=x", cwd=tmp_path,
                     module="rnnexp.translate")
    assert result.returncode == 2 and "not an encoder-decoder checkpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_seq2seq_on_other_data_names_the_model_that_fits():
    from rnnexp.models.tasks.seq2seq import Seq2Seq

    with pytest.raises(ConfigError, match="use model=classifier"):
        Seq2Seq(8, 8, vocab=["<pad>", *"abcdefg"], target_kind="label")
    with pytest.raises(ConfigError, match="data=seq2seq_toy"):
        Seq2Seq(8, 8, vocab=["<pad>", *"abcdefg"], target_kind="sequence")
