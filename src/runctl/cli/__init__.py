"""The `runctl` command: start, follow, stop, suspend and re-run runs, read their logs; run the
operator.

Like any command-line tool, it reports a failure in one line on stderr (`runctl <command>: what
went wrong`) and exits non-zero; argparse reports bad arguments its own way (exit 2). `runctl
watch` (and `stop --watch`) exit with a status of their own for each way a run ends.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from runctl.cli import logs, operator, rerun, show, start, suspend, watching
from runctl.cli.session import Failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (show, start, rerun, watching, suspend, logs, operator):
        command.register(sub)

    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `runctl logs RUN | head`: the reader has all it wanted
        return 0
    except Exception as exc:
        reason = str(exc) if isinstance(exc, Failed) else f"{type(exc).__name__}: {exc}"
        print(f"runctl {args.command}: {' '.join(reason.split())}", file=sys.stderr)
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
