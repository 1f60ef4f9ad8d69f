"""Helpers shared by the `python -m jobs.X` entry points."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Sequence

from common.errors import UserError

log = logging.getLogger(__name__)

USER_ERROR = 2  # the exit code of a command that ended with one `error:` line


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> None:
    """Run an entry point; a `UserError` becomes one `error: ...` line and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


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
