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
    for key in ("test/exact", "test/token_acc", "test/bleu", "val/exact", "test/acc"):
        assert 0 <= metrics[key] <= 1
    assert metrics["test/loss"] > 0
    assert metrics["test/exact"] > 0.5  # reversing up to 4 letters is learnt in a few epochs

    # The logged test/exact and test/token_acc against the decoded strings of the tested (best)
    # checkpoint, scored here by hand: exact = output string equal to the target; token accuracy =
    # target characters decoded at their position, plus the EOS (right iff the output has the
    # target's length: it stopped there), over all target positions.
    from rnnexp.models.tasks.seq2seq import Seq2Seq

    best = metrics["optimized_metric_from"].removeprefix("best checkpoint (").removesuffix(")")
    model = Seq2Seq.load_from_checkpoint(tmp_path / "checkpoints" / best, map_location="cpu").eval()
    dm = Seq2SeqToyDataModule("reverse", num_train=1500, num_val=64, num_test=64, max_length=4, batch_size=32)
    exact = right = positions = 0
    for batch in dm.test_dataloader():
        outputs = model.translate(batch["inputs"], batch["lengths"])
        sources = [dm.vocab.decode(row[:n]) for row, n in zip(batch["inputs"], batch["lengths"])]
        for source, output in zip(sources, outputs):
            target = source[::-1]
            exact += output == target
            right += sum(a == b for a, b in zip(output, target)) + (len(output) == len(target))
            positions += len(target) + 1
    assert metrics["test/exact"] == pytest.approx(exact / 64, abs=1e-6)
    assert metrics["test/token_acc"] == pytest.approx(right / positions, abs=1e-6)
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


@pytest.mark.parametrize("decoded,target,exact,right", [
    ("ab|", "ab|", True, 3),     # perfect row: the characters and the EOS
    ("ab|c", "ab|", False, 3),   # a token after the EOS: every target position right, but not exact
    ("abc|", "ab|", False, 2),   # one character too many: the EOS position reads "c"
    ("a|", "abc|", False, 1),    # early EOS: position 1 is wrong, positions 2 and 3 read padding
    ("abd", "abc|", False, 2),   # cut at max_length without an EOS
    ("|", "|", True, 1),         # the empty target
    ("ba|", "ab|", False, 1),    # right length, wrong order: only the EOS is right
])
def test_exact_match_and_token_accuracy_of_hand_made_rows(decoded, target, exact, right):
    from rnnexp.models.tasks.seq2seq import decoded_scores

    vocab = ["<pad>", BOS, EOS, *"abcd"]
    ids = lambda text: [vocab.index(EOS) if c == "|" else vocab.index(c) for c in text]  # noqa: E731
    # Each hand-made row sits in a batch with a longer row, so padding of both kinds is exercised.
    tokens = [ids(decoded), ids("dddd|")]
    targets = [ids(target), ids("dddd|")]
    width_t, width_u = max(map(len, tokens)), max(map(len, targets))
    tokens = torch.tensor([row + [PAD_INDEX] * (width_t - len(row)) for row in tokens])
    targets = torch.tensor([row + [IGNORE_INDEX] * (width_u - len(row)) for row in targets])
    got_exact, got_right, valid = decoded_scores(tokens, targets)
    assert got_exact.tolist() == [exact, True]
    assert got_right.tolist() == [right, 5] and valid.tolist() == [len(target), 5]


def test_teacher_forcing_moves_to_its_end_and_decoded_examples_are_logged(tmp_path, caplog):
    """teacher_forcing -> teacher_forcing_end linearly over the epochs, read at each epoch's start of
    a real Trainer run; the decoded examples of each validation go to the console and to a logger
    that shows text (a Lightning Logger with ``log_text``, as WandbLogger has)."""
    import logging

    import pytorch_lightning as pl
    from pytorch_lightning.loggers.logger import Logger

    from rnnexp.models.tasks.seq2seq import Seq2Seq

    class TextLogger(Logger):
        name, version = "text", 0

        def __init__(self):
            super().__init__()
            self.texts = []

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def log_text(self, key, columns, data, step=None):
            self.texts.append((key, columns, data, step))

    class Ratios(pl.Callback):
        def __init__(self):
            self.seen = []

        def on_train_epoch_start(self, trainer, module):
            self.seen.append(module.teacher_forcing_ratio())

    dm = Seq2SeqToyDataModule("reverse", num_train=200, num_val=16, num_test=16, max_length=3, batch_size=32)
    torch.manual_seed(0)
    model = Seq2Seq(**dm.spec().model_kwargs(), cell="gru", hidden_size=16, teacher_forcing=0.9,
                    teacher_forcing_end=0.1, num_examples=2,
                    optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01})
    assert model.teacher_forcing_ratio() == 0.9  # no trainer yet: the start value
    ratios, logger = Ratios(), TextLogger()
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=logger, callbacks=[ratios], enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, max_epochs=5, limit_train_batches=2,
                         num_sanity_val_steps=0)
    with caplog.at_level(logging.INFO, logger="rnnexp.models.tasks.seq2seq"):
        trainer.fit(model, datamodule=dm)
    assert ratios.seen == pytest.approx([0.9, 0.7, 0.5, 0.3, 0.1])

    first_batch = next(iter(dm.val_dataloader()))
    sources = [dm.vocab.decode(row[:n]) for row, n in zip(first_batch["inputs"], first_batch["lengths"])][:2]
    assert [key for key, *_ in logger.texts] == ["decoded"] * 5
    for epoch, (_, columns, data, step) in enumerate(logger.texts):
        assert columns == ["epoch", "source", "target", "output"] and step == 2 * (epoch + 1)
        assert [row[:3] for row in data] == [[epoch, s, s[::-1]] for s in sources]
    final = [row[3] for row in logger.texts[-1][2]]
    assert final == model.translate(first_batch["inputs"][:2], first_batch["lengths"][:2])
    console = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Decoded after epoch")]
    assert len(console) == 5
    assert console[-1].splitlines()[1].strip() == f"{sources[0]!r} -> {final[0]!r} (target {sources[0][::-1]!r})"
