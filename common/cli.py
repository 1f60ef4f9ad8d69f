"""Helpers shared by the `python -m jobs.X` entry points."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence

from common.errors import UserError
from common.storage import SECRET_WORDS

log = logging.getLogger(__name__)

USER_ERROR = 2  # the exit code of a command that ended with one `error:` line

# Every job's `--verbose`, as a parent parser (`argparse.ArgumentParser(parents=[VERBOSE])`).
VERBOSE = argparse.ArgumentParser(add_help=False)
VERBOSE.add_argument(
    "--verbose",
    action="store_true",
    help="print Ray's own log lines here too (by default only their errors; the rest stays in "
    "Ray's session logs, whose folder the job names)",
)
# `--verbose` as the environment carries it: to the steps of `jobs.pipeline` and to
# `connect_ray`; `ray job submit` users may set it in the job's runtime_env instead.
VERBOSE_ENV = "STYLEID_VERBOSE"


def verbose() -> bool:
    """Whether this job prints Ray's own log lines (see `VERBOSE`)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> None:
    """Run an entry point; a `UserError` becomes one `error: ...` line and exit code 2.

    Quiet unless `--verbose`: Ray's loggers in this process print only errors (`connect_ray`
    does the same for Ray's workers), ours print from INFO up.
    """
    if VERBOSE.parse_known_args(sys.argv[1:] if argv is None else argv)[0].verbose:
        os.environ[VERBOSE_ENV] = "1"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("ray").setLevel(ray_log_level())
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def ray_log_level() -> int:
    """The level of Ray's own loggers in a job's processes: Ray's default (INFO) with
    `--verbose`, else ERROR."""
    return logging.INFO if verbose() else logging.ERROR


def add_storage_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The repeatable `--storage-option K=V` flag every command that touches storage takes."""
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="K=V",
        help="fsspec option for non-local URLs, repeatable "
        "(e.g. client_kwargs.endpoint_url=http://host:9000)",
    )


def parse_storage_options(pairs: Sequence[str]) -> dict[str, object]:
    """Turn `k=v` strings into fsspec storage options; dotted keys nest
    (client_kwargs.endpoint_url=...)."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--storage-option expects key=value, got {pair!r}")
        target = options
        *parents, leaf = key.split(".")
        for parent in parents:
            child = target.setdefault(parent, {})
            if not isinstance(child, dict):
                raise UserError(f"--storage-option {key!r} conflicts with an earlier option")
            target = child
        target[leaf] = _parse_scalar(value)
        if any(word in leaf.lower() for word in SECRET_WORDS):
            log.warning(
                "--storage-option %s: a secret on the command line shows in `ray job "
                "list` and shell history; prefer the AWS/fsspec credential chain",
                leaf,
            )
    return options


def _parse_scalar(value: str) -> object:
    """Storage options are mostly strings; booleans and integers are given their type."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return int(value)
    except ValueError:
        return value


def positive_int(text: str) -> int:
    """argparse type for counts that must be >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def check_number(flag: str, value: float, minimum: float = 0.0, inclusive: bool = False) -> float:
    """A finite number above `minimum` (or equal, with `inclusive`), else a `UserError` naming the
    flag: argparse's `float` takes -1, nan and inf."""
    above = value >= minimum if inclusive else value > minimum
    if not (math.isfinite(value) and above):
        rule = ">=" if inclusive else ">"
        raise UserError(f"{flag} must be a number {rule} {minimum:g}, got {value:g}")
    return value
