"""The README's "RNN types" table: one-to-one is a feed-forward network (the one-step case), and
every model, data set and preset the table names exists."""

import re

import torch

from rnnexp.models import SequenceModel
from tests.helpers import CONF, ROOT


def test_one_to_one_is_a_feed_forward_network():
    """One step from the zero state: logits = W_o tanh(W_ih x + b_ih + b_hh) + b_o, a one-hidden-layer MLP."""
    torch.manual_seed(0)
    net = SequenceModel(5, 3, many_to_one=True, input_kind="features", cell="rnn", hidden_size=4).eval()
    x = torch.randn(6, 1, 5)
    logits, _ = net(x)
    rnn, head = net.backbone.blocks[0], net.head.proj
    hidden = torch.tanh(x[:, 0] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + rnn.bias_hh_l0)
    assert torch.allclose(logits, hidden @ head.weight.T + head.bias, atol=1e-6)


def test_every_option_the_rnn_types_table_names_exists():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## RNN types", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(model|data|experiment|cell)=(\w+)", section)
    assert {group for group, _ in named} == {"model", "data", "experiment", "cell"}
    for group, option in named:
        assert (CONF / group / f"{option}.yaml").is_file(), f"{group}={option}"
