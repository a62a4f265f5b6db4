"""Kill anywhere, lose nothing: SIGKILL a training run again and again, resume it each time, compare.

For each task, one uninterrupted ``python train.py <overrides>`` run is the reference. Then the
same command is started with a seeded random kill moment (``scripts/kill_switch.py``: a training
step, a validation or test batch, an epoch boundary, a checkpoint being built or half-written),
killed there with SIGKILL, and continued with ``resume=<run dir>``, until it has been killed
``--kills`` times; the last start runs to the end. A kill before the first checkpoint leaves
nothing to resume: that run directory is removed and the run started again (as the docs say).

After every kill, every ``*.ckpt`` of the run must load (a kill during a write leaves the previous
file whole) and the leftover ``.tmp`` files are counted (never read: resume only looks at
``*.ckpt``). At the end the final weights (sha256 of ``last.ckpt``'s state dict) and
``metrics.json`` (all keys but ``fit_seconds``) must equal the reference's.

    python scripts/kill_anywhere.py --task toy mnist tweets --kills 24 --seed 0

The figures of the last full run are in docs/reliability.md; tests/test_kill_anywhere.py runs a
few kills in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RNNEXP_DATA_DIR") or ROOT.parent / "shared" / "data")


def task_overrides(task: str, data: Path = DATA) -> List[str]:
    """Small versions of the presets, with dropout (its masks come from the RNG a resume must restore)."""
    common = ["trainer.enable_progress_bar=false", "callbacks.resume_checkpoint.every_n_train_steps=10"]
    if task == "toy":
        return ["model.dropout=0.2", "trainer.max_epochs=3", "data.batch_size=2",
                "trainer.enable_progress_bar=false", "callbacks.resume_checkpoint.every_n_train_steps=4"]
    if task == "mnist":
        return ["experiment=mnist_row_lstm", f"data.data_dir={data / 'mnist'}", "data.download=false",
                "data.num_workers=1", "model.hidden_size=16", "model.dropout=0.2", "data.batch_size=256",
                "trainer.max_epochs=2", "trainer.log_every_n_steps=20", *common]
    if task == "tweets":
        return ["experiment=cs20_tweets", f"data.path={data / 'tweets' / 'trump_tweets.txt'}",
                "data.download=false", "model.hidden_sizes=[32]", "model.dropout=0.2", "data.batch_size=128",
                "trainer.max_epochs=2", "trainer.log_every_n_steps=20", "callbacks.samples.length=40", *common]
    raise ValueError(f"unknown task {task!r}: toy, mnist or tweets")


def data_missing(task: str, data: Path = DATA) -> Optional[str]:
    need = {"mnist": data / "mnist" / "train-images-idx3-ubyte.gz", "tweets": data / "tweets" / "trump_tweets.txt"}
    path = need.get(task)
    return str(path) if path is not None and not path.is_file() else None


# How many events of each kind one process sees at most before its kill: for steps, about twice
# the run's share per kill, so the kills spread over the whole run ("steps" is the run's optimizer
# steps); a kill at an epoch boundary ends a process at the next one.
def moment_ranges(steps: int, kills: int) -> Dict[str, int]:
    per_kill = max(2, steps // max(kills, 1))
    return {"train_batch_start": per_kill, "train_batch_end": per_kill, "val_batch": 3, "test_batch": 3,
            "epoch_start": 1, "epoch_end": 1, "save": 2, "write": 2}


def train(overrides: List[str], log_dir: Path, kill_at: Optional[str] = None, resume: Optional[Path] = None,
          timeout: float = 1800) -> subprocess.CompletedProcess:
    args = [sys.executable, str(ROOT / "train.py"), *overrides, f"paths.log_dir={log_dir}", "logger=csv"]
    if kill_at:
        from scripts import kill_switch  # ROOT is on sys.path: tests import from it, __main__ adds it

        args += kill_switch.overrides(kill_at)
    if resume:
        args.append(f"resume={resume}")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    return subprocess.run(args, cwd=log_dir, env=env, capture_output=True, text=True, timeout=timeout)


def the_run_dir(log_dir: Path) -> Optional[Path]:
    runs = sorted(log_dir.glob("*/runs/*"))
    assert len(runs) <= 1, runs
    return runs[0] if runs else None


def weights_sha256(checkpoint: Path) -> str:
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def outcome(run_dir: Path) -> Dict[str, object]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("fit_seconds", None)
    return {"weights": weights_sha256(run_dir / "checkpoints" / "last.ckpt"), "metrics": metrics}


def unreadable_checkpoints(run_dir: Path) -> List[str]:
    import torch

    bad = []
    for path in sorted((run_dir / "checkpoints").glob("*.ckpt")):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure is a finding
            bad.append(f"{path.name}: {str(exc).splitlines()[0]}")
    return bad


@dataclass
class Report:
    task: str
    kills: Counter = field(default_factory=Counter)
    starts: int = 0
    fresh_starts: int = 0  # killed before the first checkpoint: started again
    not_reached: int = 0  # the run ended before the chosen moment
    tmp_left: int = 0
    rounds: int = 0  # killed runs needed to use up the kills
    warnings: List[str] = field(default_factory=list)  # rnnexp's warning lines of all starts
    unreadable: List[str] = field(default_factory=list)
    differences: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kills.items()))
        return (f"{self.task}: {sum(self.kills.values())} kills ({kinds}) in {self.rounds} runs; {self.starts} starts, "
                f"{self.fresh_starts} fresh restarts, {self.not_reached} moments not reached; "
                f"{len(self.unreadable)} unreadable checkpoints, {self.tmp_left} .tmp files left; "
                f"{len(self.differences)} differences; {self.seconds:.0f} s")


def kill_anywhere(task: str, overrides: List[str], work: Path, kills: int, seed: int, log=print,
                  moments: Optional[List[str]] = None,
                  before_resume: Optional[Callable[[Path, int], None]] = None) -> Report:
    """Reference run, then runs killed ``kills`` times in all; the report lists every difference.

    A run that ends before the kills are used up is compared and another one started (a round).
    ``moments`` (``<event>:<n>``, one per kill) replaces the seeded random choice;
    ``before_resume(run_dir, kills_so_far)`` may damage the run directory before a resume.
    """
    report, start = Report(task), time.time()
    work.mkdir(parents=True, exist_ok=True)
    reference_dir = work / "reference"
    shutil.rmtree(reference_dir, ignore_errors=True)
    reference_dir.mkdir()
    result = train(overrides, reference_dir)
    if result.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{result.stderr[-3000:]}")
    reference = outcome(the_run_dir(reference_dir))
    import torch

    steps = int(torch.load(the_run_dir(reference_dir) / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])
    ranges = moment_ranges(steps, kills)
    rng = random.Random(seed)
    while sum(report.kills.values()) < kills or report.rounds == 0:
        killed_dir = work / f"killed_{report.rounds}"
        shutil.rmtree(killed_dir, ignore_errors=True)
        killed_dir.mkdir()
        _killed_run(task, overrides, killed_dir, kills, rng, ranges, report, log, moments, before_resume)
        report.rounds += 1
        run_dir = the_run_dir(killed_dir)
        report.tmp_left += len(list((run_dir / "checkpoints").glob(".*.tmp")))
        if not (run_dir / "metrics.json").is_file():
            report.differences.append(f"round {report.rounds}: no metrics.json")
            continue
        final = outcome(run_dir)
        where = f"round {report.rounds}: " if report.rounds > 1 or sum(report.kills.values()) < kills else ""
        if final["weights"] != reference["weights"]:
            report.differences.append(f"{where}final weights (sha256 of last.ckpt's state dict)")
        for key in sorted(set(reference["metrics"]) | set(final["metrics"])):
            a, b = reference["metrics"].get(key), final["metrics"].get(key)
            if a != b:
                report.differences.append(f"{where}metrics.json {key}: {a} uninterrupted, {b} killed")
    report.seconds = time.time() - start
    return report


def _killed_run(task, overrides, killed_dir, kills, rng, ranges, report, log, moments, before_resume) -> None:
    """Start, kill and resume one run until it ends (killing while ``report`` has fewer than ``kills``)."""
    while True:
        run_dir = the_run_dir(killed_dir)
        resume = None
        if run_dir is not None:
            if any((run_dir / "checkpoints").glob("*.ckpt")):
                resume = run_dir
            else:
                shutil.rmtree(run_dir)
                report.fresh_starts += 1
        done = sum(report.kills.values())
        kill_at = None
        if done < kills and moments:
            kill_at = moments[done]
        elif done < kills:
            event = rng.choice(sorted(ranges))
            kill_at = f"{event}:{rng.randint(1, ranges[event])}"
        if resume is not None and before_resume is not None:
            before_resume(resume, done)
        result = train(overrides, killed_dir, kill_at, resume)
        report.starts += 1
        report.warnings += [line for line in (result.stdout + result.stderr).splitlines()
                            if "[WARNING]" in line and "[rnnexp" in line]
        if result.returncode == -9:
            report.kills[kill_at.split(":")[0]] += 1
            run_dir = the_run_dir(killed_dir)
            if run_dir is not None:
                report.unreadable += unreadable_checkpoints(run_dir)
            log(f"  {task}: killed at {kill_at} ({done + 1}/{kills})")
            continue
        if result.returncode != 0:
            # A finding, not a crash of the harness: the round ends here and is compared as it is.
            last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
            report.differences.append(f"a start after {sum(report.kills.values())} kills (resume={resume is not None}, "
                                      f"kill_at={kill_at}) exited with {result.returncode}: {last}")
            log(f"  {task}: {report.differences[-1]}")
            return
        if kill_at is not None:
            report.not_reached += 1
            log(f"  {task}: the run ended before {kill_at}")
        return


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", nargs="+", default=["toy", "mnist", "tweets"], choices=["toy", "mnist", "tweets"])
    parser.add_argument("--kills", type=int, default=24, help="kills per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA, help="folder with mnist/ and tweets/")
    parser.add_argument("--work", type=Path, default=Path("outputs/kill_anywhere"))
    args = parser.parse_args(argv)
    reports = []
    for i, task in enumerate(args.task):
        missing = data_missing(task, args.data)
        if missing:
            print(f"{task}: skipped, {missing} is missing")
            continue
        report = kill_anywhere(task, task_overrides(task, args.data), args.work.resolve() / task, args.kills,
                               args.seed + i)
        print(report.line(), flush=True)
        for difference in report.differences + report.unreadable:
            print("   ", difference)
        reports.append(report)
    total = sum(sum(r.kills.values()) for r in reports)
    bad = sum(len(r.differences) + len(r.unreadable) for r in reports)
    print(f"total: {total} kills, {bad} differences")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
