"""Re-render study.json's paper columns and study.md from the cached results, without training or measuring.

The paper figures are not measurements: they come from `senet.analysis.presets.PRESETS` when the study runs. After
PRESETS was corrected (2026-12-07: each figure beside its own source's baseline, GE's and SRM's added), this writes
the current figures into study.json and renders study.md with the current table code. Every measured field (errors,
runs, images/s, params, MACs, latency, training step, env) is kept as it was.

    PYTHONPATH=src python benchmarks/results/attention-fmnist/rerender.py
"""

import json
from pathlib import Path

from senet.analysis.ablate import StudyResult, study_variants
from senet.files import atomic_write_text
from senet.validate import json_text

FOLDER = Path(__file__).parent


def main() -> None:
    path = FOLDER / "study.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    variants = study_variants("attention", data["model"], input_size=tuple(data["env"]["input_size"]))
    assert [v.label for v in variants] == [r["label"] for r in data["rows"]], "the variants changed: re-run the study"
    for v, row in zip(variants, data["rows"], strict=True):
        assert v.options == row["options"], f"{v.label}: the options changed; re-run the study"
        row["paper_err"], row["paper_note"] = v.paper_err, v.paper_note
    atomic_write_text(path, json_text(data) + ("\n" if path.read_text(encoding="utf-8").endswith("\n") else ""))
    atomic_write_text(FOLDER / "study.md", StudyResult.load(FOLDER).markdown() + "\n")


if __name__ == "__main__":
    main()
