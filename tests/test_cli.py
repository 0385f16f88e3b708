"""The command line: output of `senet profile`, one-line errors with exit status 2."""

import subprocess
import sys

import pytest
from conftest import slow

from senet.cli import main


def test_profile_prints_overhead_table(capsys):
    assert main(["profile", "se_resnet50", "resnext50_32x4d"]) == 0
    out = capsys.readouterr().out
    assert "se_resnet50" in out and "resnet50" in out and "+9.90%" in out
    assert "se_resnext50_32x4d" in out


def test_profile_json(tmp_path, capsys):
    path = tmp_path / "p.json"
    assert main(["profile", "se_resnet20", "--json", str(path)]) == 0
    assert '"se_model": "se_resnet20"' in path.read_text()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["profile", "se_resnt50"], "close matches: se_resnet50"),
     pytest.param(["profile", "--bogus"], "unrecognized arguments", marks=slow),
     pytest.param(["nocommand"], "invalid choice", marks=slow),
     pytest.param(["profile", "se_resnet50", "--input-size", "8"], "H, W >= 32", marks=slow)],
)  # fmt: skip
def test_errors_are_one_line_exit_2(argv, needle):
    proc = subprocess.run([sys.executable, "-m", "senet", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
