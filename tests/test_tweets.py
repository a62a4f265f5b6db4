"""The tweets char-LM: data format and errors, stream and bucket batching, the model, sampling, generate."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnexp.data.samplers import BucketBatches
from rnnexp.data.stream_windows import StreamWindows
from rnnexp.data.tweets import TweetsDataModule, read_documents
from rnnexp.data.vocab import UNK, Vocab
from rnnexp.errors import ConfigError, DataError, UserError
from rnnexp.models.tasks.language_model import LanguageModel
from rnnexp.sampling import generate, next_token_distribution
from rnnexp.train import run
from tests.helpers import SHARED_DATA, compose_config, run_cli
from tests.helpers.tweets import make_tweets, write_tweets

REAL = SHARED_DATA / "tweets" / "trump_tweets.txt"


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_tweets(tmp_path / "data")


def datamodule(path: Path, **kwargs) -> TweetsDataModule:
    dm = TweetsDataModule(path=str(path), download=False, **kwargs)
    dm.setup()
    return dm


def padding(batches, lengths) -> float:
    valid = sum(int(lengths[i]) for b in batches for i in b)
    return 1 - valid / sum(len(b) * max(int(lengths[i]) for i in b) for b in batches)


# -- data ------------------------------------------------------------------------------------------

def test_reads_cs20_format_and_keeps_every_character(corpus):
    docs = read_documents(corpus)
    assert docs == make_tweets()
    dm = datamodule(corpus, min_count=2)
    assert len(dm.splits["train"]) + len(dm.splits["val"]) + len(dm.splits["test"]) == 300
    assert len(dm.splits["val"]) == len(dm.splits["test"]) == 15
    vocab = Vocab(dm.spec().model_kwargs()["vocab"])
    assert vocab.tokens[:2] == ["<pad>", UNK]
    for ch in "!&_@#\n":  # CS20's vocabulary silently dropped '!' and '&'
        assert ch in vocab.index
    assert "é" not in vocab.index  # seen once, below min_count=2
    assert vocab.ids("é!") == [vocab.unk_index, vocab.index["!"]]


def test_split_is_seeded_and_by_document(corpus):
    a, b = datamodule(corpus), datamodule(corpus)
    c = datamodule(corpus, split_seed=1)
    assert [x.tolist() for x in a.splits["val"]] == [x.tolist() for x in b.splits["val"]]
    assert [x.tolist() for x in a.splits["val"]] != [x.tolist() for x in c.splits["val"]]


def test_every_copy_of_a_tweet_goes_to_one_split():
    from rnnexp.data.tweets import split_documents

    documents = [f"tweet {i % 40}" for i in range(100)]  # 40 texts, 20 of them three times, 20 twice
    train, val, test = split_documents(documents, 0.1, 0.1, seed=0)
    assert sorted(train + val + test) == sorted(documents)  # nothing dropped
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert len(set(val)) == len(set(test)) == 4  # the fractions count distinct texts


@pytest.mark.shared_data("tweets/trump_tweets.txt")
def test_the_real_file_has_no_training_tweet_in_val_or_test():
    from rnnexp.data.tweets import read_documents, split_documents

    documents = read_documents(REAL)
    train, val, test = split_documents(documents, 0.05, 0.05, seed=0)
    assert (len(documents), len(set(documents))) == (19469, 19170)
    assert (len(train), len(val), len(test)) == (17533, 964, 972)  # 958 distinct texts each in val and test
    assert not set(train) & (set(val) | set(test))


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"", "is empty"),
        (b"\n  \n", "is empty"),
        (b"abc\x00\x01\x02 _E_\n", "binary"),
        (b"good line _E_\nbad \xff\xfe line _E_\n", "line 2"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, payload, message):
    path = tmp_path / "trump_tweets.txt"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=message) as info:
        datamodule(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_without_network_says_where_to_put_it(tmp_path):
    dm = TweetsDataModule(data_dir=str(tmp_path / "none"), url="http://127.0.0.1:9/trump_tweets.txt",
                          download_timeout=2)
    with pytest.raises(DataError, match="download .* failed.*put trump_tweets.txt in"):
        dm.setup()
    with pytest.raises(DataError, match="data.download=false"):
        TweetsDataModule(data_dir=str(tmp_path / "none"), download=False).setup()
    with pytest.raises(DataError, match="no such file"):
        TweetsDataModule(path=str(tmp_path / "nope.txt")).setup()


@pytest.mark.parametrize("key,value", [("batching", "words"), ("bucketing", "yes"), ("num_steps", 0),
                                       ("val_fraction", 0.6)])
def test_bad_options_are_config_errors(corpus, key, value):
    kwargs = {"test_fraction": 0.5} if key == "val_fraction" else {}
    with pytest.raises(ConfigError, match=key):
        TweetsDataModule(path=str(corpus), **{key: value}, **kwargs)


# -- stream batching -------------------------------------------------------------------------------

def stream_batches(dm, epoch=0):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_stream_rows_continue_each_other_and_cover_the_text_once(corpus):
    dm = datamodule(corpus, batching="stream", batch_size=4, num_steps=7)
    batches = stream_batches(dm)
    dataset = dm.train_dataloader().dataset
    for prev, nxt in zip(batches, batches[1:]):
        # Row i of batch k+1 starts where row i of batch k ended.
        assert torch.equal(nxt["inputs"][:, 0], prev["targets"][:, -1])
    assert all(b["inputs"].shape[0] == 4 and b["carry_state"] for b in batches)
    rows = torch.cat([b["inputs"] for b in batches], dim=1)  # [4, L]
    targets = torch.cat([b["targets"] for b in batches], dim=1)
    assert torch.equal(rows[:, 1:], targets[:, :-1])
    text = torch.from_numpy(dataset.text(0))
    length = rows.shape[1]
    # Row-major, the streams are the epoch's text: every character once, fewer than 4 left over.
    assert torch.equal(rows.reshape(-1), text[: 4 * length])
    assert len(text) - 1 - 4 * length < 4
    assert Counter(text.tolist()) == Counter(np.concatenate(dm.splits["train"]).tolist())


def test_stream_epochs_reshuffle_documents_and_repeat_with_the_seed(corpus):
    dm = datamodule(corpus, batching="stream", batch_size=4, num_steps=7)
    e0, e1 = stream_batches(dm, 0), stream_batches(dm, 1)
    again = stream_batches(datamodule(corpus, batching="stream", batch_size=4, num_steps=7), 1)
    assert not torch.equal(e0[0]["inputs"], e1[0]["inputs"])
    assert all(torch.equal(a["inputs"], b["inputs"]) for a, b in zip(e1, again))


def test_stream_ranks_take_disjoint_streams_of_the_same_text(corpus):
    docs = datamodule(corpus).splits["train"]
    whole = StreamWindows(docs, rows=4, num_steps=5)
    ranks = [StreamWindows(docs, rows=2, num_steps=5, num_replicas=2, rank=r) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)
    assert np.array_equal(np.concatenate([r.streams(0) for r in ranks]), whole.streams(0))


# -- tweets batching -------------------------------------------------------------------------------

def test_bucket_sampler_covers_every_sample_once_also_over_two_ranks():
    lengths = torch.randint(1, 140, (1003,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = BucketBatches(lengths, 32, pool=5, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(1003))
        assert max(len(b) for b in batches) <= 32 and len(batches) == len(sampler)
    ranks = [BucketBatches(lengths, 32, pool=5, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    shares = [[i for b in r for i in b] for r in ranks]
    assert len(list(ranks[0])) == len(list(ranks[1]))
    assert not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == list(range(1003))


@pytest.mark.parametrize("size,batch,ranks", [(5, 1, 2), (3, 1, 2), (7, 2, 3), (2, 1, 2), (7, 1, 4)])
def test_bucket_sampler_never_yields_an_empty_batch(size, batch, ranks):
    samplers = [BucketBatches(list(range(1, size + 1)), batch, num_replicas=ranks, rank=r) for r in range(ranks)]
    batches = [list(s) for s in samplers]
    assert all(len(b) == len(s) for b, s in zip(batches, samplers))  # equal steps on every rank
    assert all(1 <= len(one) <= batch for rank in batches for one in rank)
    assert set(i for rank in batches for one in rank for i in one) == set(range(size))


def test_bucket_sampler_is_seeded_per_epoch():
    lengths = list(range(1, 500))
    a, b = BucketBatches(lengths, 16, seed=1), BucketBatches(lengths, 16, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)


def test_bucketing_pads_less_than_random_batches(corpus):
    dm = datamodule(corpus, batching="tweets", batch_size=8, pool_batches=10)
    lengths = [len(x) for x in dm.splits["train"]]
    bucket = padding(list(dm.tweet_batches("train", 8, "bucket", True)), lengths)
    random = padding(list(dm.tweet_batches("train", 8, "random", True)), lengths)
    assert bucket < random / 4


def test_tweet_batches_are_shifted_sequences_from_the_end_of_document_symbol(corpus):
    dm = datamodule(corpus, batching="tweets", batch_size=8)
    batch = next(iter(dm.train_dataloader()))
    newline = dm.vocab.index["\n"]
    assert (batch["inputs"][:, 0] == newline).all()
    for row, length in enumerate(batch["lengths"].tolist()):
        assert torch.equal(batch["inputs"][row, 1:length], batch["targets"][row, : length - 1])
        assert int(batch["targets"][row, length - 1]) == newline
        assert (batch["targets"][row, length:] == -100).all()


@pytest.mark.shared_data("tweets/trump_tweets.txt")
def test_real_file_padding_random_vs_bucket():
    dm = datamodule(REAL, batching="tweets")
    assert sum(map(len, dm.splits.values())) == 19469
    assert {"!", "&", "—"} <= set(dm.vocab.tokens)
    lengths = [len(x) for x in dm.splits["train"]]
    random = padding(list(dm.tweet_batches("train", 64, "random", True)), lengths)
    bucket = padding(list(dm.tweet_batches("train", 64, "bucket", True)), lengths)
    assert random > 0.35 and bucket <= 0.02


# -- the model ---------------------------------------------------------------------------------------

def lm(vocab_size=20, **kwargs) -> LanguageModel:
    defaults = dict(input_size=vocab_size, num_classes=vocab_size, cell="gru", hidden_size=16,
                    optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01})
    return LanguageModel(**{**defaults, **kwargs})


def test_tie_weights_shares_the_matrix_and_checks_sizes():
    model = lm(encoder="embedding", embedding_dim=16, tie_weights=True)
    assert model.net.head.proj.weight is model.net.encoder.embedding.weight
    with pytest.raises(ConfigError, match="embedding_dim .*8.* last hidden size .*16"):
        lm(encoder="embedding", embedding_dim=8, tie_weights=True)
    with pytest.raises(ConfigError, match="encoder=embedding"):
        lm(tie_weights=True)
    with pytest.raises(ConfigError, match="left to right"):
        lm(bidirectional=True)


def test_carried_state_over_windows_equals_one_pass_over_the_streams(corpus):
    """Validation over stream windows with the carried state scores exactly what one pass over
    the whole streams scores: contiguity and state carrying are both right."""
    torch.manual_seed(0)
    dm = datamodule(corpus, batching="stream", batch_size=3, num_steps=40)
    model = lm(len(dm.vocab), cell="lstm", hidden_sizes=[12, 16]).eval()
    loader = dm.val_dataloader()
    model.on_validation_epoch_start()
    with torch.no_grad():
        for batch in loader:
            model._step(batch, "val")
        streams = torch.from_numpy(loader.dataset.streams(0))
        logits, _ = model(streams[:, :-1])
    windowed = model.sums.pop("val")[0].float()
    whole = F.cross_entropy(logits.transpose(1, 2), streams[:, 1:], reduction="sum")
    assert torch.allclose(windowed, whole, rtol=1e-5)
    assert all(not t.requires_grad for t in model._states["val"][0])
    model.on_validation_epoch_start()
    assert model._states["val"] is None


# -- sampling ------------------------------------------------------------------------------------

def test_temperature_and_top_k():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert torch.allclose(next_token_distribution(logits, 0.5), torch.softmax(logits / 0.5, -1))
    top2 = next_token_distribution(logits, 1.0, top_k=2)
    assert torch.allclose(top2[0, :2], torch.softmax(logits[0, :2], -1)) and (top2[0, 2:] == 0).all()


def test_generate_runs_one_forward_per_character_and_is_seeded():
    vocab = Vocab.build(["abc d"], unk=True)
    net = lm(len(vocab)).net
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    gen = lambda seed: generate(net, vocab, ["ab", "c"], 30, 0.8, None, torch.Generator().manual_seed(seed))  # noqa
    a = gen(0)
    assert calls[:2] == [torch.Size([1, 2]), torch.Size([1, 1])]  # each prime once
    assert calls[2:] == [torch.Size([2, 1])] * 29  # then one character per call, both rows together
    assert a == gen(0) and a != gen(1)
    assert a[0].startswith("ab") and len(a[0]) == 32 and "<pad>" not in a[0] and UNK not in a[0]
    greedy = generate(net, vocab, ["ab"], 10, 1.0, 1)
    assert greedy == generate(net, vocab, ["ab"], 10, 1.0, 1)


# -- end to end ------------------------------------------------------------------------------------

@pytest.mark.parametrize("batching", ["stream", "tweets"])
def test_training_run_logs_bpc_writes_samples_and_loads_weights_only(tmp_path, batching):
    write_tweets(tmp_path / "data")
    cfg = compose_config(
        ["data=tweets", "model=lm", "callbacks=lm", "logger=csv", "schedule=exponential", "schedule.scheduler.gamma=0.5",
         f"data.batching={batching}", "data.batch_size=8", "data.num_steps=20", "model.hidden_size=24",
         "trainer.max_epochs=2", "+trainer.limit_train_batches=4", "callbacks.samples.length=30",
         "callbacks.samples.print_samples=false", "trainer.gradient_clip_val=0.5"],
        tmp_path,
    )
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/bpc"] == pytest.approx(metrics["val/bpt"]) and metrics["test/bpc"] > 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.5**8)  # stepped 8 times
    sample = (tmp_path / "samples" / "epoch_001.txt").read_text()
    assert "\nHillary" in sample and "\n@" in sample
    model = LanguageModel.load_from_checkpoint(ckpt)  # torch's default weights_only path
    assert model.hparams.vocab[1] == UNK and "!" in model.hparams.vocab
    result = run_cli("ckpt_path=" + str(ckpt), "prime=great !", "length=15", "num_samples=2", "top_k=3",
                     cwd=tmp_path, module="rnnexp.generate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\ngreat !") + result.stdout.startswith("great !") == 2


def test_generate_errors_are_one_line(tmp_path):
    from rnnexp.runtime.cli import describe
    from rnnexp.generate import main

    bad = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"input_size": 3}}, bad)
    for args, message in [
        (["ckpt_path=" + str(tmp_path / "none.ckpt")], "no such checkpoint file"),
        (["ckpt_path=" + str(bad), "temperature=-1"], "temperature"),
        (["checkpoint=x"], "unknown argument"),
    ]:
        with pytest.raises(UserError) as info:
            main(args)
        assert message in describe(info.value)
    result = run_cli("ckpt_path=" + str(bad), cwd=tmp_path, module="rnnexp.generate")
    assert result.returncode == 2 and result.stderr.startswith("error:"), result.stderr
    assert "not a language-model checkpoint" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_vocab_without_unknown_symbol_lists_missing_prime_characters():
    from rnnexp.sampling import prime_ids

    with pytest.raises(UserError, match="'x', 'z'"):
        prime_ids(Vocab.build(["abc"]), "axbz")


def test_stream_order_resumes_after_the_windows_already_trained():
    from rnnexp.data.samplers import StreamOrder

    order = StreamOrder(5, skip=2)
    order.set_epoch(3)
    assert list(order) == [(3, 2), (3, 3), (3, 4)]
    assert [k for _, k in order] == [0, 1, 2, 3, 4]  # the next epoch is whole again


def test_greedy_generation_writes_the_argmax_of_one_pass_over_its_own_text():
    """top_k=1, step by step with the carried state, picks at every step the most likely allowed
    character of a single forward pass over the whole text (prime and continuation)."""
    torch.manual_seed(0)
    vocab = Vocab.build(["abcdefgh \n"], unk=True)
    net = lm(len(vocab), cell="lstm", hidden_sizes=[24, 16]).net.eval()
    with torch.no_grad():  # larger weights: the argmax then depends on the carried state, not on the bias alone
        for parameter in net.parameters():
            parameter.mul_(4)
    banned = [vocab.index["<pad>"], vocab.unk_index]
    for text in generate(net, vocab, ["ab", "c d"], 12, 1.0, 1):
        prime = "ab" if text.startswith("ab") else "c d"
        ids = vocab.ids("\n" + text)
        with torch.no_grad():
            logits = net(torch.tensor([ids[:-1]]), None, None)[0][0]
        logits[:, banned] = float("-inf")
        first = len(prime)  # logits[first] predicts the first generated character
        assert ids[first + 1 :] == logits[first:].argmax(-1).tolist()
        assert len(text) == len(prime) + 12 and len(set(text[len(prime):])) > 1


def test_sample_files_have_the_header_and_the_seeded_samples_of_the_configured_length(tmp_path, corpus):
    from rnnexp.callbacks.samples import SampleText
    import pytorch_lightning as pl

    dm = TweetsDataModule(path=str(corpus), download=False, batch_size=8, num_steps=20)
    model = lm(**dm.spec().model_kwargs())
    callback = SampleText(seeds=["great", "@", "é"], length=25, temperature=0.8, dirpath=str(tmp_path / "s"),
                          seed=7, print_samples=False)
    trainer = pl.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, callbacks=[callback])
    trainer.fit(model, datamodule=dm)
    text = (tmp_path / "s" / "epoch_001.txt").read_text(encoding="utf-8")
    header, body = text.split("\n", 1)
    assert header == f"# epoch 1, step {trainer.global_step}, temperature 0.8, top_k None" and trainer.global_step == 4
    # The callback draws from its own generator seeded with seed + epoch, from the weights after epoch 1.
    expected = generate(model.net, Vocab(dm.spec().model_kwargs()["vocab"]), ["great", "@", "é"], 25, 0.8, None,
                        torch.Generator().manual_seed(7 + 1))
    assert body == "\n\n".join(expected) + "\n"
    assert [len(s) for s in expected] == [5 + 25, 1 + 25, 1 + 25]
    assert [s[: len(p)] for s, p in zip(expected, ["great", "@", "é"])] == ["great", "@", "é"]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["epoch_000.txt", "epoch_001.txt"]
