"""The transformer LM is scored with context across windows (validation, test and dynamic
evaluation), checked against a brute-force reference that scores every character with its full
available preceding context up to the window (``context - 1`` characters), one pass per character."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rnnexp.batch import IGNORE_INDEX
from rnnexp.errors import ConfigError
from rnnexp.models.dynamic_eval import Updater, run_stream
from rnnexp.models.nets.transformer import TransformerLMNet
from rnnexp.train import build
from tests.helpers import compose_config
from tests.helpers.tweets import write_tweets


def net(context=8, eval_stride=1, vocab=11) -> TransformerLMNet:
    torch.manual_seed(0)
    return TransformerLMNet(vocab, vocab, d_model=16, num_heads=2, num_layers=2, ff_size=32, dropout=0.0,
                            context=context, eval_stride=eval_stride).eval()


def brute_force(model: TransformerLMNet, stream: torch.Tensor, preceding: int) -> torch.Tensor:
    """[B, N, V]: the logits of each position read after at most ``preceding`` tokens before it,
    one pass from position 0 per position."""
    out = []
    for i in range(stream.shape[1]):
        out.append(model._read(stream[:, max(i - preceding, 0) : i + 1])[:, -1])
    return torch.stack(out, 1)


def windows_read(model, stream, size):
    """The stream read as evaluation reads it: consecutive windows, the state carried."""
    state, logits = None, []
    for start in range(0, stream.shape[1], size):
        out, state = model(stream[:, start : start + size], None, state)
        logits.append(out)
    return torch.cat(logits, 1)


@pytest.mark.parametrize("size", [8, 5, 3])
def test_windows_with_carried_context_score_each_token_after_its_full_context(size):
    """eval_stride=1: every token after min(its position, context - 1) preceding tokens, whatever
    the window size; without the state, each window would start from nothing."""
    model = net(context=8, eval_stride=1)
    stream = torch.randint(1, 11, (2, 27))
    with torch.no_grad():
        got = windows_read(model, stream, size)
        assert torch.allclose(got, brute_force(model, stream, 7), atol=1e-5)
        scratch = torch.cat([model(stream[:, s : s + size])[0] for s in range(0, 27, size)], 1)
    assert not torch.allclose(scratch[:, size:], got[:, size:], atol=1e-3)  # the context changes the scores


@pytest.mark.parametrize("stride", [2, 3, 4, 8])
def test_each_token_sees_at_least_context_minus_stride_tokens(stride):
    """With eval_stride=s a token is read after between min(i, context - s) and min(i, context - 1)
    preceding tokens: its logits equal the brute-force ones for some such count."""
    model = net(context=8, eval_stride=stride)
    stream = torch.randint(1, 11, (1, 30))
    with torch.no_grad():
        got = windows_read(model, stream, 8)[0]
        refs = {k: brute_force(model, stream, k)[0] for k in range(8)}
    for i in range(30):
        counts = [k for k in range(min(i, 8 - stride), min(i, 7) + 1)
                  if torch.allclose(got[i], refs[k][i], atol=1e-5)]
        assert counts, i


def test_long_sequences_without_a_state_are_read_with_context_past_the_first_window():
    model = net(context=4, eval_stride=1)
    tokens = torch.randint(1, 11, (2, 10))
    with torch.no_grad():
        assert torch.allclose(model(tokens)[0], brute_force(model, tokens, 3), atol=1e-5)


def test_eval_stride_is_checked():
    with pytest.raises(ConfigError, match="eval_stride"):
        net(context=8, eval_stride=9)
    with pytest.raises(ConfigError, match="eval_stride"):
        net(context=8, eval_stride=0)
    assert net(context=8, eval_stride=None).eval_stride == 4  # the default: context // 2


def _stream_run(tmp_path, *extra):
    write_tweets(tmp_path / "data")
    cfg = compose_config(["data=tweets", "model=transformer_lm", "data.batching=stream", "data.batch_size=4",
                          "data.num_steps=12", "model.context=12", "model.d_model=16", "model.num_layers=1",
                          "model.ff_size=32", "model.eval_stride=1", "model.dropout=0.0", "logger=none",
                          "trainer.enable_progress_bar=false", "+trainer.limit_test_batches=5", *extra], tmp_path)
    cfg.paths.data_dir = str(tmp_path / "data")
    return build(cfg)


def _brute_force_loss(model, batches):
    """Mean nats per character of the streams (rows) of ``batches``, brute force, full context."""
    inputs = torch.cat([b["inputs"] for b in batches], 1)
    targets = torch.cat([b["targets"] for b in batches], 1)
    with torch.no_grad():
        logits = brute_force(model.net, inputs, model.net.context - 1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum") / (targets != IGNORE_INDEX).sum()


def test_trainer_test_and_static_dynamic_evaluation_score_with_context(tmp_path):
    datamodule, model, trainer = _stream_run(tmp_path)
    trainer.test(model, datamodule=datamodule, verbose=False)
    datamodule.setup("test")
    batches = list(datamodule.test_dataloader())[:5]
    assert all(b["carry_state"] for b in batches)
    expected = float(_brute_force_loss(model, batches))
    assert float(trainer.callback_metrics["test/loss"]) == pytest.approx(expected, rel=1e-5)
    # Dynamic evaluation's static pass (no update) carries the same state: the same score.
    assert run_stream(model.net, batches).loss == pytest.approx(expected, rel=1e-5)


def test_dynamic_evaluation_scores_each_window_with_context_before_adapting_to_it(tmp_path):
    datamodule, model, _ = _stream_run(tmp_path)
    datamodule.setup("test")
    batches = list(datamodule.test_dataloader())[:3]
    import copy

    adapted = copy.deepcopy(model.net)
    score = run_stream(adapted, batches, updater=Updater(adapted, "sgd", lr=0.5))
    static = run_stream(model.net, batches)
    assert score.windows[0] == pytest.approx(static.windows[0], rel=1e-6)  # nothing adapted yet
    # Window 2 by hand: the weights after the updates on windows 0 and 1 (replayed on a fresh copy),
    # reading window 2 after its full preceding context.
    replay = copy.deepcopy(model.net)
    run_stream(replay, batches[:2], updater=Updater(replay, "sgd", lr=0.5))
    inputs = torch.cat([b["inputs"] for b in batches], 1)
    targets = batches[2]["targets"]
    with torch.no_grad():
        logits = brute_force(replay, inputs, replay.context - 1)[:, -targets.shape[1]:]
    by_hand = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX)
    assert score.windows[2] == pytest.approx(float(by_hand), rel=1e-5)
    assert score.windows[2] != pytest.approx(static.windows[2], rel=1e-4)  # the updates did something
