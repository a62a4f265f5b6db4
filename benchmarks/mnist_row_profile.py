"""Where a row-MNIST training step's time goes: rnnexp (``experiment=mnist_row_lstm`` as the
reference model, as in mnist_row.py) against the plain loop, both under torch.profiler.

    python benchmarks/mnist_row_profile.py [--steps 40] [--warmup 20]

rnnexp runs a real Trainer with Lightning's ``PyTorchProfiler`` (torch.profiler with a
``record_function`` around every Lightning hook and action: ``[Strategy]...training_step``,
``[LightningModule]...optimizer_step``, ``[Callback]...on_train_batch_end``, the dataloader
fetch, ...), profiling ``--steps`` steps after ``--warmup``; the plain loop is profiled over the
same number of steps with its phases labelled (data, forward, backward, clip, step). Prints, per
training step, each label's wall time (CPU total, inclusive) and the aten ops' self time, so the
gap between the two is where rnnexp's extra time goes. One torch thread. Ratios from a loaded
machine are not citable; the breakdown is, with that caveat.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)
from benchmarks.mnist_common import DEFAULT_DATA, Reference, preset_config  # noqa: E402
from benchmarks.mnist_row import AS_REFERENCE  # noqa: E402


def _grouped(events):
    """{label: (inclusive CPU us, calls)} summed over events of the same label."""
    out = {}
    for e in events:
        key = getattr(e, "key", None) or e.name
        total, count = out.get(key, (0.0, 0))
        out[key] = (total + e.cpu_time_total, count + getattr(e, "count", 1))
    return out


def table(events, steps: int, prefix_filter=None, top: int = 30) -> None:
    rows = sorted(_grouped(events).items(), key=lambda kv: kv[1][0], reverse=True)
    shown = 0
    for key, (total, count) in rows:
        if prefix_filter and not prefix_filter(key):
            continue
        print(f"  {key.replace('[pl][profile]', '')[:86]:<86} {total / 1000 / steps:8.3f} ms/step  (x{count / steps:.1f})")
        shown += 1
        if shown >= top:
            break


def aten_self(events, steps: int) -> float:
    return sum(e.self_cpu_time_total for e in events if (getattr(e, "key", None) or e.name).startswith("aten::")) / 1000 / steps


def rnnexp_side(args) -> None:
    from pytorch_lightning.profilers import PyTorchProfiler

    from rnnexp.train import build

    with tempfile.TemporaryDirectory() as out:
        cfg = preset_config("mnist_row_lstm", [*AS_REFERENCE, "trainer.max_epochs=1", "test=false",
                                               f"+trainer.limit_train_batches={args.warmup + args.steps + 2}",
                                               "+trainer.limit_val_batches=0", "+trainer.num_sanity_val_steps=0"],
                            args.data, out)
        torch.manual_seed(0)
        datamodule, model, trainer = build(cfg)
        profiler = PyTorchProfiler(dirpath=out, filename="profile", export_to_chrome=False, row_limit=0,
                                   schedule=schedule(wait=args.warmup - 2, warmup=2, active=args.steps, repeat=1),
                                   record_module_names=False)
        trainer.profiler = profiler
        profiler._lightning_module = model
        trainer.fit(model, datamodule=datamodule)
        events = profiler.function_events
    # Lightning's profiler records every hook, the no-op ones too, and actions around the step.
    steps = args.steps
    print(f"rnnexp (Trainer, mnist_row_lstm as the reference model), {steps} profiled steps (labels are"
          " inclusive and nested):")
    table(events, steps, lambda k: k.startswith("[pl]") or k.startswith("Optimizer"))
    print(f"  aten ops, self time: {aten_self(events, steps):.3f} ms/step")
    grouped = {k.replace("[pl][profile]", ""): v for k, v in _grouped(events).items()}
    hooks = {"callback hooks": lambda k: k.startswith("[Callback]"),
             "LightningModule hooks (not optimizer_step, which holds the step)":
                 lambda k: k.startswith("[LightningModule]") and not k.endswith(".optimizer_step"),
             "batch to device (strategy)": lambda k: k.endswith("batch_to_device") and k.startswith("[Strategy]"),
             "dataloader fetch": lambda k: k.endswith("train_dataloader_next")}
    print("  summed (ms/step):", "; ".join(f"{name} {sum(v[0] for k, v in grouped.items() if test(k)) / 1000 / steps:.3f}"
                                           for name, test in hooks.items()))


def plain_side(args) -> None:
    from rnnexp.data.mnist import MNISTDataModule

    dm = MNISTDataModule(str(Path(args.data) / "mnist"), batch_size=128)
    dm.setup("fit")
    torch.manual_seed(0)
    model = Reference(28, 128)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    loss_fn = nn.CrossEntropyLoss()
    batches = iter(dm.train_dataloader())

    def step():
        with record_function("plain.data"):
            batch = next(batches)
        with record_function("plain.forward"):
            loss = loss_fn(model(batch["inputs"]), batch["targets"])
        with record_function("plain.backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("plain.optimizer_step"):
            optimizer.step()

    for _ in range(args.warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            with record_function("plain.step"):
                step()
    events = prof.key_averages()
    print(f"plain loop, {args.steps} profiled steps:")
    table(events, args.steps, lambda k: k.startswith("plain."))
    print(f"  aten ops, self time: {aten_self(events, args.steps):.3f} ms/step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    torch.set_num_threads(1)
    plain_side(args)
    rnnexp_side(args)


if __name__ == "__main__":
    main()
