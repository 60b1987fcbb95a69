"""The one exception type for problems the user can fix, and how scripts report it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem with the user's input, config or environment: reported as one line, no traceback."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a script's main; turn UserError into `error: ...` on stderr and exit code 2.

    `--debug` anywhere in argv shows the full traceback instead; `--allow-pickle` lets pickle weights load
    (with torch's weights_only loader).
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    if "--allow-pickle" in args:  # seen by every model loader in this process (and its children)
        import os

        os.environ["LORADISTILL_ALLOW_PICKLE"] = "1"
    try:
        return int(main(args) or 0)
    except UserError as err:
        if debug:
            raise
        message = " ".join(str(err).split("\n"))
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; re-run with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
