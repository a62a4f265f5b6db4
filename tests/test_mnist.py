"""MNIST as a sequence: the IDX reader, splits, normalisation, permutation, errors, presets."""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import threading
from types import SimpleNamespace
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnexp.data.idx import FILES
from rnnexp.data.mnist import MNISTDataModule, pixel_permutation, shifted
from rnnexp.errors import ConfigError, DataError
from rnnexp.train import run
from tests.helpers import SHARED_DATA, compose_config, run_cli
from tests.helpers.mnist import TEST_SIZE, TRAIN_SIZE, idx_bytes, make_split, write_gzip, write_mnist

UNREACHABLE = ["http://127.0.0.1:9/"]  # the discard port: connection refused at once


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("data"))


def datamodule(folder: Path, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(str(folder), download=False, **kwargs)
    dm.setup()
    return dm


@pytest.mark.parametrize(
    "kwargs,steps,features",
    [({"mode": "row"}, 28, 28), ({"mode": "pixel"}, 784, 1), ({"mode": "pixel", "permute": True}, 784, 1)],
)
def test_batches_are_sequences_of_the_mode(folder, kwargs, steps, features):
    dm = datamodule(folder, batch_size=32, **kwargs)
    assert dm.spec().model_kwargs() == {"input_size": features, "num_classes": 10, "input_kind": "features", "target_kind": "label"}
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape == (32, steps, features) and batch["inputs"].dtype == torch.float32
    assert batch["lengths"].dtype == torch.int64 and batch["lengths"].tolist() == [steps] * 32
    assert batch["targets"].shape == (32,) and batch["targets"].dtype == torch.int64


def test_rows_and_pixels_read_the_same_image_in_row_major_order(folder):
    rows = datamodule(folder, mode="row").test_set.tensors()[0]
    pixels = datamodule(folder, mode="pixel").test_set.tensors()[0]
    assert torch.equal(rows.reshape(len(rows), 784), pixels.reshape(len(pixels), 784))
    images, _ = make_split(TEST_SIZE, 1)
    assert int(rows[0].sum(1).argmax()) == int(images[0].sum(1).argmax())  # step t is image row t


def test_permutation_is_fixed_by_its_seed_and_the_same_for_every_split(folder):
    assert torch.equal(pixel_permutation(0), pixel_permutation(0))
    assert not torch.equal(pixel_permutation(0), pixel_permutation(1))
    assert sorted(pixel_permutation(3).tolist()) == list(range(784))
    plain = datamodule(folder, mode="pixel")
    permuted = datamodule(folder, mode="pixel", permute=True, permutation_seed=7)
    order = pixel_permutation(7)
    assert torch.equal(permuted.permutation, order)
    for split in ("train_set", "val_set", "test_set"):
        x, y = getattr(plain, split).tensors()
        px, py = getattr(permuted, split).tensors()
        assert torch.equal(py, y)
        assert torch.equal(px[:, :, 0], x[:, order, 0])


def test_normalisation_uses_the_training_images_only(folder):
    dm = datamodule(folder, mode="row", val_size=1000)
    train = dm.train_set.tensors()[0]
    assert abs(float(train.mean())) < 1e-4 and abs(float(train.std()) - 1.0) < 1e-3
    assert dm.mean == pytest.approx(dm.train_set.images.astype(np.float64).mean())
    plain = datamodule(folder, mode="row", normalize=False).train_set.tensors()[0]
    assert float(plain.max()) == 255.0


def test_validation_split_sizes_and_seed(folder):
    dm = datamodule(folder, val_size=500, split_seed=0)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (TRAIN_SIZE - 500, 500, TEST_SIZE)
    _, labels = make_split(TRAIN_SIZE, 0)
    together = np.sort(np.concatenate([dm.train_set.labels, dm.val_set.labels]))
    assert np.array_equal(together, np.sort(labels))  # a partition: nothing lost or repeated
    same = datamodule(folder, val_size=500, split_seed=0)
    other = datamodule(folder, val_size=500, split_seed=1)
    assert np.array_equal(same.val_set.images, dm.val_set.images)
    assert not np.array_equal(other.val_set.images, dm.val_set.images)
    with pytest.raises(ConfigError, match="val_size"):
        datamodule(folder, val_size=TRAIN_SIZE)


def test_shuffling_is_seeded_per_epoch_and_evaluation_is_in_order(folder):
    def first_targets(loader, epoch):
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))["targets"]

    a, b = datamodule(folder), datamodule(folder)
    assert torch.equal(first_targets(a.train_dataloader(), 0), first_targets(b.train_dataloader(), 0))
    assert not torch.equal(first_targets(a.train_dataloader(), 0), first_targets(a.train_dataloader(), 1))
    val = a.val_dataloader()
    assert torch.equal(torch.cat([batch["targets"] for batch in val]), torch.from_numpy(a.val_set.labels))


def test_bad_config_values_name_the_key(folder):
    with pytest.raises(ConfigError, match="permute"):
        MNISTDataModule(str(folder), mode="row", permute=True)
    with pytest.raises(ConfigError, match="mode"):
        MNISTDataModule(str(folder), mode="column")


def test_shifted_moves_each_image_by_its_offsets_and_blanks_the_border():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(3, 28 * 28), dtype=np.uint8)  # no zero pixels
    offsets = np.array([[2, -1], [0, 0], [-3, 2]])
    moved = shifted(images, offsets, 3).reshape(3, 28, 28)
    for image, (dr, dc), out in zip(images.reshape(3, 28, 28), offsets, moved):
        expected = np.zeros((28, 28), dtype=np.uint8)  # out[r, c] = image[r - dr, c - dc]
        for r in range(28):
            for c in range(28):
                if 0 <= r - dr < 28 and 0 <= c - dc < 28:
                    expected[r, c] = image[r - dr, c - dc]
        assert np.array_equal(out, expected)
    assert (moved[0, :2] == 0).all() and (moved[0, :, -1] == 0).all() and (moved[0, 2:, :-1] > 0).all()


def test_shift_moves_training_images_only_reproducibly_and_anew_each_epoch(folder):
    plain, moved = datamodule(folder, batch_size=8), datamodule(folder, batch_size=8, shift=2)
    for split in ("val_set", "test_set"):  # evaluation reads the images as they are
        assert torch.equal(getattr(plain, split).tensors()[0], getattr(moved, split).tensors()[0])
    index = list(range(8))
    a, b = moved.train_set[index]["inputs"], datamodule(folder, batch_size=8, shift=2).train_set[index]["inputs"]
    assert torch.equal(a, b)  # the same batch, the same moves (a resumed run, a worker process)
    assert not torch.equal(a, plain.train_set[index]["inputs"])
    assert not torch.equal(a, moved.train_set[index[::-1]]["inputs"].flip(0))  # another batch, other moves
    assert not torch.equal(a, datamodule(folder, batch_size=8, shift=2, shift_seed=1).train_set[index]["inputs"])
    # Each moved image is its original under some offset within the bound.
    originals = plain.train_set.images[index]
    for original, image in zip(originals, shifted_back(a, moved)):
        assert any(np.array_equal(shifted(original[None], np.array([[dr, dc]]), 2)[0], image)
                   for dr in range(-2, 3) for dc in range(-2, 3))


def shifted_back(inputs: torch.Tensor, dm: MNISTDataModule) -> np.ndarray:
    """Normalised inputs back to uint8 pixels."""
    return np.rint(inputs.reshape(len(inputs), -1).numpy() * dm.std + dm.mean).astype(np.uint8)


def test_shift_values_are_checked(folder):
    for bad in (-1, 28, 1.5, True):
        with pytest.raises(ConfigError, match="shift"):
            MNISTDataModule(str(folder), shift=bad)
    with pytest.raises(ConfigError, match="shift=0"):
        MNISTDataModule(str(folder), mode="pixel", permute=True, shift=2)


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "mnist"
    target.mkdir()
    for spec in FILES.values():
        (target / spec.name).write_bytes((folder / spec.name).read_bytes())
    return target


def test_wrong_magic_number_names_the_file(folder, tmp_path):
    target = copy_of(folder, tmp_path)
    labels = gzip.decompress((target / FILES["train_labels"].name).read_bytes())[8:]
    write_gzip(target / FILES["train_labels"].name, idx_bytes(np.frombuffer(labels, np.uint8), magic=2051))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz has IDX magic number 2051, expected 2049"):
        datamodule(target)


def test_truncated_gzip_names_the_file(folder, tmp_path):
    target = copy_of(folder, tmp_path)
    path = target / FILES["train_images"].name
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is not a complete gzip file"):
        datamodule(target)


def test_a_header_that_disagrees_with_the_data_names_the_file(folder, tmp_path):
    target = copy_of(folder, tmp_path)
    images, _ = make_split(10, 0)
    payload = idx_bytes(images)[:-28]  # the header says 10 images, the data holds less
    write_gzip(target / FILES["test_images"].name, payload)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz holds 7812 bytes of data"):
        datamodule(target)


def test_missing_files_offline_say_where_to_put_them(tmp_path, monkeypatch):
    empty = tmp_path / "nowhere" / "mnist"
    with pytest.raises(DataError) as no_download:
        datamodule(empty)
    timeouts = []
    real_urlopen = urllib.request.urlopen

    def urlopen(url, *args, timeout=None, **kwargs):  # how long it may hang is the timeout it passes
        timeouts.append(timeout)
        return real_urlopen(url, *args, timeout=timeout, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(DataError) as failed_download:
        MNISTDataModule(str(empty), mirrors=UNREACHABLE, download_timeout=2).setup()
    assert timeouts and set(timeouts) == {2.0}  # every attempt bounded: it fails instead of hanging
    for message in (str(no_download.value), str(failed_download.value)):
        assert str(empty) in message and "paths.data_dir=<dir> (or the environment variable RNNEXP_DATA_DIR)" in message
        assert "\n" not in message
    assert "could not be downloaded" in str(failed_download.value)
    assert not (tmp_path / "nowhere").exists()  # the folders made for the download are gone again


def test_missing_files_are_downloaded_from_a_mirror(folder, tmp_path):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = tmp_path / "fresh" / "mnist"
        mirrors = [UNREACHABLE[0], f"http://127.0.0.1:{server.server_address[1]}/"]  # the first one fails
        dm = MNISTDataModule(str(target), mirrors=mirrors, download_timeout=5)
        dm.setup()
    finally:
        server.shutdown()
        server.server_close()
    assert len(dm.test_set) == TEST_SIZE
    for spec in FILES.values():
        assert (target / spec.name).read_bytes() == (folder / spec.name).read_bytes()


def test_a_file_of_the_original_size_must_have_the_original_md5(folder, tmp_path):
    target = copy_of(folder, tmp_path)
    spec = FILES["test_labels"]
    labels = gzip.decompress((target / spec.name).read_bytes())
    path = target / spec.name
    # A valid gzip file padded (in its header's file name) to the real file's 4,542 bytes.
    write_gzip(path, labels, name_padding=1)
    write_gzip(path, labels, name_padding=1 + spec.size - path.stat().st_size)
    assert path.stat().st_size == spec.size
    with pytest.raises(DataError, match=rf"t10k-labels-idx1-ubyte\.gz has md5 \w+, expected {spec.md5}"):
        datamodule(target)
    assert len(datamodule(target, verify_checksums=False).test_set) == TEST_SIZE


def test_the_decode_cache_skips_the_md5_only_of_files_it_has_checked(folder, tmp_path, monkeypatch):
    import rnnexp.data.mnist as mnist

    target = copy_of(folder, tmp_path)
    spec = FILES["test_labels"]
    path = target / spec.name
    labels = gzip.decompress(path.read_bytes())
    write_gzip(path, labels, name_padding=1)
    write_gzip(path, labels, name_padding=1 + spec.size - path.stat().st_size)  # the original size, another md5
    assert len(datamodule(target, verify_checksums=False).test_set) == TEST_SIZE
    # Decoded (and cached) without the check: a datamodule that asks for it still gets it.
    with pytest.raises(DataError, match=rf"t10k-labels-idx1-ubyte\.gz has md5 \w+, expected {spec.md5}"):
        datamodule(target)
    checked = []
    monkeypatch.setattr(mnist, "verify_checksum", lambda file, spec: checked.append(file.name))
    datamodule(target)
    datamodule(target)
    # The failed load checked the other three files; the cache hashes none of them again, and
    # the bad one (which failed) once more.
    assert checked == [spec.name]


def test_preset_learns_the_fixture_and_keeps_the_best_validation_accuracy(tmp_path):
    data_dir = tmp_path / "data"
    write_mnist(data_dir)
    cfg = compose_config(
        ["experiment=mnist_row_lstm", "model.hidden_size=32", "model.num_layers=1", "trainer.max_epochs=3",
         "data.val_size=500", "optimizer.lr=0.01", "trainer.enable_progress_bar=false"],
        tmp_path,
    )
    cfg.paths.data_dir = str(data_dir)
    value = run(cfg)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert value == metrics["val/acc"]
    assert metrics["test/acc"] > 0.9  # the label is the row of the bar: easy, if the model reads rows
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc" and cfg.callbacks.model_checkpoint.mode == "max"


def test_cli_reports_missing_data_in_one_line(tmp_path):
    result = run_cli(
        "experiment=mnist_row_lstm", f"paths.data_dir={tmp_path / 'empty'}", "data.download=false",
        f"paths.log_dir={tmp_path / 'logs'}", cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: MNIST files missing from ") and "paths.data_dir=<dir>" in lines[-1]
    assert "Traceback" not in result.stderr


@pytest.mark.shared_data("mnist")
def test_the_real_files_load_whole():
    # How fast they load is measured by benchmarks/mnist_load.py, not here.
    dm = MNISTDataModule(str(SHARED_DATA / "mnist"), download=False, val_size=0)
    dm.setup()
    assert (len(dm.train_set), len(dm.test_set)) == (60000, 10000)
    assert np.bincount(dm.train_set.labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(dm.test_set.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert dm.mean / 255 == pytest.approx(0.1307, abs=1e-4) and dm.std / 255 == pytest.approx(0.3081, abs=1e-4)


def _fake_trainer(world_size=1, rank=0, batches_done=None):
    # What the data module reads of a Trainer: its place under DDP and the restored loop counters.
    progress = SimpleNamespace(current=SimpleNamespace(processed=batches_done or 0))
    fit_loop = SimpleNamespace(restarting=batches_done is not None, epoch_loop=SimpleNamespace(batch_progress=progress))
    return SimpleNamespace(world_size=world_size, global_rank=rank, fit_loop=fit_loop)


def _epoch_indices(dm, trainer, epoch):
    dm.trainer = trainer
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [index for batch in loader.sampler for index in batch]


def test_ddp_ranks_share_one_seeded_epoch_and_see_every_image_once(folder):
    dm = datamodule(folder, batch_size=4)
    whole = _epoch_indices(dm, _fake_trainer(), 3)
    ranks = [_epoch_indices(dm, _fake_trainer(2, rank), 3) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])  # equal step counts, or DDP hangs
    assert sorted(set(ranks[0]) | set(ranks[1])) == sorted(whole) == list(range(len(dm.train_set)))


def test_a_resumed_epoch_skips_the_batches_already_trained(folder):
    dm = datamodule(folder, batch_size=4)
    whole = _epoch_indices(dm, _fake_trainer(), 2)
    assert _epoch_indices(dm, _fake_trainer(batches_done=3), 2) == whole[12:]
