"""``senet report``: one self-contained HTML page for a training run, a comparison or an ablation study."""

from __future__ import annotations

import argparse

from senet.cli import command


def run(args: argparse.Namespace) -> int:
    from senet.analysis.html_report import build_report

    print(f"wrote {build_report(args.folder)}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    r = command(
        sub, "report", run, "one self-contained HTML page for a run, a comparison or a study",
        "Write report.html (tables and plots embedded) into a training run, comparison or ablation study folder.",
    )  # fmt: skip
    r.add_argument("folder", help="a run, comparison or study folder")
