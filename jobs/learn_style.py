r"""Learn an LSAST style: train the prompt generator on one style collection with Ray Train.

    python -m jobs.learn_style --styles s3://art/van-gogh/ --out s3://styles/van-gogh \
        --model stable-diffusion-v1-5/stable-diffusion-v1-5 --steps 100000 --workers 4 --gpu

The loop and its checkpoints are `teacher_workers.lsast.learning`'s. The output storage gets
`prompts.safetensors` (what `--style-prompts` of jobs.generate/jobs.stylize reads), the
last checkpoint under `checkpoints/` (generator and AdamW state, safetensors, no pickles),
`loss.jsonl` and the curve `loss.png`. Running the same command again resumes from the last
checkpoint, as does Ray Train after a lost worker; asking for more `--steps` trains further.
"""

# Ray, torch and the learning loop are imported in the functions that use them: `--help` loads
# none of them

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated

import tyro

from common.cli import JobArgs, parse, run_cli
from common.errors import UserError
from common.inputs import expand_images
from common.ray_train import run_config
from common.run_log import run_log
from common.storage import Storage, absolute_url
from teacher_workers.lsast.learn_config import LearnConfig
from teacher_workers.model_choice import PRESETS
from teacher_workers.model_source import pin_model


@dataclass(frozen=True, kw_only=True)
class Args(JobArgs):
    """The flags of `python -m jobs.learn_style`: the run's config and `--verbose`."""

    config: Annotated[LearnConfig, tyro.conf.OmitArgPrefixes]


def parse_args(argv: Sequence[str] | None) -> LearnConfig:
    """The run's config, its --styles expanded to image URLs (none found: `UserError`)."""
    config = parse(Args, argv, "jobs.learn_style", __doc__).config
    if not config.styles:
        raise UserError("--styles needs at least one image, folder or glob")
    styles = expand_images(config.styles, config.storage_options, "style")
    return replace(config, styles=tuple(absolute_url(url) for url in styles))


def pinned(config: LearnConfig) -> LearnConfig:
    """The model pinned to exact weights every worker loads (a Hub id's commit)."""
    if config.model in PRESETS:
        return config
    model = pin_model(config.model, config.revision)
    return replace(config, model=model.name, revision=model.revision)


def main(argv: Sequence[str] | None = None) -> int:
    return learn(pinned(parse_args(argv)))


def learn(config: LearnConfig) -> int:
    """Check the run, then train on Ray (nothing to do: say so without starting Ray)."""
    from teacher_workers.lsast.learning import check_same_settings, load_style, read_latest

    storage = config.storage()
    latest = read_latest(storage)
    if latest is not None:
        check_same_settings(config, latest)
        if latest["step"] >= config.steps:
            print(
                f"{config.out} is already learned to step {latest['step']} (loss "
                f"{latest['history'][-1]['loss']:.5f}); nothing to do. Pass more --steps to go on."
            )
            return 0
    for url in config.styles:  # one clear line for a bad image, before Ray starts
        load_style(url, config)
    storage.check_writable()
    with run_log(storage, "learn_style"):
        return fit(config, storage)


def fit(config: LearnConfig, storage: Storage) -> int:
    """Learn the style on Ray Train's workers; report the last step."""
    from ray.train.torch import TorchTrainer

    from common.ray_connect import connect_ray
    from teacher_workers.lsast.learning import CURVE, PROMPTS, learn_loop_per_worker, read_latest

    print(f"learning a style from {len(config.styles)} images into {config.out}")
    connect_ray()
    trainer = TorchTrainer(
        learn_loop_per_worker,
        train_loop_config={"config": config},
        scaling_config=config.scaling(),
        run_config=run_config(storage, "ray", "learn_style", config),
    )
    result = trainer.fit()
    if result.return_value is not None:
        raise UserError(result.return_value)
    final = read_latest(storage)
    print(f"step {final['step']}, loss {final['history'][-1]['loss']:.5f}")
    print(f"prompts: {storage.url(PROMPTS)}\nloss curve: {storage.url(CURVE)}")
    return 0


# `styleid-learn-style` (pyproject.toml [project.scripts]) and `python -m jobs.learn_style`
cli = partial(run_cli, main)

if __name__ == "__main__":
    cli()
