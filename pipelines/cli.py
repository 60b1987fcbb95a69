"""What every script shares: flags generated from the config dataclasses, and how errors are reported.

A script's flags are its config class's fields, dotted as in the YAML (`--train.learning-rate`,
`--data.train-file`), with each field's help text and default in `--help`; the defaults shown are those of
`--config FILE` when one is given, so flags override the file. Parsing is tyro's (it reads the dataclasses,
their `help` metadata and `Literal` choices, and answers an unknown flag with the nearest valid ones).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from pipelines.config import load_config, removed_settings
from pipelines.errors import UserError
from pipelines.models import ALLOW_PICKLE_ENV

C = TypeVar("C")
F = TypeVar("F")


@dataclasses.dataclass
class RunFlags:
    """How to run, as opposed to what to run: not part of the config."""

    config: str | None = dataclasses.field(
        default=None, metadata={"help": "YAML config; the flags below override its values."})
    overwrite: bool = dataclasses.field(
        default=False, metadata={"help": "Replace a finished result in the output folder (never without it)."})
    debug: bool = dataclasses.field(default=False, metadata={"help": "Show tracebacks."})
    allow_pickle: bool = dataclasses.field(
        default=False, metadata={"help": "Load .bin/.pt weights (pickle) where no safetensors exist; only for files "
                                         "you trust."})


@dataclasses.dataclass
class TrainingRunFlags(RunFlags):
    resume: bool = dataclasses.field(
        default=False, metadata={"help": "Continue an interrupted run from its last checkpoint."})


@dataclasses.dataclass
class Command(Generic[F, C]):
    """The run flags and the config, both without a prefix on the command line."""

    run: F
    settings: C


def refuse_removed_flags(config_class: type, argv: list[str]) -> None:
    """An old flag of a removed setting is refused with the reason it was removed, before parsing."""
    removed = removed_settings(config_class)
    by_flag = {}
    for key, reason in removed.items():
        by_flag["--" + key.replace("_", "-")] = (key, reason)
        by_flag.setdefault("--" + key.rsplit(".", 1)[-1].replace("_", "-"), (key, reason))  # the old flat flags
    for arg in argv:
        flag = arg.split("=", 1)[0]
        if flag in by_flag:
            key, reason = by_flag[flag]
            raise UserError(f"{flag}: setting '{key}' {reason}")


def parse(config_class: type[C], argv: list[str] | None, description: str,
          flags_class: type[F] = RunFlags) -> tuple[F, C]:
    """(run flags, config) from argv: the YAML of --config first, then every other flag over it."""
    import tyro

    args = list(sys.argv[1:] if argv is None else argv)
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config")
    known, _ = early.parse_known_args(args)
    refuse_removed_flags(config_class, args)
    default = Command(run=flags_class(config=known.config), settings=load_config(config_class, known.config))
    command = tyro.cli(Command[Annotated[flags_class, tyro.conf.arg(name="")],
                               Annotated[config_class, tyro.conf.arg(name="")]],
                       default=default, args=args, description=description)
    return command.run, command.settings


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None,
            log_level: int = logging.INFO) -> int:
    """Run a script's main; turn UserError into `error: ...` on stderr and exit code 2.

    `--debug` anywhere in argv shows the full traceback instead; `--allow-pickle` lets pickle weights load
    (with torch's weights_only loader) in this process and its children.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if "--allow-pickle" in args:
        os.environ[ALLOW_PICKLE_ENV] = "1"
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(main(args) or 0)
    except UserError as err:
        if debug:
            raise
        message = " ".join(str(err).split("\n"))
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; run again with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
