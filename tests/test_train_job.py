"""`jobs.train` on a real local Ray cluster: it learns, checkpoints, survives a lost worker and
resumes by name; bad input ends with one clear line before Ray starts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from ray.train import Result
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.optim.lr_scheduler import ReduceLROnPlateau

from benchmarks.synthetic_run import write_synthetic_run
from common.errors import UserError
from common.storage import Storage
from jobs.train import config_from_args
from student import train_loop
from student.checkpoint import load_student, resolve_checkpoint
from student.dataset import TripleDataset, collate_triples, read_splits
from student.inference import imagenet_normalize
from student.losses import build_loss
from student.tracking import TensorBoardLog
from student.train_config import TrainConfig
from student.train_loop import STATE_FILE, EarlyStop
from tests.support.cli import run_in_process
from tests.support.faults import LoseWorkerAtEpoch
from tests.support.train_helpers import (
    SIZE,
    SMALL_MODEL,
    fit,
    history,
    small_config,
    snapshot,
    write_seeded_vgg19,
)

ROOT = Path(__file__).resolve().parents[1]


def validation_loss(model: torch.nn.Module, config: TrainConfig) -> float:
    """The loss over the val split, computed here the way the workers compute it."""
    storage = config.storage()
    dataset = TripleDataset(storage, read_splits(storage).val, SIZE, train=False)
    batch = collate_triples([dataset[index] for index in range(len(dataset))])
    loss = build_loss(config.loss, config.vgg_weights)
    with torch.no_grad():
        output = model(imagenet_normalize(batch.content), imagenet_normalize(batch.style))
        return loss(output, imagenet_normalize(batch.target)).total.item()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_synthetic_run(root, n_content=3, n_style=3, size=SIZE)  # 4 train, 2 val pairs
    return root


@pytest.fixture(scope="module")
def vgg19(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_seeded_vgg19(tmp_path_factory.mktemp("vgg") / "vgg19.pth")


@pytest.fixture(scope="module")
def first_run(ray_cluster: Any, data: Path, vgg19: str) -> tuple[TrainConfig, Result]:
    """l2: a loss with both terms, so their records can be told apart."""
    config = small_config(str(data), "fit", loss="l2", vgg_weights=vgg19)
    return config, fit(config)


def test_training_lowers_the_loss(first_run: tuple[TrainConfig, Result]) -> None:
    records = history(first_run[0])
    assert [record["epoch"] for record in records] == [1, 2, 3, 4]
    assert records[-1]["train_loss"] < 0.8 * records[0]["train_loss"]
    assert all(record["skipped"] == 0 and record["images_per_s"] > 0 for record in records)


def test_the_checkpoint_reproduces_the_measured_validation_loss(
    first_run: tuple[TrainConfig, Result], data: Path
) -> None:
    config, result = first_run
    folder = Path(result.checkpoint.path)
    assert folder == data / "train" / config.name / "epoch-0004"
    assert {"model.safetensors", "config.json", STATE_FILE} <= {p.name for p in folder.iterdir()}
    model, model_config = load_student(str(folder))
    assert model_config == SMALL_MODEL
    measured = history(config)[-1]["val_loss"]
    assert validation_loss(model, config) == pytest.approx(measured, rel=1e-4)


def expected_schedule(val_losses: list[float], config: TrainConfig) -> list[tuple[float, bool]]:
    """(lr at the start of each epoch, early stop after it), by the paper's rule written out:
    the lr drops by `lr_factor` once the validation loss has not improved (relative 1e-4, as
    ReduceLROnPlateau) for more than `lr_patience` epochs; after a drop, `patience` epochs
    without a new best end training."""
    best, bad, lr, waiting, waited = math.inf, 0, config.lr, False, 0
    schedule = []
    for loss in val_losses:
        start_lr = lr
        improved = loss < best * (1 - 1e-4)
        best, bad = (loss, 0) if improved else (best, bad + 1)
        reduced = bad > config.lr_patience
        if reduced:
            lr, bad = lr * config.lr_factor, 0
        if improved:
            waiting, waited = False, 0
        elif waiting:
            waited += 1
        elif reduced:
            waiting = True
        schedule.append((start_lr, waiting and waited >= config.patience))
    return schedule


@pytest.fixture(scope="module")
def plateau_run(ray_cluster: Any, data: Path) -> tuple[TrainConfig, Result, Result]:
    """A lr high enough to overshoot: in the real loop the validation loss stalls, the lr drops
    and training stops early. Trained for 3 epochs, then re-run by name up to 8: the config, the
    first and the resumed run's results. Every checkpoint is kept, for the resolution test.
    One worker takes the step of `small_config`'s two (its batch is theirs together): the
    schedule is the subject here, DDP is `first_run`'s."""
    plateau = {"lr": 2e-3, "lr_patience": 0, "patience": 1, "keep_checkpoints": 8}
    plateau |= {"workers": 1, "batch_size": 4}
    first = fit(small_config(str(data), "plateau", epochs=3, **plateau))
    config = small_config(str(data), "plateau", epochs=8, **plateau)
    return config, first, fit(config)


def test_a_resumed_run_keeps_its_lr_schedule_and_early_stop(
    plateau_run: tuple[TrainConfig, Result, Result],
) -> None:
    """The re-run resumes right after the lr drop and must remember it (a fresh early-stop
    state would train on past epoch 4)."""
    config, first, result = plateau_run
    assert first.metrics["epoch"] == 3
    records = history(config)
    assert [record["epoch"] for record in records] == list(range(1, len(records) + 1))
    assert [record["resumed_from"] for record in records] == [0] * 3 + [3] * (len(records) - 3)
    schedule = expected_schedule([record["val_loss"] for record in records], config)
    assert [(record["lr"], record["early_stop"]) for record in records] == schedule
    assert schedule[-1][1] and len(records) < config.epochs  # stopped early, at the rule's epoch
    # these seeds put the first drop at the end of epoch 3: the resume starts mid-plateau
    assert [record["lr"] for record in records[2:4]] == [config.lr, config.lr * config.lr_factor]
    assert result.metrics["epoch"] == len(records)


def test_a_run_folder_resolves_to_its_checkpoint_with_the_lowest_validation_loss(
    plateau_run: tuple[TrainConfig, Result, Result], data: Path
) -> None:
    """Later commands only have the run folder: they name the checkpoint Ray Train ranks best
    when it ranks them in `jobs.train`, not the first, the latest or the highest."""
    config, _, result = plateau_run
    val_loss = {record["epoch"]: record["val_loss"] for record in history(config)}
    run = data / "train" / config.name
    kept = sorted(int(folder.name.removeprefix("epoch-")) for folder in run.glob("epoch-*"))
    assert kept == sorted(val_loss)  # several checkpoints: every epoch's
    best = min(val_loss, key=val_loss.__getitem__)
    assert best not in (kept[0], kept[-1], max(val_loss, key=val_loss.__getitem__))
    assert resolve_checkpoint(str(run)) == str(run / f"epoch-{best:04d}")
    assert Path(result.get_best_checkpoint("val_loss", "min").path) == run / f"epoch-{best:04d}"


def test_a_lost_worker_resumes_from_the_last_checkpoint_on_s3(
    ray_cluster: Any,
    s3_bucket: tuple[str, dict[str, Any]],
    tmp_path: Path,
    first_run: tuple[TrainConfig, Result],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket, options = s3_bucket
    storage = Storage(f"{bucket}/run", options)
    write_synthetic_run(tmp_path, n_content=3, n_style=3, size=SIZE, storage=storage)
    marker, temp = tmp_path / "crashed", tmp_path / "worker-temp"
    temp.mkdir()
    # the driver's trainer (`jobs.train.build_trainer`) runs the real per-worker function, whose
    # last rank is lost once
    crashing = LoseWorkerAtEpoch(3, str(marker), str(temp))
    monkeypatch.setattr(train_loop, "train_loop_per_worker", crashing)
    config = small_config(
        storage.root,
        "crash",
        storage_options=options,
        epochs=3,
        max_failures=1,
        loss=first_run[0].loss,
        vgg_weights=first_run[0].vgg_weights,
    )
    result = fit(config)
    assert marker.exists()  # rank 1 did exit at the start of epoch 3
    records = history(config)
    assert [record["epoch"] for record in records] == [1, 2, 3]
    # Ray Train registers a checkpoint when its controller next polls the workers (every few
    # seconds), so the restart resumes from epoch 2 or, if the crash beat that poll, epoch 1.
    resumed = records[-1]["resumed_from"]
    assert resumed in (1, 2)
    expected = [0] * resumed + [resumed] * (3 - resumed)
    assert [record["resumed_from"] for record in records] == expected
    assert result.metrics["epoch"] == 3
    # all seeds are fixed: the interrupted run repeats the uninterrupted one (same data, config)
    uninterrupted = [record["train_loss"] for record in history(first_run[0])[:3]]
    assert [record["train_loss"] for record in records] == pytest.approx(uninterrupted, rel=1e-3)
    assert storage.exists(f"train/crash/epoch-0003/{STATE_FILE}")
    # the lost group's rank 0 is ended while it still reports epoch 2 (its upload outlasts
    # rank 1's way to epoch 3): what it staged goes with the next report, not left on the disk
    assert not list(temp.rglob(STATE_FILE))
    # TensorBoard shows each epoch once: the restart hid what the lost group had logged after
    # its checkpoint
    board = tensorboard_scalars(config.tensorboard_storage(), tmp_path / "tensorboard")
    assert board["train_loss"] == [
        (record["epoch"], pytest.approx(record["train_loss"], rel=1e-6)) for record in records
    ]


def tensorboard_scalars(storage: Storage, folder: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar in a run's TensorBoard records, read by TensorBoard's own
    reader from a local copy of `storage` (the reader knows no storage options)."""
    for key in storage.list(""):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(storage.read_bytes(key))
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def test_tensorboard_and_the_metrics_file_hold_the_same_epochs(
    first_run: tuple[TrainConfig, Result], tmp_path: Path
) -> None:
    config, _ = first_run
    records = history(config)
    board = tensorboard_scalars(config.tensorboard_storage(), tmp_path)
    assert set(board) == set(records[0]) - {"epoch"}
    for tag, points in board.items():
        expected = [(record["epoch"], float(record[tag])) for record in records]
        assert [step for step, _ in points] == [step for step, _ in expected]
        assert [value for _, value in points] == pytest.approx(  # TensorBoard keeps float32
            [value for _, value in expected], rel=1e-6
        )


def test_the_loss_terms_sum_to_the_loss_and_both_count(
    first_run: tuple[TrainConfig, Result],
) -> None:
    for record in history(first_run[0]):
        for split in ("train", "val"):
            mse, gram = record[f"{split}_loss_mse"], record[f"{split}_loss_gram"]
            assert record[f"{split}_loss"] == mse + gram
            assert mse > 0 and gram > 0


def test_help_lists_the_options() -> None:
    result = run_in_process("train", "--help")
    assert result.returncode == 0
    for flag in ("--data", "--name", "--loss", "--init", "--patience", "--storage-option"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--loss", "l9", "--loss 'l9': expected one of l1, l2, l3"),
        ("--init", "missing.pth", "missing.pth: no such checkpoint file"),
        ("--data", "absent", "absent: no such directory"),
    ],
)
def test_bad_input_is_one_clear_line_and_touches_no_checkpoint(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    data = tmp_path / "run"
    write_synthetic_run(data, n_content=3, n_style=3, size=SIZE)
    checkpoint = data / "train" / "old" / "epoch-0001"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    before = snapshot(tmp_path)
    args = {"--data": str(data), "--name": "old", "--init": "scratch"}
    args[flag] = str(tmp_path / value) if flag in ("--init", "--data") else value
    result = run_in_process("train", *(part for pair in args.items() for part in pair))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("losses", "stop_after"),
    [
        # lr reduced after epoch 4 (two epochs without a gain); no gain in epochs 5 and 6: stop
        ([1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.5], 6),
        # the reduced lr helps in epoch 5, so the wait starts again at the next reduction
        ([1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85, 0.9, 0.9, 0.1], 9),
        ([1.0, 0.9, 0.8, 0.7], None),  # always improving: never stops
    ],
)
def test_early_stop_after_patience_epochs_in_which_a_reduced_lr_did_not_help(
    losses: list[float], stop_after: int | None
) -> None:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = ReduceLROnPlateau(optimizer, patience=1)
    early = EarlyStop(patience=2)
    stopped = None
    for epoch, loss in enumerate(losses, 1):
        early.step(scheduler, loss)
        if early.should_stop:
            stopped = epoch
            break
    assert stopped == stop_after


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--crop-size", "100"], "--crop-size 100: must be a multiple of 32"),
        (["--precision", "bf16"], "--precision bf16 needs --gpu"),
        (["--name", "a/b"], "--name 'a/b'"),
        (["--lr", "0"], "--lr 0.0: must be positive"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints must be a number >= 1, got 0"),
        (["--storage-option", "novalue"], "key=value"),
    ],
)
def test_bad_values_are_named(args: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        config_from_args(["--data", "unused", "--name", "n", *args])


def test_storage_credentials_stay_out_of_what_ray_shows() -> None:
    config = config_from_args(
        ["--data", "s3://b/run", "--name", "n", "--storage-option", "secret=hunter2"]
    )
    assert config.storage_options == {"secret": "hunter2"}
    assert "hunter2" not in repr(config)


def test_tensorboard_records_go_to_the_run_or_to_a_shared_log_dir(tmp_path: Path) -> None:
    common = ["--data", "s3://b/run", "--name", "n", "--storage-option", "key=k"]
    config = config_from_args(common)
    assert config.tensorboard_url() == "s3://b/run/train/n/tensorboard"
    assert config.tensorboard_storage().options == {"key": "k"}
    shared = config_from_args([*common, "--tensorboard", str(tmp_path / "tb")])
    assert shared.tensorboard_url() == f"{tmp_path}/tb/n"  # one log dir, a folder per run
    local = shared.tensorboard_storage()  # the S3 options are not applied to a local dir
    local.write_bytes("probe", b"1")
    assert (tmp_path / "tb" / "n" / "probe").read_bytes() == b"1"


def test_a_resumed_writer_hides_the_epochs_it_runs_again(tmp_path: Path) -> None:
    """What a restart after a lost worker does: the new writer, resuming after epoch 1, hides the
    lost group's epoch 2, which it runs again."""
    storage = Storage(str(tmp_path / "run"))
    with TensorBoardLog(storage, last_epoch=0) as lost:
        for epoch in (1, 2):
            lost.log({"epoch": epoch, "val_loss": 1.0 / epoch})
    with TensorBoardLog(storage, last_epoch=1) as resumed:
        for epoch in (2, 3):
            resumed.log({"epoch": epoch, "val_loss": 0.1 * epoch})
    assert len(storage.list("")) == 2  # one event file per writer
    scalars = tensorboard_scalars(storage, tmp_path / "copy")
    assert scalars == {"val_loss": [(1, 1.0), (2, pytest.approx(0.2)), (3, pytest.approx(0.3))]}
