"""The prepared GPU check: every path of the cells on one device, with a PASS/FAIL line per path.

On a GPU (about 8 minutes at most): every cell through RecurrentBackbone (cuDNN for lstm/gru/rnn)
against the same weights on the CPU; each scan of minGRU/minLSTM/LRU at T=784 and 4096 against
the sequential one, with its training-step time and its ratio to cell=lstm; bf16-mixed (autocast)
against fp32; text sampling and greedy/beam decoding on the device; and ``--steps`` training
steps and one validation batch of every preset in conf/experiment (on the small fixture data of tests/, or real data
with ``--data-dir``). Exit status 1 when any path fails.

    python benchmarks/gpu_check.py                          # CUDA, the real check
    python benchmarks/gpu_check.py --device cpu --steps 1   # the CPU dry run CI runs
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, List

import torch

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)
from _repo import ROOT  # noqa: E402

from rnnexp.models.nets.backbone import RecurrentBackbone  # noqa: E402
from rnnexp.models.nets.cells import CELLS  # noqa: E402
from rnnexp.models.nets.linear_recurrence import IMPLEMENTATIONS  # noqa: E402

NEW = [name for name, kind in CELLS.items() if kind.elementwise]
results: List[bool] = []


def check(path: str, fn: Callable[[], str]) -> None:
    """Run one path; print PASS with its figures or FAIL with the reason."""
    try:
        detail = fn()
        results.append(True)
        print(f"PASS {path}: {detail}", flush=True)
    except Exception as exc:  # noqa: BLE001 - a failed path is reported, the others still run
        results.append(False)
        last = traceback.format_exc().strip().splitlines()[-1]
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"FAIL {path}: {type(exc).__name__}: {message} ({last[:200]})", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step_time(net, x, rounds: int) -> float:
    times = []
    for i in range(rounds + 1):  # the first is a warm-up (TorchScript, cuDNN plans)
        sync(x.device)
        start = time.perf_counter()
        out, _ = net(x)
        out.float().square().mean().backward()
        sync(x.device)
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def every_cell(device, args) -> None:
    x = torch.randn(8, 50, 3)
    lengths = torch.tensor([50, 17, 3, 50, 40, 1, 9, 50])
    for cell in CELLS:
        def run(cell=cell) -> str:
            torch.manual_seed(0)
            extra = {"nonlinearity": "relu"} if cell == "rnn" else {}
            net = RecurrentBackbone(3, cell=cell, hidden_size=16, num_layers=2, bidirectional=True, **extra)
            want, want_state = net(x, lengths)
            net = net.to(device)
            got, got_state = net(x.to(device), lengths)
            got.float().sum().backward()
            err = (got.cpu() - want).abs().max().item()
            assert err < 1e-4, f"outputs differ from the CPU by {err:.2e}"
            assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())
            return f"max |device - cpu| {err:.1e}"
        check(f"cell={cell} on {device.type} (2 layers, bidirectional, lengths)", run)


def scans(device, args) -> None:
    for steps in args.lengths:
        x = torch.randn(args.batch, steps, 1, device=device)
        lstm = RecurrentBackbone(1, cell="lstm", hidden_size=args.hidden).to(device)
        base = train_step_time(lstm, x, args.rounds)
        print(f"     T={steps}: cell=lstm {base * 1e3:.1f} ms per training step", flush=True)
        for cell in NEW:
            torch.manual_seed(0)
            nets = {impl: RecurrentBackbone(1, cell=cell, hidden_size=args.hidden, scan=impl).to(device)
                    for impl in IMPLEMENTATIONS}
            for net in nets.values():
                net.load_state_dict(nets["sequential"].state_dict())
            reference = nets["sequential"](x)[0].detach()
            for impl, net in nets.items():
                def run(impl=impl, net=net) -> str:
                    out = net(x)[0]
                    err = (out - reference).abs().max().item()
                    assert torch.isfinite(out).all() and err < 1e-3, f"differs from sequential by {err:.2e}"
                    t = train_step_time(net, x, args.rounds)
                    return f"{t * 1e3:.1f} ms, {base / t:.2f}x faster than lstm, max diff {err:.1e}"
                check(f"{cell} scan={impl} T={steps} B={args.batch} H={args.hidden}", run)


def bf16(device, args) -> None:
    x = torch.randn(16, 784, 1, device=device)
    for cell in NEW + ["lstm"]:
        def run(cell=cell) -> str:
            torch.manual_seed(0)
            net = RecurrentBackbone(1, cell=cell, hidden_size=32, block="residual").to(device)
            want, _ = net(x)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                got, state = net(x)
                got.float().mean().backward()
            err = (got.float() - want).abs().max().item()
            assert torch.isfinite(got).all() and err < 0.25, f"bf16 differs from fp32 by {err:.3f}"
            first = state[0][0] if isinstance(state[0], tuple) else state[0]
            return f"max |bf16 - fp32| {err:.3f}, state in {first.dtype}"
        check(f"bf16-mixed {cell} (residual) T=784 on {device.type}", run)


def decoding(device, args) -> None:
    from rnnexp.data.vocab import Vocab
    from rnnexp.models.nets.seq2seq import Seq2SeqNet
    from rnnexp.models.nets.sequence_model import SequenceModel
    from rnnexp.sampling import generate

    for cell in NEW + ["lstm"]:
        def run(cell=cell) -> str:
            torch.manual_seed(0)
            vocab = Vocab.build(["hello world\n", "low"])
            lm = SequenceModel(len(vocab), len(vocab), many_to_one=False, cell=cell, hidden_size=16).to(device)
            texts = generate(lm, vocab, ["he", "w"], length=20, generator=torch.Generator().manual_seed(0))
            s2s = Seq2SeqNet(vocab_size=9, bos=1, eos=2, cell=cell, hidden_size=16, bidirectional=True).to(device).eval()
            source = torch.randint(3, 9, (4, 7), device=device)
            tokens, lengths = s2s.decode(source, torch.tensor([7, 5, 3, 7]), max_length=10, beam_size=4)
            assert [len(t) for t in texts] == [22, 21] and tokens.device.type == device.type
            return f"sampled {sum(len(t) for t in texts)} characters, beam-decoded {int(lengths.sum())} tokens"
        check(f"sampling + beam search {cell} on {device.type}", run)


def presets(device, args) -> None:
    from hydra import compose, initialize_config_dir

    from rnnexp.train import run as train

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    data_dir = Path(args.data_dir) if args.data_dir else None
    if data_dir is None:
        from tests.helpers.data import write_all
        data_dir = write_all(work / "data")
    for preset in sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")):
        def run(preset=preset) -> str:
            overrides = [f"experiment={preset}", f"++trainer.limit_train_batches={args.steps}", "++trainer.max_epochs=1",
                         "++trainer.limit_val_batches=1", "test=false",
                         "logger=none", "++trainer.enable_progress_bar=false", "++trainer.enable_model_summary=false",
                         f"paths.output_dir={work / preset}", f"paths.data_dir={data_dir}"]
            if device.type == "cuda":
                overrides += ["++trainer.accelerator=gpu", "++trainer.devices=1"]
            with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                cfg = compose(config_name="train", overrides=overrides)
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                train(cfg)
            return f"{args.steps} training step(s) + one validation batch in {time.perf_counter() - start:.1f} s"
        check(f"preset {preset} on {device.type}", run)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=2, help="training steps per preset")
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help="T of the scan timings (784 4096)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="real data (mnist/, tweets/) instead of the fixtures")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("FAIL cuda: torch.cuda.is_available() is False (use --device cpu for the dry run)")
        return 1
    dry = device.type == "cpu"
    if args.lengths is None:  # the CPU dry run checks the paths, not the speed
        args.lengths = [64] if dry else [784, 4096]
    if dry:
        args.batch, args.hidden, args.rounds = 8, 16, 1
        torch.set_num_threads(1)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu_check on {name}, torch {torch.__version__}", flush=True)
    start = time.perf_counter()
    for part in (every_cell, scans, bf16, decoding, presets):
        part(device, args)
    failed = results.count(False)
    print(f"{'PASS' if not failed else 'FAIL'} all: {len(results) - failed}/{len(results)} paths passed "
          f"in {time.perf_counter() - start:.0f} s on {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
