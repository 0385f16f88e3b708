"""The ``senet`` command line: one module per command, named after it, each of which parses, calls the library and
prints.

A command module's docstring is its help: the first line is its line in ``senet --help``, the rest the top of
``senet CMD --help``. It defines ``arguments(parser)``, which adds its arguments, ``run(args)``, which does the work
and returns the exit status, and optionally ``USAGE``.

Every command's errors pass through `main`: a user error (ValueError, TypeError, a missing or unwritable file, a
full disk, a failed download, memory exhausted by the sizes asked for) prints one line on stderr, naming the value
and the fix, and exits with status 2; set SENET_DEBUG=1 to see the traceback. Anything else is a bug in senet and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence

# The command modules, in the order `senet --help` lists them.
COMMANDS = [
    "models", "profile", "train", "eval", "predict", "compare", "cost", "ablate", "excitation", "report",
    "convert", "weights", "export",
]  # fmt: skip


class UsageError(Exception):
    """A command-line mistake; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="senet", description="Squeeze-and-Excitation networks: models, training, analysis.")
    from senet._version import __version__

    parser.add_argument("--version", action="version", version=f"senet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        summary, _, description = module.__doc__.partition("\n\n")
        command = sub.add_parser(name, help=summary, description=description, usage=getattr(module, "USAGE", None))
        module.arguments(command)
        command.set_defaults(func=module.run)
    parser.commands = sub.choices  # name → the command's own parser
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line parsed; arguments the command does not take are named with the command's own help, and
    the flag it takes for what was meant: the one that writes its output, or a close spelling."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        command = parser.commands[args.command]
        takes = {f: action.nargs != 0 for action in command._actions for f in action.option_strings}  # a value?
        flags = [f for f in takes if f.startswith("--")]
        hint = ""
        first = next((e.split("=")[0] for e in extra if e.startswith("-")), None)
        if first in ("-o", "--out", "--out-dir", "--output", "--output-dir"):
            writes = [f for f in ("--out", "--json") if takes.get(f)]
            hint = f"; it writes its output with {writes[0]} PATH" if writes else "; it prints its output, no files"
        elif first:
            close = difflib.get_close_matches(first, flags, n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
        raise UsageError(f"{command.prog}: unrecognized arguments: {' '.join(extra)}{hint} (see {command.prog} --help)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from senet.environment import MissingExtraError, keep_freed_memory

    keep_freed_memory()  # CPU work reuses freed tensor memory (see its docstring); SENET_MALLOC=system opts out
    try:
        args = _parse(argv)
        if args.command not in _DISTRIBUTED and _world_size() > 1:
            return _refuse_under_torchrun(args.command)
        return int(args.func(args) or 0)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, KeyError, MissingExtraError, MemoryError, RuntimeError) as e:
        if os.environ.get("SENET_DEBUG") or (isinstance(e, RuntimeError) and not _out_of_memory(e)):
            raise
        print(f"senet: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("senet: interrupted", file=sys.stderr)
        return 130


# The commands that run as several processes under torchrun (WORLD_SIZE > 1): the others run as one process, and
# under torchrun each process would do the whole work, and write the same files, at once.
_DISTRIBUTED = ("train",)

# How long the other processes wait before they exit: torchrun stops every process when one ends, and the first
# process's line must come out before that.
_OTHERS_WAIT_S = 1.0


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1  # not torchrun's: a command that takes several processes reads and refuses it


def _refuse_under_torchrun(command: str) -> int:
    """Exit status 2 on every process; one line, on the first process (RANK 0), naming what to do instead."""
    if os.environ.get("RANK", "0") == "0":
        each = {"compare": "each model and seed", "ablate": "each variant and seed"}.get(command)
        fix = f"to train with several processes, run `senet train` under torchrun for {each}" if each else (
            "only senet train runs under torchrun")  # fmt: skip
        print(f"senet: error: senet {command} runs as one process, not under torchrun (WORLD_SIZE="
              f"{os.environ['WORLD_SIZE']}); run it without torchrun; {fix}", file=sys.stderr)  # fmt: skip
    else:
        import time

        time.sleep(_OTHERS_WAIT_S)
    return 2


def _out_of_memory(e: BaseException) -> bool:
    """An allocation that failed: PyTorch's CPU allocator raises RuntimeError, CUDA its OutOfMemoryError."""
    return type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in str(e)


def _one_line(e: BaseException) -> str:
    """The line that says what went wrong: the error's first line; the original error's for one raised in a
    DataLoader worker process (PyTorch re-raises it with the worker's traceback in the message)."""
    text = str(e).strip()
    if isinstance(e, MemoryError) or _out_of_memory(e):
        return (f"out of memory ({text.splitlines()[-1] if text else 'MemoryError'}); lower the sizes asked "
                "for (--batch-size, --image-size, --train-subset / --test-subset) or --workers")  # fmt: skip
    if isinstance(e, OSError) and e.filename is not None and e.strerror:  # the path it is about (a rename's target)
        return f"{e.strerror}: {str(e.filename2 or e.filename)!r}"
    lines = text.splitlines()
    if lines and lines[0].startswith("Caught ") and "DataLoader worker" in lines[0]:
        original = [line for line in lines if line.startswith(f"{type(e).__name__}: ")]
        if original:
            return original[-1].split(": ", 1)[1]
    return lines[0] if lines else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
