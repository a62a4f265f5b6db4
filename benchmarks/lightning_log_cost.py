"""What one ``self.log`` call and one torchmetrics accuracy call cost per training step.

    .venv/bin/python benchmarks/lightning_log_cost.py

Calls Lightning's ``_ResultCollection.log`` (what ``LightningModule.log`` ends in) the way
``SequenceClassifier`` does in its training step, and ``MulticlassAccuracy`` as forward
(computes a batch value) vs ``update`` (accumulates only). Prints median milliseconds.
Compare with a row-MNIST LSTM-128 training step (~40 ms on 2 CPU cores).
"""

import statistics
import time

import torch
from pytorch_lightning.trainer.connectors.logger_connector.result import _ResultCollection
from torchmetrics.classification import MulticlassAccuracy


def median_ms(fn, repeats: int = 500) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    results = _ResultCollection(training=True)
    loss = torch.tensor(1.0)
    acc = MulticlassAccuracy(10, average="micro")
    logits, targets = torch.randn(128, 10), torch.randint(0, 10, (128,))

    def log_loss():
        results.log("training_step", "train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=128)

    def forward_and_log_acc():
        acc(logits, targets)
        results.log("training_step", "train/acc", acc, on_step=False, on_epoch=True, prog_bar=True, batch_size=128)

    print(f"self.log(tensor):                 {median_ms(log_loss):.3f} ms")
    print(f"acc(logits, y) + self.log(acc):   {median_ms(forward_and_log_acc):.3f} ms")
    print(f"acc.update(logits, y) only:       {median_ms(lambda: acc.update(logits, targets)):.3f} ms")


if __name__ == "__main__":
    main()
