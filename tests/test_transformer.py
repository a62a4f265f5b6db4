"""The transformer baseline: causality, padding, windows, tied weights, the preset's size and
schedule, bad keys, and a tiny run whose checkpoint loads weights_only and generates."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from hydra.utils import instantiate

from rnnexp.batch import IGNORE_INDEX, PAD_INDEX
from rnnexp.runtime.cli import describe
from rnnexp.data.vocab import Vocab
from rnnexp.errors import ConfigError
from rnnexp.models.nets.transformer import TransformerLMNet
from rnnexp.models.tasks import TASKS
from rnnexp.models.tasks.networks import TRANSFORMER_KEYS
from rnnexp.models.tasks.transformer_lm import TransformerLM
from rnnexp.sampling import generate
from rnnexp.train import build, run
from tests.helpers import CONF, compose_config, lr_trace
from tests.helpers.tweets import write_tweets

ADAMW = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3, "weight_decay": 0.1}
VOCAB = 95  # the tweets' vocabulary with the default split (docs/tweets.md)


def net(positions="learned", context=16, **kwargs) -> TransformerLMNet:
    torch.manual_seed(0)
    settings = dict(d_model=16, num_heads=2, num_layers=2, ff_size=32, dropout=0.0, positions=positions, context=context)
    settings.update(kwargs)
    return TransformerLMNet(11, 11, **settings).eval()


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_changing_a_later_token_changes_no_earlier_logits(positions):
    model = net(positions)
    tokens = torch.randint(1, 11, (3, 12))
    with torch.no_grad():
        before = model(tokens)[0]
        for t in range(11):
            changed = tokens.clone()
            changed[:, t + 1] = changed[:, t + 1] % 10 + 1  # another token at t + 1
            after = model(changed)[0]
            assert torch.allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-5), t
            assert not torch.allclose(after[:, t + 1], before[:, t + 1])  # the change is seen from t + 1 on


def test_padding_changes_no_valid_logit_and_the_loss_is_the_mean_over_valid_tokens():
    model = TransformerLM(input_size=11, num_classes=11, optimizer=ADAMW, d_model=16, num_heads=2, num_layers=1,
                          ff_size=32, dropout=0.0, context=16).eval()
    inputs = torch.randint(1, 11, (2, 8))
    lengths = torch.tensor([8, 5])
    inputs[1, 5:] = PAD_INDEX
    targets = torch.randint(1, 11, (2, 8))
    targets[1, 5:] = IGNORE_INDEX
    other = inputs.clone()
    other[1, 5:] = 7  # garbage where the padding is
    with torch.no_grad():
        logits = model(inputs, lengths)[0]
        assert torch.allclose(model(other, lengths)[0][1, :5], logits[1, :5], atol=1e-5)
        total, weight, _ = model._sums_of(logits, {"targets": targets})
    by_hand = [-torch.log_softmax(logits[b, t], -1)[targets[b, t]] for b in range(2) for t in range(int(lengths[b]))]
    assert weight == 13 and torch.isclose(total / weight, torch.stack(by_hand).mean(), atol=1e-6)


def test_the_generation_state_gives_the_logits_of_one_pass():
    """Reading 5 tokens, then one at a time with the returned state, equals one pass over all of them;
    past the context the window slides (the last `context` tokens, from position 0)."""
    model = net(context=8)
    tokens = torch.randint(1, 11, (2, 12))
    with torch.no_grad():
        whole = model(tokens[:, :8])[0]
        logits, state = model(tokens[:, :5])
        steps = [logits]
        for t in range(5, 12):
            logits, state = model(tokens[:, t: t + 1], None, state)
            steps.append(logits)
            assert state[0].shape == (1, 2, min(t + 1, 7))
        stepped = torch.cat(steps, 1)
        assert torch.allclose(stepped[:, :8], whole, atol=1e-5)
        assert torch.allclose(stepped[:, 11], model(tokens[:, 4:12])[0][:, -1], atol=1e-5)


def test_sequences_longer_than_the_context_are_read_with_a_sliding_window():
    """The first `context` tokens from scratch, then `eval_stride` at a time after the tokens before
    them (tests/test_transformer_context.py checks every token against a brute-force reference)."""
    model = net(context=4, eval_stride=2)
    tokens = torch.randint(1, 11, (2, 10))
    with torch.no_grad():
        logits = model(tokens)[0]
        pieces = [model(tokens[:, :4])[0]] + [model(tokens[:, i - 2: i + 2])[0][:, -2:] for i in (4, 6, 8)]
    assert logits.shape == (2, 10, 11) and torch.allclose(logits, torch.cat(pieces, 1), atol=1e-5)


def test_tied_weights_share_storage_and_untied_do_not():
    tied, untied = net(tie_weights=True), net(tie_weights=False)
    assert tied.head.weight is tied.embedding.weight
    assert tied.head.weight.data_ptr() == tied.embedding.weight.data_ptr()
    assert untied.head.weight.data_ptr() != untied.embedding.weight.data_ptr()
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert size(untied) - size(tied) == 11 * 16
    with pytest.raises(ConfigError, match="tie_weights"):
        TransformerLMNet(11, 7, d_model=16, num_heads=2, tie_weights=True)


def _preset_model(experiment: str):
    cfg = compose_config([f"experiment={experiment}"])
    return instantiate(cfg.model, input_size=VOCAB, num_classes=VOCAB, input_kind="tokens", target_kind="next_token")


def test_the_preset_matches_tweets_lstm_large_in_parameters():
    model = _preset_model("tweets_transformer")
    d, ff, layers, context, v = 216, 648, 4, 128, VOCAB
    per_layer = (4 * d * d + 4 * d) + (2 * d * ff + ff + d) + 2 * 2 * d  # attention, feed-forward, two LayerNorms
    by_hand = layers * per_layer + v * d + context * d + 2 * d + v  # + embedding (tied head), positions, final norm, head bias
    count = sum(p.numel() for p in model.parameters())
    assert count == by_hand == 1_925_303  # the preset's header
    lstm = sum(p.numel() for p in _preset_model("tweets_lstm_large").parameters())
    assert lstm == 1_916_575 and abs(count / lstm - 1) < 0.01
    header = (CONF / "experiment" / "tweets_transformer.yaml").read_text()
    assert "1,925,303" in header and "1,916,575" in header


def test_the_preset_warms_up_then_decays_and_spares_norms_from_weight_decay():
    cfg = compose_config(["experiment=tweets_transformer", "schedule.scheduler.total_steps=1000"])
    lrs = lr_trace(cfg.schedule, cfg.optimizer.lr, 1001)
    assert lrs[0] == pytest.approx(1e-5) and lrs[100] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 100 / 200)
    assert lrs[200] == pytest.approx(1e-3) and lrs[1000] == pytest.approx(1e-4)
    assert lrs[600] == pytest.approx(1e-4 + (1e-3 - 1e-4) * (1 + math.cos(math.pi * 400 / 800)) / 2)
    model = TransformerLM(input_size=11, num_classes=11, optimizer=ADAMW, d_model=16, num_heads=2, num_layers=1, ff_size=32)
    decayed, spared = model.configure_optimizers().param_groups
    assert decayed["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"]) and len(decayed["params"]) == 4  # in_proj, out_proj, two linears
    assert any(p is model.net.embedding.weight for p in spared["params"])
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["cell=gru"], "model.cell='gru' is invalid: a recurrent-model setting that model=transformer_lm does not take; drop cell="),
        (["+model.hidden_size=64"], "model.hidden_size=64 is invalid: a recurrent-model setting"),
        (["model.num_heads=3"], "model.num_heads=3 is invalid: must divide d_model=64"),
        (["model.positions=rotary"], "model.positions='rotary' is invalid: choose one of learned, sinusoidal"),
        (["data=mnist"], "model='transformer_lm' is invalid: the data gives one label per sequence: use model=classifier"),
    ],
)
def test_bad_keys_are_config_errors_in_one_line(tmp_path, overrides, message):
    from tests.helpers.data import write_all

    cfg = compose_config(["data=tweets", "model=transformer_lm", *overrides], tmp_path)
    cfg.paths.data_dir = str(write_all(tmp_path / "data"))
    with pytest.raises(Exception) as info:
        build(cfg)
    assert message in describe(info.value), describe(info.value)


def test_an_rnn_key_without_plus_is_not_a_config_key(tmp_path):
    from rnnexp.runtime.cli import describe as one_line

    with pytest.raises(Exception) as info:
        compose_config(["model=transformer_lm", "model.hidden_size=64"])
    assert one_line(info.value).startswith("model.hidden_size is not a config key")


def test_the_yaml_names_exactly_the_network_keys_and_the_task_is_registered():
    own = yaml.safe_load((CONF / "model" / "transformer_lm.yaml").read_text())["model"]
    assert set(own) - {"_target_", "_recursive_", "optimizer", "scheduler"} == set(TRANSFORMER_KEYS)
    assert TASKS["transformer_lm"] is TransformerLM
    assert "cell" not in compose_config(["model=transformer_lm"]).model


def test_a_tiny_run_logs_bpc_and_its_checkpoint_loads_weights_only_and_generates(tmp_path):
    write_tweets(tmp_path / "data")
    cfg = compose_config(
        ["data=tweets", "model=transformer_lm", "optimizer=adamw", "schedule=cosine", "schedule.scheduler.warmup_steps=2",
         "callbacks=lm", "callbacks.samples.length=12", "callbacks.samples.print_samples=false",
         "data.batch_size=8", "data.num_steps=16", "model.context=16", "model.d_model=16", "model.num_layers=1",
         "trainer.max_epochs=1", "+trainer.limit_train_batches=4", "+trainer.limit_val_batches=2",
         "+trainer.limit_test_batches=2"],
        tmp_path,
    )
    cfg.paths.data_dir = str(tmp_path / "data")
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2)) and metrics["test/bpc"] > 0
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["rnnexp_task"] == "transformer_lm"
    assert (tmp_path / "samples" / "epoch_000.txt").read_text().count("\nHillary") == 1
    from rnnexp.generate import main

    texts = main([f"ckpt_path={ckpt}", "prime=great ", "length=20", "num_samples=2"])
    assert len(texts) == 2 and all(t.startswith("great ") and len(t) == 26 for t in texts)
    model = TransformerLM.load_from_checkpoint(ckpt)  # torch's default weights_only path
    vocab = Vocab(model.hparams.vocab)
    # Primes of different lengths are generated one by one (the window states cannot be stacked).
    out = generate(model.net, vocab, ["a", "great"], 5, 1.0, 1)
    assert [len(t) for t in out] == [6, 10]


def test_attention_dropout_is_its_own_key_in_every_layer():
    model = net(dropout=0.3, attention_dropout=0.2)
    assert [layer.self_attn.dropout for layer in model.layers.layers] == [0.2, 0.2]
    assert [layer.dropout1.p for layer in model.layers.layers] == [0.3, 0.3] and model.dropout.p == 0.3
    with pytest.raises(ConfigError, match="attention_dropout"):
        net(attention_dropout=1.0)
