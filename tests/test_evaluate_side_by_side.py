"""`jobs.evaluate` side by side: the golden set under the run's teacher, LSAST
(`--also-teacher lsast`) and one or several students (`--student A B`, of either
architecture) in one contact sheet and one metrics.json (tiny models, no Ray)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import ray
import torch
from PIL import Image
from torchvision.models import alexnet

from benchmarks.synthetic_run import write_synthetic_run
from common.errors import UserError
from common.manifest import manifest_parts, read_manifest, write_lines
from common.pictures import CELL, DPI
from common.run_info import write_run_info
from common.storage import Storage
from evaluation.golden_lsast import GoldenLSAST
from evaluation.golden_metrics import ImageMeter
from evaluation.golden_set import sheet_columns
from evaluation.students import student_labels
from jobs import evaluate
from student.checkpoint import AUTHORS_MICROAST, save_student
from student.dataset import load_triple
from student.microast import MicroAST, MicroASTConfig
from student.model import STTRConfig, build_sttr
from teacher_workers.lsast.config import LSASTConfig
from teacher_workers.lsast.styles import read_prompts
from teacher_workers.options import TeacherOptions
from teacher_workers.styleid.config import StyleIDConfig
from tests.support.cli import ROOT, run_in_process
from tests.support.generation_helpers import write_prompt_files
from tests.support.network import free_port
from tests.support.train_helpers import write_seeded_vgg19

RUN_TEACHER = TeacherOptions(styleid=StyleIDConfig(steps=2, resolution=64)).chosen()
TINY_STTR = STTRConfig(enc_layers=1, dec_layers=1, dim_feedforward=64)
# MicroAST's GFLOP per 512 px image (content and style) by PyTorch's FLOP counter, from
# benchmarks/results/student_cpu.json: a convolutional network's work grows with the pixels
MICROAST_GFLOP_512 = 22.309502976


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A StyleID run of 2 golden pairs (styles style-0, style-1) with its run.json, a student,
    learned styles of the golden styles' names and seeded measuring networks."""
    root = tmp_path_factory.mktemp("side")
    storage = write_synthetic_run(root / "data", n_content=2, n_style=2, size=64)
    write_run_info(storage, "generate", {"teacher": asdict(RUN_TEACHER)})
    save_student(build_sttr(TINY_STTR, init="scratch"), TINY_STTR, str(root / "student"))
    torch.manual_seed(0)
    features = {f"features.{k}": v for k, v in alexnet().features.state_dict().items()}
    torch.save(features, root / "alexnet.pth")
    prompts = write_prompt_files(root / "learned", 2, prefix="style-")
    return {
        "data": str(root / "data"),
        "student": str(root / "student"),
        "vgg": write_seeded_vgg19(root / "vgg19.pth"),
        "lpips": str(root / "alexnet.pth"),
        "prompts": [str(p) for p in prompts],
    }


def evaluate_run(
    run: dict, name: str, *flags: str, students: tuple[str, ...] = ()
) -> tuple[dict, Image.Image]:
    """metrics.json and the contact sheet of one `jobs.evaluate` of the run (of its student,
    or of `students`)."""
    common = ["--data", run["data"], "--student", *(students or [run["student"]]), "--name", name]
    common += ["--vgg-weights", run["vgg"], "--lpips-weights", run["lpips"]]
    assert evaluate.main([*common, *flags]) == 0
    folder = Path(run["data"]) / "eval" / name
    return json.loads((folder / "metrics.json").read_text()), Image.open(
        folder / "contact_sheet.png"
    )


def sheet_size(columns: int, rows: int) -> tuple[int, int]:
    return round((CELL * columns + 0.6) * DPI), round(((CELL + 0.35) * rows + 0.3) * DPI)


def test_lsast_gets_a_column_and_the_measures_of_its_engines_images(run) -> None:
    flags = ["--also-teacher", "lsast", "--style-prompts", *run["prompts"]]
    both, both_sheet = evaluate_run(run, "both", *flags)
    # a fifth column (the default's four: tests/test_pipeline.py), LSAST's measures beside
    # the teacher's and the student's
    assert both_sheet.size == sheet_size(5, 2)
    assert set(both["mean"]) == {"teacher", "lsast", "student", "student_vs_teacher"}
    assert set(both["pairs"][0]) == {"content", "style", *both["mean"]}
    assert set(both["mean"]["lsast"]) == set(both["mean"]["teacher"])
    assert all(math.isfinite(v) for v in both["mean"]["lsast"].values())
    learned = both["also_teacher"]["lsast"]
    assert learned["model"] == "tiny" and learned["lsast"]["steps"] == 2
    assert learned["lsast"]["resolution"] == 64 and learned["lsast"]["controlnet"] == "tiny"
    # each golden style took the learned style of its name, and the scores are of LSAST's
    # image of the pair, made here by the engine on its own
    storage = Storage(run["data"])
    lines = read_manifest(storage, splits=("golden",))
    engine = (
        TeacherOptions(kind="lsast", styleid=StyleIDConfig(steps=2, resolution=64)).chosen().build()
    )
    meter = ImageMeter(run["vgg"], run["lpips"])
    for line, pair in zip(lines, both["pairs"], strict=True):
        prompt_file = learned["style_prompts"][line.style]
        assert Path(prompt_file).stem == Path(line.style).stem
        triple = load_triple(storage, line)
        image = engine.stylize_pairs(
            triple.content[None], [read_prompts(prompt_file, {})], [(0, 0)]
        )
        want = meter.against_inputs(image[0], meter.inputs(triple.content, triple.style))
        assert pair["lsast"]["lpips_content"] != pair["teacher"]["lpips_content"]
        for figure, value in want.items():
            assert pair["lsast"][figure] == pytest.approx(value, rel=1e-4, abs=1e-6)


def test_a_golden_style_without_its_learned_style_is_one_clear_line(run) -> None:
    flags = ["--also-teacher", "lsast", "--style-prompts", run["prompts"][0]]
    with pytest.raises(
        UserError, match=r"no learned style for golden style.*style-1\.png.*style-0"
    ):
        evaluate_run(run, "missing", *flags)
    assert not (Path(run["data"]) / "eval" / "missing").exists()
    with pytest.raises(UserError, match="--style-prompts are learned styles for --also-teacher"):
        evaluate_run(run, "missing", "--style-prompts", run["prompts"][0])
    with pytest.raises(UserError, match="the run's own teacher is LSAST"):
        GoldenLSAST.from_run({"kind": "lsast"}, run["prompts"], LSASTConfig(), {})


def test_an_lsast_run_is_measured_against_the_images_its_styles_were_learned_from(
    run, tmp_path
) -> None:
    """An LSAST run's golden style is a prompt file: the first image it was learned from stands
    for it, as the student's style input and in the style measures."""
    storage = write_synthetic_run(tmp_path / "data", n_content=2, n_style=2, size=64)
    images = sorted({line.style for line in read_manifest(storage)})
    learned = {  # the second image recorded is never the one shown
        image: str(write_prompt_files(tmp_path / f"learned{k}", 1, images=[image, other])[0])
        for k, (image, other) in enumerate(zip(images, images[::-1], strict=True))
    }
    for key, lines in manifest_parts(storage, "t0").items():
        lsast = [replace(line, teacher="lsast", style=learned[line.style]) for line in lines]
        write_lines(storage, key, lsast)
    lsast_run = {**run, "data": str(tmp_path / "data")}
    metrics, _ = evaluate_run(lsast_run, "lsast")
    assert metrics["style_images"] == {prompts: image for image, prompts in learned.items()}
    meter = ImageMeter(run["vgg"], run["lpips"])
    lines = read_manifest(storage, splits=("golden",))
    for line, pair in zip(lines, metrics["pairs"], strict=True):
        assert pair["style"] == line.style
        image = metrics["style_images"][line.style]
        triple = load_triple(storage, replace(line, teacher="styleid", style=image))
        want = meter.against_inputs(triple.target, meter.inputs(triple.content, triple.style))
        for figure, value in want.items():
            assert pair["teacher"][figure] == pytest.approx(value, rel=1e-4, abs=1e-6)


def test_the_contact_sheet_names_the_runs_teacher() -> None:
    students = ["l1/checkpoint_000004 (STTR)"]
    assert sheet_columns("styleid", False, students) == (
        "content",
        "style",
        "StyleID (teacher)",
        "l1/checkpoint_000004 (STTR)",
    )
    assert sheet_columns("lsast", False, students)[2] == "LSAST (teacher)"
    assert sheet_columns("styleid", True, [*students, "microast-authors (MicroAST)"])[2:] == (
        "StyleID (teacher)",
        "LSAST",
        "l1/checkpoint_000004 (STTR)",
        "microast-authors (MicroAST)",
    )
    # a trained student's weights as the teacher: named as run.json records them
    label = "MicroAST authors' weights (stand-in teacher)"
    assert sheet_columns("student", False, students, label=label)[2] == label


def test_the_job_ends_with_its_headline_figures(run, capsys) -> None:
    """The last lines: the teacher's LPIPS to its content, then the student against the
    teacher, its LPIPS to the content and its cost, as metrics.json has them; the sheet keeps
    its size with them."""
    metrics, sheet = evaluate_run(run, "headline", "--device", "cpu")
    means = metrics["mean"]
    vs = means["student_vs_teacher"]
    (student,) = metrics["students"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[-4:-1] == [
        "2 golden pairs (means)",
        f"LPIPS to the content: StyleID (teacher) {means['teacher']['lpips_content']:.3f}",
        f"{student['label']} vs StyleID (teacher): PSNR {vs['psnr']:.2f} dB, "
        f"SSIM {vs['ssim']:.3f}, LPIPS {vs['lpips']:.3f}; "
        f"LPIPS to the content {means['student']['lpips_content']:.3f}; "
        f"{means['student']['seconds']:.3f} s per image on cpu, "
        f"{metrics['student_parameters'] / 1e6:.2f}M params, {student['gflop']:.3g} GFLOP",
    ]
    assert student["label"] == f"{Path(run['student']).parent.name}/student (STTR)"
    assert printed[-1].startswith("metrics, contact sheet and curves: ")
    assert metrics["device"] == "cpu"
    assert sheet.size == sheet_size(4, 2)


def test_several_students_each_get_a_column_and_their_own_measures(run, tmp_path, capsys) -> None:
    """`--student microast-authors RUN`: a MicroAST beside a tiny STTR whose training run has
    metrics, on the same golden pairs; each a column and an entry with its own figures."""
    sttr = tmp_path / "tiny" / "checkpoint_000002"
    shutil.copytree(run["student"], sttr)
    records = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "lr": 1e-3} for e in (1, 2)]
    (sttr.parent / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    one, one_sheet = evaluate_run(run, "one", students=(AUTHORS_MICROAST,))
    two, two_sheet = evaluate_run(run, "two", students=(AUTHORS_MICROAST, str(sttr)))
    assert one_sheet.size == sheet_size(4, 2) and two_sheet.size == sheet_size(5, 2)
    micro, tiny = two["students"]
    assert micro["label"] == "microast-authors (MicroAST)"
    assert tiny["label"] == "tiny/checkpoint_000002 (STTR)"
    assert (micro["side"], tiny["side"]) == ("student", "student_2")
    assert set(two["mean"]) == {"teacher", "student", "student_vs_teacher"} | {
        "student_2",
        "student_2_vs_teacher",
    }
    assert set(two["pairs"][0]) == {"content", "style", *two["mean"]}
    for entry, model in (
        (micro, MicroAST(MicroASTConfig())),
        (tiny, build_sttr(TINY_STTR, "scratch")),
    ):
        assert entry["parameters"] == sum(p.numel() for p in model.parameters())
        assert entry["gflop_at"] == {"content": [64, 64], "style": [64, 64]}
        assert entry["gflop"] > 0 and entry["seconds_per_image"] > 0
        side = entry["side"]
        assert entry["seconds_per_image"] == two["mean"][side]["seconds"]
        assert entry["vs_teacher"] == two["mean"][f"{side}_vs_teacher"]
        assert set(entry["vs_teacher"]) == {"psnr", "ssim", "lpips"}
        assert all(math.isfinite(v) for v in entry["vs_teacher"].values())
    assert micro["gflop"] == pytest.approx(MICROAST_GFLOP_512 * (64 / 512) ** 2, rel=0.01)
    assert micro["gflop"] < tiny["gflop"]  # even a one-layer STTR keeps its VGG encoder
    # a student measures the same beside another as alone
    assert one["students"][0]["gflop"] == micro["gflop"]
    assert two["mean"]["student_vs_teacher"] == pytest.approx(one["mean"]["student_vs_teacher"])
    # the keys of an evaluation of one student are the first student's
    assert two["student"] == AUTHORS_MICROAST and two["student_arch"] == "microast"
    assert two["student_parameters"] == micro["parameters"]
    # curves.png: the first student with a training run behind it
    metrics = str(sttr.parent / "metrics.jsonl")
    assert two["curves"] == {"student": tiny["label"], "metrics": metrics}
    assert one["curves"] == {"student": None, "metrics": None}
    # a headline line per student
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" vs StyleID (teacher): ")[0] for line in printed[-3:-1]] == [
        micro["label"],
        tiny["label"],
    ]


def test_labels_tell_apart_checkpoints_of_one_name() -> None:
    sources = ["s3://b/a/l1/checkpoint_000004", "/runs/b/l1/checkpoint_000004", "/runs/c/l2/x"]
    assert student_labels(sources, ["sttr", "microast", "sttr"]) == [
        "a/l1/checkpoint_000004 (STTR)",
        "b/l1/checkpoint_000004 (MicroAST)",
        "l2/x (STTR)",
    ]
    assert student_labels([AUTHORS_MICROAST], ["microast"]) == ["microast-authors (MicroAST)"]


def test_a_student_given_twice_is_one_clear_line(run) -> None:
    """The same checkpoint twice (here once with a trailing slash) would only repeat a column:
    refused before any work, as is `--student` with none."""
    flags = ["--data", run["data"], "--name", "twice", "--student", run["student"]]
    result = run_in_process("evaluate", *flags, f"{run['student']}/")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --student '{run['student']}/' names the same student as '{run['student']}' "
        f"({run['student']}): give each student once"
    ]
    result = run_in_process("evaluate", "--data", run["data"], "--student")
    assert result.stderr.strip().splitlines() == ["error: --student needs at least one student"]
    assert not (Path(run["data"]) / "eval" / "twice").exists()


def test_data_on_a_server_that_cannot_be_reached_is_one_clear_line() -> None:
    data = f"http://127.0.0.1:{free_port()}/run"  # nothing listens there
    result = run_in_process("evaluate", "--data", data, "--student", AUTHORS_MICROAST)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot read {data}/run.json: Cannot connect to host ")


def test_cuda_on_a_cluster_without_gpus_is_one_clear_line(run, ray_cluster) -> None:
    if ray.cluster_resources().get("GPU", 0):  # `ray_cluster` started it
        pytest.skip("this cluster has a GPU")
    with pytest.raises(UserError, match="--device cuda: the Ray cluster has no GPU"):
        evaluate_run(run, "cuda", "--device", "cuda")
    assert not (Path(run["data"]) / "eval" / "cuda").exists()


# A Ray cluster of its own (this process may have joined the session's): one logical GPU,
# which Ray schedules a num_gpus=1 task on whether or not CUDA can see a device.
GPU_CLUSTER = """
import sys
import ray
ray.init(address="local", _node_ip_address="127.0.0.1", num_cpus=2, num_gpus=1,
         include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": sys.argv[1]}})
from jobs import evaluate
assert evaluate.main(sys.argv[2:]) == 0
"""


@pytest.mark.ray
def test_a_cluster_with_a_gpu_evaluates_in_a_ray_task_holding_it(run) -> None:
    flags = ["--data", run["data"], "--student", run["student"], "--name", "gpu-task"]
    flags += ["--vgg-weights", run["vgg"], "--lpips-weights", run["lpips"], "--device", "cuda"]
    done = subprocess.run(
        [sys.executable, "-c", GPU_CLUSTER, str(ROOT), *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluating on a GPU worker (a Ray task holding one GPU)" in done.stdout
    assert "2 golden pairs (means)" in done.stdout  # the task's headline, printed here
    metrics = json.loads((Path(run["data"]) / "eval" / "gpu-task" / "metrics.json").read_text())
    if not torch.cuda.is_available():  # the task said so, from its worker
        assert metrics["device"] == "cpu"
        assert "Ray gave this task a GPU that CUDA cannot see" in done.stdout + done.stderr
    else:
        assert metrics["device"] == "cuda"
