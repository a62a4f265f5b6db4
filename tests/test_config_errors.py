"""Optimizer and schedule settings of the wrong type are named by their key."""

import pytest

from rnnexp.runtime.cli import describe
from rnnexp.train import build
from tests.helpers import compose_config


@pytest.mark.parametrize(
    "override,expected",
    [
        ("optimizer.lr=abc", "optimizer.lr='abc' is invalid: must be a number (the default of torch.optim.Adam is 0.001)"),
        ("optimizer.lr=", "optimizer.lr='' is invalid: must be a number"),
        ("optimizer.momentum=fast", "optimizer.momentum='fast' is invalid: must be a number"),
    ],
)
def test_a_mistyped_optimizer_setting_is_named(tmp_path, override, expected):
    overrides = [override] + (["optimizer=sgd"] if "momentum" in override else [])
    _, model, _ = build(compose_config(overrides, tmp_path))
    with pytest.raises(Exception) as caught:
        model.configure_optimizers()
    assert expected in describe(caught.value)


def test_a_mistyped_schedule_setting_is_named(tmp_path):
    _, model, _ = build(compose_config(["schedule=step", "schedule.scheduler.gamma=half"], tmp_path))
    with pytest.raises(Exception) as caught:
        model.configure_optimizers()
    assert "schedule.scheduler.gamma='half' is invalid: must be a number" in describe(caught.value)


def test_an_out_of_range_value_keeps_torchs_own_words(tmp_path):
    _, model, _ = build(compose_config(["optimizer.lr=-1"], tmp_path))
    with pytest.raises(Exception) as caught:
        model.configure_optimizers()
    assert describe(caught.value).startswith("optimizer: Invalid learning rate: -1 (in torch.optim.Adam)")
