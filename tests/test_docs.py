"""The Python examples of the README and docs run as written, and say what they return.

Examples that need the network or files a user brings (released weights, a torchvision download, a .pth file) are
left out; the functions they call have their own tests.
"""

import ast
import re
import shlex
from pathlib import Path

import torch

import senet

ROOT = Path(__file__).resolve().parents[1]


def _blocks(doc: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / doc).read_text(encoding="utf-8"), flags=re.S | re.M)


def _run(code: str) -> dict:
    namespace: dict = {}
    exec(compile(code, "<example>", "exec"), namespace)
    return namespace


def test_readme_se_block_example():
    code = _blocks("README.md")[0]
    ns = _run(code)
    assert ns["y"].shape == (8, 256, 14, 14)
    c_in, c_out = map(int, re.search(r"FC (\d+)→(\d+)", code).groups())  # the comment's first FC
    assert (ns["se"].fc1.in_features, ns["se"].fc1.out_features) == (c_in, c_out)
    assert ns["se"].excitation(torch.randn(8, 256, 14, 14)).shape == (8, 256, 1, 1)  # as the comment says


def test_readme_model_and_profile_examples():
    models, profile = _blocks("README.md")[1:3]
    ns = _run("import senet\n" + models)
    positions = {
        name: block.se_position for name, block in ns["model"].named_modules() if hasattr(block, "se_position")
    }
    assert {name for name, pos in positions.items() if pos} == {f"layer3.{i}" for i in range(6)}  # stage 3 only
    assert set(positions.values()) == {None, "identity"}
    assert "se_resnet50" in senet.list_models("se_*")
    p = _run("import senet\n" + profile)["p"]
    row = next(
        line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if "→ SE-ResNet-50 |" in line
    )
    assert f"→ {p.params / 1e6:.3f}M" in row  # the README's parameter table: 25.557M → 28.088M
    assert all(hasattr(p, name) for name in ("macs", "activations", "layers"))


def test_interop_model_options_example_returns_what_its_comment_says():
    line = next(x for x in _blocks("docs/interop.md")[0].splitlines() if "model_options(" in x)
    call, comment = line.split("#", 1)
    assert _run(f"import senet\nresult = {call.strip()}")["result"] == ast.literal_eval(comment.strip())


def test_interop_add_se_example_adds_what_its_comment_says():
    block = _blocks("docs/interop.md")[2].replace('weights="IMAGENET1K_V2"', "weights=None")  # no download here
    head = "\n".join(block.splitlines()[:4])  # the imports, the model and `add_se(model, r=16)`
    ns = _run(
        head.replace(
            "senet.add_se(model, r=16)",
            "before = sum(p.numel() for p in model.parameters())\nsenet.add_se(model, r=16)",
        )
    )
    added = sum(p.numel() for p in ns["model"].parameters()) - ns["before"]
    said = re.search(r"\+([\d,]+) parameters", block).group(1)  # the comment's "+2,530,992 parameters"
    assert added == int(said.replace(",", ""))


def test_readme_attention_example_places_the_units_it_names():
    block = next(b for b in _blocks("README.md") if "attention=" in b)
    lines = [line for line in block.splitlines() if 'weights="DEFAULT"' not in line]  # no download here
    ns = _run("import senet\n" + "\n".join(lines))
    ge = ns["model"].layer2[0].se
    assert type(ge).__name__ == "GatherExcite" and ge.variant == "theta_plus" and ge.feat_size == (28, 28)
    cbam = _run("import senet\n" + lines[1])["model"]
    assert cbam.layer1[0].se is None and type(cbam.layer3[0].se).__name__ == "CBAM"
    assert cbam.layer3[0].se.channels == 256  # after the 3×3: the bottleneck's width


def test_transfer_preprocessing_example_gives_what_its_comment_says():
    ns = _run(_blocks("docs/transfer.md")[1])
    pre = ns["pre"]
    assert (pre.input_size, pre.interpolation, pre.crop_pct) == (224, "bilinear", 0.875)
    assert pre.mean == (0.485, 0.456, 0.406) and pre.std == (0.229, 0.224, 0.225)
    image = torch.randint(0, 256, (3, 300, 260), dtype=torch.uint8)
    assert ns["evaluate"](image).shape == ns["augment"](image).shape == (3, 224, 224)


def test_every_test_reliability_md_names_exists():
    """docs/reliability.md says which test holds each promise: each `tests/FILE.py::TEST` it names is a test."""
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_\w+)\.py::(test_\w+)`", text))
    assert len(named) > 30
    missing = [f"{f}::{t}" for f, t in sorted(named) if f"def {t}(" not in (ROOT / "tests" / f"{f}.py").read_text()]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_attention_md_commands_of_its_results_parse():
    """docs/attention.md gives the exact commands of its study and cost tables: each is a valid senet command."""
    from senet.cli import build_parser

    text = (ROOT / "docs" / "attention.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    commands = [b for b in blocks if "senet ablate attention" in b or "senet cost" in b]
    assert len(commands) == 2
    parser = build_parser()
    for block in commands:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if "senet" in words:
                args = parser.parse_args(words[words.index("senet") + 1 :])
                assert args.command in ("ablate", "cost", "report")
