"""Shared pieces of the thin scripts: flags that override dotted config keys."""

from __future__ import annotations

import argparse


def override_parser(doc: str, overrides: dict[str, str]) -> argparse.ArgumentParser:
    """An ArgumentParser with --config, one flag per override (flag name -> dotted config key) and --debug."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config; flags below override it")
    for flag, key in overrides.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"overrides {key}")
    add_common_flags(parser)
    return parser


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """--debug and --allow-pickle, which run_cli acts on for every script."""
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="load .bin/.pt weights (pickle) where no safetensors exist; only for files you trust")


def overrides_from(args: argparse.Namespace, overrides: dict[str, str]) -> dict[str, object]:
    return {key: getattr(args, flag) for flag, key in overrides.items()}
