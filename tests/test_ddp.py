"""Lightning DDP on CPU (gloo) with 2 processes, through the real CLI."""

import json

import pytest

from tests.helpers import run_cli
from tests.helpers.metrics import only_run_metrics, read_metrics

COMMON = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "model.dropout=0.0"]


def _metrics(cwd):
    return only_run_metrics(cwd / "outputs" / "train" / "runs")


def _run_in(cwd, *args):
    cwd.mkdir(parents=True, exist_ok=True)
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    ddp, single, spawn = tmp_path / "ddp", tmp_path / "single", tmp_path / "spawn"
    _run_in(ddp, "trainer=ddp", "data.batch_size=3", *COMMON)
    _run_in(single, "data.batch_size=6", *COMMON)
    # The strategy the multirun error recommends, in a multirun: ranks are spawned, not re-launched.
    _run_in(spawn, "-m", "trainer=ddp", "trainer.strategy=ddp_spawn", "data.batch_size=3", *COMMON)
    ddp_dir, ddp_metrics = _metrics(ddp)
    _, single_metrics = _metrics(single)
    (spawn_json,) = (spawn / "outputs" / "train" / "multiruns").glob("*/0/metrics.json")
    spawn_metrics = json.loads(spawn_json.read_text())
    for key in ("test/loss", "val/loss", "test/acc"):
        assert ddp_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-5), key
        assert spawn_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-5), key
    assert spawn_metrics["optimized_metric_from"] == single_metrics["optimized_metric_from"]
    assert "test/loss" in (spawn_json.parent / "csv" / "metrics.csv").read_text().splitlines()[0]
    # Both ranks ran in one run directory; checkpoints and metrics come from rank 0 only.
    assert len(list((ddp / "outputs" / "train" / "runs").iterdir())) == 1
    assert (ddp_dir / "train_ddp_process_1.log").exists()
    assert len(list((ddp_dir / "csv").glob("*.csv"))) == 1
    # Rank 1 starts with hydra.output_subdir=null: .hydra/ and config.yaml are rank 0's alone.
    assert sorted(p.name for p in (ddp_dir / ".hydra").iterdir()) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert sorted(p.name for p in ddp_dir.iterdir() if p.is_file()) == [
        "config.yaml", "metrics.json", "train.log", "train_ddp_process_1.log"]


def test_ddp_spawn_on_two_processes_matches_one_process_with_the_same_global_batch(tmp_path):
    """The fast tier's DDP check: two spawned gloo ranks of 2 rows each train to what one process
    with batches of 4 reaches (gradients averaged over the ranks, sharded batches, metrics reduced
    over both ranks), on the toy data, one epoch. The slow tier also runs re-launched ``ddp``."""
    from rnnexp.train import run
    from tests.helpers import compose_config

    short = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "model.dropout=0.0", "logger=none",
             "data.repeat=4"]
    run(compose_config(["trainer=ddp", "trainer.strategy=ddp_spawn", "data.batch_size=2", *short], tmp_path / "spawn"))
    run(compose_config(["data.batch_size=4", *short], tmp_path / "single"))
    run(compose_config(["data.batch_size=2", *short], tmp_path / "other"))
    spawn, single, other = (read_metrics(tmp_path / name) for name in ("spawn", "single", "other"))
    for key in ("val/loss", "test/loss", "test/acc"):
        assert spawn[key] == pytest.approx(single[key], rel=1e-4, abs=1e-5), key
    # One process with the per-rank batch trains to other weights: the comparison can fail.
    assert other["val/loss"] != pytest.approx(single["val/loss"], rel=1e-4, abs=1e-5)


def _tweets_rank(corpus, rank, batching, resumed_after=0):
    """Rank ``rank`` of 2 of a tweets DataModule, as Lightning sets it up (resumed after N batches)."""
    from types import SimpleNamespace

    from rnnexp.data.tweets import TweetsDataModule

    dm = TweetsDataModule(path=str(corpus), download=False, batching=batching, batch_size=4, num_steps=30, seed=3)
    progress = SimpleNamespace(current=SimpleNamespace(processed=resumed_after))
    dm.trainer = SimpleNamespace(world_size=2, global_rank=rank, fit_loop=SimpleNamespace(
        restarting=resumed_after > 0, epoch_loop=SimpleNamespace(batch_progress=progress)))
    dm.setup("fit")
    return dm


def _rows(batch):
    """Each row of a batch as the tuple of its target ids (padding cut off)."""
    return [tuple(t[:n].tolist()) for t, n in zip(batch["targets"], batch["lengths"])]


@pytest.mark.parametrize("resumed_after", [0, 2])
def test_bucketed_tweets_are_seen_once_per_epoch_across_two_ranks(tmp_path, resumed_after):
    from collections import Counter

    from tests.helpers.tweets import write_tweets

    corpus = write_tweets(tmp_path, count=90)
    seen = Counter()
    for rank in range(2):
        loader = _tweets_rank(corpus, rank, "tweets").train_dataloader()
        loader.batch_sampler.sampler.set_epoch(1)
        batches = list(loader)
        if resumed_after:
            # The first batches from the run that was killed, the rest from the resumed one.
            resumed = _tweets_rank(corpus, rank, "tweets", resumed_after).train_dataloader()
            resumed.batch_sampler.sampler.set_epoch(1)
            rest = list(resumed)
            assert len(rest) == len(batches) - resumed_after
            batches = batches[:resumed_after] + rest
        seen.update(row for batch in batches for row in _rows(batch))
    dm = _tweets_rank(corpus, 0, "tweets")
    expected = Counter(tuple(s["targets"].tolist()) for s in dm.tweet_samples("train"))
    assert seen == expected


def test_stream_windows_of_two_ranks_cover_the_epochs_text_once(tmp_path):
    import numpy as np
    import torch

    from tests.helpers.tweets import write_tweets

    corpus = write_tweets(tmp_path, count=90)
    streams = []
    for rank in range(2):
        loader = _tweets_rank(corpus, rank, "stream").train_dataloader()
        loader.sampler.set_epoch(2)
        windows = list(loader)
        assert all(w["carry_state"] for w in windows)
        streams.append(torch.cat([w["inputs"] for w in windows], dim=1))
    assert streams[0].shape == streams[1].shape
    text = _tweets_rank(corpus, 0, "stream").train_dataloader().dataset.text(2)
    together = torch.cat(streams).flatten().numpy()  # rank 0's rows, then rank 1's, each row in order
    assert np.array_equal(together, text[: len(together)])
    assert len(text) - len(together) < 2 * 4 + 1  # only the remainder of the cut into 8 streams is left


TWEETS = ["data=tweets", "data.download=false", "data.min_count=1", "model.hidden_size=16",
          "trainer.enable_progress_bar=false", "+trainer.limit_train_batches=8"]


@pytest.mark.slow
def test_two_process_ddp_language_model_on_streams_matches_one_process(tmp_path):
    """Stream batching under DDP: 2 ranks x 2 streams read what 1 process x 4 streams reads
    (equal tokens per rank, so the averaged gradients are the global batch's), and the epoch
    sums of train, val and test are reduced over both ranks."""
    from tests.helpers.tweets import write_tweets

    data = write_tweets(tmp_path / "data", count=120).parents[1]
    common = ["model=lm", "data.batching=stream", "data.num_steps=20", "trainer.max_epochs=2",
              f"paths.data_dir={data}", *TWEETS]
    _run_in(tmp_path / "ddp", "trainer=ddp", "data.batch_size=2", *common)
    _run_in(tmp_path / "single", "data.batch_size=4", *common)
    _, ddp_metrics = _metrics(tmp_path / "ddp")
    _, single_metrics = _metrics(tmp_path / "single")
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert ddp_metrics[key] == pytest.approx(single_metrics[key], rel=1e-4, abs=1e-5), key


@pytest.mark.slow
def test_two_process_ddp_tagger_on_bucketed_tweets_reports_the_whole_splits(tmp_path):
    """Bucketed tweets under DDP: each rank reads its share of the val and test tweets, and the
    reported val/test metrics (token-weighted sums reduced over the ranks) equal one process
    evaluating the same weights on the whole splits."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from rnnexp.models import SequenceTagger
    from tests.helpers import compose_config
    from tests.helpers.tweets import write_tweets

    data = write_tweets(tmp_path / "data", count=120).parents[1]
    common = ["model=tagger", "data.batching=tweets", "data.batch_size=3", "trainer.max_epochs=1",
              f"paths.data_dir={data}", *TWEETS]
    _run_in(tmp_path / "ddp", "trainer=ddp", *common)
    run_dir, ddp_metrics = _metrics(tmp_path / "ddp")
    (ckpt,) = (run_dir / "checkpoints").glob("epoch*.ckpt")  # one epoch: the best is the last

    cfg = compose_config(common[:-1], tmp_path / "eval")
    cfg.paths.data_dir = str(data)
    model = SequenceTagger.load_from_checkpoint(ckpt)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    (val,) = trainer.validate(model, datamodule=instantiate(cfg.data))
    (test,) = trainer.test(model, datamodule=instantiate(cfg.data))
    for key, value in {**val, **test}.items():
        assert ddp_metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
