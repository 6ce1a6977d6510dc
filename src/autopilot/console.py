"""The `autopilot` console script: the loop's commands run warm, everything else as a plain click program.

The rules of the workflow start `autopilot propose|guard|train|judge|journal|champion` once per run each. Those go to
the user's warm command server (`autopilot.warm.commands`, through `autopilot.warm.client`) when one is listening,
and this process exits with the command's exit status.

Any other command, a help request, AUTOPILOT_NO_WARMSTART=1, or no server (the first call starts one for the
next) runs the command in this process, exactly as before. Until then only light standard modules load: the
point is to spend milliseconds, not the 0.3 s of importing click, yaml, jsonschema, numpy and optuna.
"""

from __future__ import annotations

import os
import sys

WARM_COMMANDS = frozenset({"propose", "guard", "train", "judge", "journal", "champion"})
HELP_FLAGS = frozenset({"-h", "--help", "--version"})


def command_name(argv: list[str]) -> str | None:
    """The subcommand of `autopilot ARGV` (after the group's own --root/-v options), if any."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--root":
            i += 2
        elif arg.startswith("--root=") or arg in ("-v", "--verbose"):
            i += 1
        elif arg.startswith("-"):
            return None
        else:
            return arg
    return None


def runs_warm(argv: list[str]) -> bool:
    return (command_name(argv) in WARM_COMMANDS and not HELP_FLAGS.intersection(argv)
            and os.environ.get("AUTOPILOT_NO_WARMSTART") != "1")


def main() -> None:
    argv = sys.argv[1:]
    if runs_warm(argv):
        from autopilot.warm import client

        code = client.run_warm(argv)
        if code is not None:
            sys.exit(code)
    from autopilot.cli import main as cli_main

    cli_main()
