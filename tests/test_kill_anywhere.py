"""Kill anywhere, lose nothing (the CI size of scripts/kill_anywhere.py): real training processes
SIGKILLed at chosen moments (a checkpoint half-written, an epoch boundary, a training step),
resumed with ``resume=<run dir>``, end with the weights and metrics of a run that was never
interrupted. The full run (24 seeded random kills per task) is in docs/reliability.md.
Slow tier; the fast tier's kill-and-resume is tests/test_resume.py (one kill on the toy task)."""

from __future__ import annotations

import pytest

from scripts.kill_anywhere import kill_anywhere, task_overrides


@pytest.mark.slow
def test_toy_run_killed_three_times_ends_like_an_uninterrupted_run(tmp_path):
    def truncate_the_newest(run_dir, kills):
        if kills == 3:  # before the last resume: the newest checkpoint is damaged on disk
            newest = run_dir / "checkpoints" / "resume.ckpt"
            newest.write_bytes(newest.read_bytes()[:1000])

    # 30 steps per epoch, resume.ckpt every 4 steps, last.ckpt at epoch ends.
    # Killed writing step 8's checkpoint, at the end of epoch 0 (after its validation and
    # checkpoints), and at step 37; then step 36's resume.ckpt is truncated: resume takes last.ckpt.
    moments = ["write:2", "epoch_end:1", "train_batch_end:7"]
    report = kill_anywhere("toy", task_overrides("toy"), tmp_path, kills=3, seed=0, log=lambda *_: None,
                           moments=moments, before_resume=truncate_the_newest)
    assert sum(report.kills.values()) == 3 and report.fresh_starts == report.not_reached == 0, report.line()
    assert report.unreadable == []  # the kill during a write left every *.ckpt whole
    assert report.tmp_left == 1  # the write's temporary file, which no resume reads
    assert report.differences == [], report.differences
    # The damaged checkpoint was skipped with one line naming what was used instead.
    (line,) = [w for w in report.warnings if "unreadable checkpoint" in w]
    assert "resume.ckpt" in line and "resuming from" in line


@pytest.mark.slow
@pytest.mark.shared_data("mnist/train-images-idx3-ubyte.gz")  # skipped without it, a failure in CI
def test_mnist_with_a_worker_process_killed_in_its_second_epoch_ends_equal(tmp_path):
    # 40 steps per epoch here; killed at step 65 of 80, resumed from step 60's checkpoint.
    overrides = [*task_overrides("mnist"), "+trainer.limit_train_batches=40", "+trainer.limit_val_batches=2"]
    report = kill_anywhere("mnist", overrides, tmp_path, kills=1, seed=0, log=lambda *_: None,
                           moments=["train_batch_end:65"])
    assert sum(report.kills.values()) == 1 and report.unreadable == [], report.line()
    assert report.differences == [], report.differences


@pytest.mark.slow
def test_a_run_killed_while_testing_finishes_on_resume(tmp_path):
    """Training had ended: the resume validates the final weights and tests them. Weights, val/*,
    test/*, and the last epoch's train/* and learning rate (from the checkpoint: the killed process
    logged them, the resumed one trains nothing) equal the uninterrupted run's."""
    report = kill_anywhere("toy", task_overrides("toy"), tmp_path, kills=1, seed=0, log=lambda *_: None,
                           moments=["test_batch:1"])
    assert sum(report.kills.values()) == 1, report.line()
    assert report.differences == [], report.differences
