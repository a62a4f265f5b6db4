"""One-to-many: one input, a sequence out (the seed's image captioning; here, a digit drawn from its label).

The conditioning vector (the label, ``condition: onehot`` or ``embedding``) is the input at the
first step only; later steps read zeros (``rest: zeros``) or one learned vector (``rest: learned``).
Each step's output is one row of the image: per-pixel Bernoulli logits (``output: bernoulli``,
binary cross-entropy against pixels scaled to [0, 1]) or Gaussian means (``output: gaussian``,
squared error, unit variance). The network never sees its own rows, so a label gives one image:
the per-pixel probabilities (Bernoulli samples of them show the spread).

Data: MNIST read by rows (``data=mnist``, ``data.normalize=false``): the batch's ``targets`` (the
digit) is this model's input and its ``inputs`` (the rows) are what it learns to write.
``{stage}/acc`` is the pixel accuracy at threshold 0.5. At each validation a grid (one column per
class: the probabilities, then ``samples`` Bernoulli draws) goes to ``generated/epoch_XXX.png`` in
the run directory and to TensorBoard / wandb.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnexp.errors import ConfigError, check_choice, check_positive_int
from rnnexp.models.nets.backbone import RecurrentBackbone
from rnnexp.models.tasks.base import SequenceTask
from rnnexp.models.tasks.networks import without_penalties

log = logging.getLogger(__name__)
OUTPUTS = ("bernoulli", "gaussian")


class OneToManyNet(nn.Module):
    """``forward(labels [B]) -> outputs [B, steps, output_size]`` (logits or means)."""

    def __init__(self, num_classes: int, output_size: int, steps: int, condition: str = "embedding",
                 embedding_dim: Optional[int] = None, rest: str = "zeros", **backbone: Any) -> None:
        super().__init__()
        check_choice("condition", condition, ("onehot", "embedding"))
        check_choice("rest", rest, ("zeros", "learned"))
        check_positive_int("steps", steps)
        self.num_classes, self.steps = num_classes, steps
        width = num_classes if condition == "onehot" else (embedding_dim or 32)
        self.embedding = nn.Embedding(num_classes, width) if condition == "embedding" else None
        self.rest = nn.Parameter(torch.zeros(width)) if rest == "learned" else None
        self.backbone = RecurrentBackbone(width, **backbone)
        self.proj = nn.Linear(self.backbone.output_size, output_size)

    def inputs(self, labels: Tensor) -> Tensor:
        """[B, steps, width]: the condition at step 0, then zeros or the learned vector."""
        first = self.embedding(labels) if self.embedding is not None else F.one_hot(labels, self.num_classes).float()
        later = first.new_zeros(len(labels), self.steps - 1, first.shape[-1])
        if self.rest is not None:
            later = later + self.rest
        return torch.cat([first[:, None], later], 1)

    def forward(self, labels: Tensor) -> Tensor:
        outputs, _ = self.backbone(self.inputs(labels))
        return self.proj(outputs)


class OneToMany(SequenceTask):
    accepts = ("label",)
    many_to_one = False

    def __init__(self, input_size: int, num_classes: int, steps: int = 28, condition: str = "embedding",
                 rest: str = "zeros", output: str = "bernoulli", pixel_scale: float = 255.0, samples: int = 3,
                 **kwargs: Any) -> None:
        """``kwargs``: SequenceTask's own arguments (optimizer, ...) and the backbone's settings."""
        check_choice("output", output, OUTPUTS)
        if kwargs.get("input_kind") == "tokens":
            raise ConfigError("model", "one_to_many", "it writes float rows from a label (data=mnist data.mode=row); "
                              "this data feeds token ids")
        super().__init__(input_size, num_classes, steps=steps, condition=condition, rest=rest, **kwargs)

    def build_net(self, input_size, num_classes, input_kind, network) -> nn.Module:
        unused = ("encoder", "pooling", "tie_weights", "head_dropout")  # keys of the other tasks' heads
        network = without_penalties(network, "one_to_many")
        return OneToManyNet(num_classes, input_size, **{k: v for k, v in network.items() if k not in unused})

    def _logits(self, batch: Dict[str, Any], stage: str) -> Tensor:
        return self.net(batch["targets"])

    def _sums_of(self, outputs: Tensor, batch: Dict[str, Any]):
        rows = (batch["inputs"].float() / self.hparams.pixel_scale).clamp(0, 1)
        if rows.shape[1:] != outputs.shape[1:]:
            steps, width = rows.shape[1], rows.shape[-1] if rows.dim() == 3 else 1
            raise ConfigError("model.steps", self.hparams.steps, f"the data's images are {steps} steps of {width} "
                              f"values; one_to_many writes rows of MNIST (data.mode=row, model.steps={steps})")
        if self.hparams.output == "bernoulli":
            total = F.binary_cross_entropy_with_logits(outputs, rows, reduction="sum")
            guess = outputs > 0
        else:
            total = 0.5 * F.mse_loss(outputs, rows, reduction="sum")
            guess = outputs > 0.5
        with torch.no_grad():
            correct = (guess == (rows > 0.5)).sum()
        return total, outputs.new_tensor(float(rows.numel())), correct

    def diagnostic_loss(self, batch: Dict[str, Any]) -> Tensor:
        total, weight, _ = self._sums_of(self._logits(batch, "diagnostic"), batch)
        return total / weight

    @torch.no_grad()
    def generate(self, samples: int, seed: int = 0) -> Tensor:
        """[1 + samples, classes, steps, width] in [0, 1]: per class the probabilities (or means), then draws."""
        labels = torch.arange(self.hparams.num_classes, device=self.device)
        out = self.net(labels)
        probs = torch.sigmoid(out) if self.hparams.output == "bernoulli" else out.clamp(0, 1)
        generator = torch.Generator(device=probs.device).manual_seed(seed)
        draws = [torch.bernoulli(probs, generator=generator) for _ in range(samples)]
        return torch.stack([probs, *draws]).cpu()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        images = self.generate(self.hparams.samples, seed=self.current_epoch)
        rows, classes, steps, width = images.shape
        grid = torch.ones(rows * (steps + 2), classes * (width + 2))
        for r in range(rows):
            for c in range(classes):
                grid[r * (steps + 2) + 1 : r * (steps + 2) + 1 + steps, c * (width + 2) + 1 : c * (width + 2) + 1 + width] = images[r, c]
        folder = Path(self.trainer.default_root_dir) / "generated"
        folder.mkdir(parents=True, exist_ok=True)
        import matplotlib.pyplot as plt

        path = folder / f"epoch_{self.current_epoch:03d}.png"
        plt.imsave(path, 1 - grid.numpy(), cmap="gray", vmin=0, vmax=1)
        log.info("Generated digits (one column per class) in %s", path)
        for logger in self.trainer.loggers:
            if hasattr(logger, "log_image"):  # wandb
                logger.log_image(key="generated", images=[str(path)], step=self.global_step)
            elif hasattr(getattr(logger, "experiment", None), "add_image"):  # TensorBoard
                logger.experiment.add_image("generated", grid[None], self.global_step)
