"""one self-contained HTML page for a run, a comparison or a study

Write report.html (tables and plots embedded) into a training run, comparison or ablation study folder.
"""

from __future__ import annotations

import argparse


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a run, comparison or study folder")


def run(args: argparse.Namespace) -> int:
    from senet.analysis.html_report import build_report

    print(f"wrote {build_report(args.folder)}")
    return 0
