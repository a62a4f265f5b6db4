"""model=one_to_many: the label is the input at the first step only; a real run on the MNIST
fixture trains, checkpoints, and writes a grid PNG per validation."""

import json

import pytest
import torch

from rnnexp.models.tasks.one_to_many import OneToManyNet
from rnnexp.train import run
from tests.helpers import compose_config
from tests.helpers.mnist import write_mnist


@pytest.mark.parametrize("rest", ["zeros", "learned"])
def test_the_condition_is_the_input_at_the_first_step_only(rest):
    torch.manual_seed(0)
    net = OneToManyNet(10, 28, 28, condition="onehot", rest=rest, cell="gru", hidden_size=8)
    inputs = net.inputs(torch.tensor([3, 7]))
    assert inputs.shape == (2, 28, 10)
    assert torch.equal(inputs[:, 0], torch.nn.functional.one_hot(torch.tensor([3, 7]), 10).float())
    assert torch.equal(inputs[0, 1:], inputs[1, 1:])  # later steps do not depend on the label
    if rest == "zeros":
        assert torch.all(inputs[:, 1:] == 0)
    out = net(torch.tensor([3, 7]))
    assert out.shape == (2, 28, 28) and not torch.allclose(out[0], out[1])


def test_mnist_generate_rows_learns_each_class_and_writes_the_grid(tmp_path):
    data_dir = tmp_path / "data"
    write_mnist(data_dir)
    cfg = compose_config(["experiment=mnist_generate_rows", "trainer.max_epochs=3", "model.hidden_size=32",
                          "optimizer.lr=0.01", "trainer.enable_progress_bar=false", "data.batch_size=50"], tmp_path)
    cfg.paths.data_dir = str(data_dir)
    run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test/loss"] < 0.3 and metrics["test/acc"] > 0.9  # from 0.69 (chance) at the start
    pngs = sorted((tmp_path / "generated").glob("epoch_*.png"))
    assert [p.name for p in pngs] == ["epoch_000.png", "epoch_001.png", "epoch_002.png"]

    from rnnexp.models.tasks.one_to_many import OneToMany

    model = OneToMany.load_from_checkpoint(next((tmp_path / "checkpoints").glob("last.ckpt")), map_location="cpu")
    images = model.generate(samples=2)
    assert images.shape == (3, 10, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert set(images[1:].unique().tolist()) <= {0.0, 1.0}  # the draws are binary pixels
