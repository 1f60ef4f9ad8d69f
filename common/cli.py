"""Helpers shared by the `python -m jobs.X` entry points, whose command lines `tyro` generates
from typed configs: a field is a flag (`batch_size` is `--batch-size`, default and the string
under it as help), a nested config marked `tyro.conf.OmitArgPrefixes` adds its flags as a group,
and `__post_init__` checks values (a `UserError`). Adding a flag is adding a field."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import tyro

from common.errors import UserError, store_failure
from common.storage import StorageOptions

T = TypeVar("T")
USER_ERROR = 2  # the exit code of a command that ended with one `error:` line
CLOSED_PIPE = 141  # the shell's code for a command killed by SIGPIPE, as `... | head` leaves it

# `--verbose` as the environment carries it: to the steps of `jobs.pipeline` and to
# `connect_ray`; `ray job submit` users may set it in the job's runtime_env instead.
VERBOSE_ENV = "STYLEID_VERBOSE"


def verbose() -> bool:
    """Whether this job prints Ray's own log lines (see `JobArgs.verbose`)."""
    return os.environ.get(VERBOSE_ENV) == "1"


@dataclass(frozen=True, kw_only=True)
class JobArgs:
    """The flag every job takes; each job's `Args` extends it. `run_cli` acts on it before
    parsing, so that Ray's loggers are quiet from the first line."""

    verbose: bool = False
    """print Ray's own log lines too (by default only errors; a job that starts Ray keeps the
    rest in the run's logs/ and Ray's session logs)"""


@dataclass(frozen=True, kw_only=True)
class StorageJobArgs(JobArgs):
    """The flags of a job that reads or writes URLs: `--verbose` and `--storage-option`."""

    storage: Annotated[StorageOptions, tyro.conf.OmitArgPrefixes] = field(
        default_factory=StorageOptions
    )


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> None:
    """Run an entry point; a `UserError`, or a store that cannot be reached or refuses, becomes
    one `error: ...` line and exit code 2, and a reader that stopped reading (`--help | head`)
    ends it quietly, as it would `ls`.

    Quiet unless `--verbose`: Ray's loggers in this process print only errors to the console
    (`connect_ray` does the same for Ray's workers) and keep INFO for the run's log file
    (`common.run_log`); ours print from INFO up.
    """
    if "--verbose" in (sys.argv[1:] if argv is None else argv):
        os.environ[VERBOSE_ENV] = "1"
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # where boto found its credentials, on every command that touches S3: no news to the user
    for name in ("botocore.credentials", "aiobotocore.credentials"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        code = main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        # nothing more can be printed: stdout goes nowhere, so the exit's own flush is silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(CLOSED_PIPE)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(USER_ERROR)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if (line := store_failure(exc)) is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(USER_ERROR)
    sys.exit(code or 0)


def console_handlers(logger: str) -> list[logging.StreamHandler]:
    """The handlers of a logger that print to a console: not files (Ray's own, the run's log)."""
    handlers = logging.getLogger(logger).handlers
    return [
        h
        for h in handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


def ray_log_level() -> int:
    """The level of Ray's own loggers in a job's processes: ERROR unless `--verbose`."""
    return logging.INFO if verbose() else logging.ERROR


def parse(config: type[T], argv: Sequence[str] | None, module: str, doc: str | None) -> T:
    """`config` from the command line of `python -m <module>` (`doc` heads its --help); a bad
    value is a `UserError` from the config, a malformed flag tyro's message and exit code 2."""
    args = tyro.cli(config, args=argv, prog=f"python -m {module}", description=doc)
    quiet_ray()
    return args


def quiet_ray() -> None:
    """Ray's console handlers at `ray_log_level`, every record still reaching the run's log
    file. Done once the command line is parsed, not before: `--help` and a bad flag then never
    pay for importing Ray (and torch with it), yet Ray is imported before any work, and
    importing Ray sets its logger to INFO, so this must follow the import. Ray Data's import
    configures its loggers too, dropping any handler added before: imported here, before a
    job's run log (`common.run_log`) attaches to them."""
    import ray.data  # noqa: F401  (Ray itself with it)

    logging.getLogger("ray").setLevel(logging.INFO)
    for handler in console_handlers("ray"):
        handler.setLevel(ray_log_level())


def pair_flag(
    sep: str, flag: str, metavar: str, auto: str | None = None
) -> tyro.constructors.PrimitiveConstructorSpec:
    """A flag holding two positive integers written A<sep>B (`--workers 1:4`, `--tile 12x8`);
    with `auto`, that word stands for None."""

    def parse_pair(args: list[str]) -> tuple[int, int] | None:
        first, _, second = args[0].partition(sep)
        if args[0] == auto:
            return None
        if not (first.isdigit() and second.isdigit()):
            raise UserError(f"{flag} must look like {metavar} with integers, got {args[0]!r}")
        if int(first) < 1 or int(second) < 1:
            raise UserError(f"{flag} values must be >= 1, got {args[0]!r}")
        return int(first), int(second)

    return tyro.constructors.PrimitiveConstructorSpec(
        nargs=1,
        metavar=metavar,
        instance_from_str=parse_pair,
        is_instance=lambda value: value is None or isinstance(value, tuple),
        str_from_instance=lambda value: [auto if value is None else sep.join(map(str, value))],
    )


def choice_flag(flag: str, choices: Sequence[str]) -> tyro.constructors.PrimitiveConstructorSpec:
    """For a `Literal[choices]` field: --help lists the choices as tyro lists a Literal's
    ({a,b,c}), and a wrong one is one `error:` line naming the flag, not tyro's box."""

    def parse_choice(args: list[str]) -> str:
        if args[0] not in choices:
            raise UserError(f"{flag} {args[0]!r}: expected one of {', '.join(choices)}")
        return args[0]

    return tyro.constructors.PrimitiveConstructorSpec(
        nargs=1,
        metavar="{" + ",".join(choices) + "}",
        instance_from_str=parse_choice,
        is_instance=lambda value: value is None or value in choices,  # None: an optional one
        str_from_instance=lambda value: [str(value)],
    )


def check_at_least(minimum: int, **values: int) -> None:
    """Integer flags, named as their fields (`max_failures`: --max-failures), of at least
    `minimum` (`check_number`'s rule and message)."""
    for name, value in values.items():
        check_number(f"--{name.replace('_', '-')}", value, minimum, inclusive=True)


def check_number(flag: str, value: float, minimum: float = 0.0, inclusive: bool = False) -> float:
    """A finite number above `minimum` (or equal, with `inclusive`), else a `UserError` naming the
    flag: a float flag takes -1, nan and inf."""
    above = value >= minimum if inclusive else value > minimum
    if not (math.isfinite(value) and above):
        rule = ">=" if inclusive else ">"
        raise UserError(f"{flag} must be a number {rule} {minimum:g}, got {value:g}")
    return value
