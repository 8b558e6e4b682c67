"""Every refused input of ``rbc``, run through click's ``CliRunner``, as a Markdown table in docs/bad_inputs.md.

Run from the repository root: ``python benchmarks/bad_inputs.py`` (offline: the embedded digits set, a LeNet-5
trained for one epoch into a temporary store, bring-your-own model files written beside it). Each row is a command
line with its exit code and first line of output; an input error must be exit code 2 with one ``Error:`` line, a
documented warning exit code 0 with a ``Warning:`` or ``Note:`` line. The script exits 1 when a row is neither.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL_FILE = """\
import torch
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

def build3():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

def nan():
    class NaN(nn.Module):
        def forward(self, x):
            return torch.full((len(x), 10), float("nan"))
    return NaN()

def broken():
    raise ValueError("no such layer")
"""

PIPE = "\\|"  # a | inside a Markdown table cell
PLAN = 'name = "typo"\n[threat]\nnorm = "linf"\n{threat}\n[whitebox]\n{whitebox}\n[[models]]\narch = "lenet5"\n'


def cases(tmp: Path) -> list[tuple[str, list[str]]]:
    """(expected kind ``error`` | ``warning``, arguments after ``rbc``) for each bad input."""
    net, m = f"{tmp / 'net.py'}", "digits/lenet5-standard"
    out = "{out}"  # a fresh run folder per case (see main)
    (tmp / "bad_syntax.py").write_text("def build(:\n")
    (tmp / "w.pt").write_bytes(b"not a checkpoint")
    (tmp / "baseline.parquet").write_text("not parquet")
    for name, threat, whitebox in [
        ("eps_typo", "epsilon = [0.1]", 'cascade = "fgsm"'),
        ("suit_typo", "eps = [0.1]", 'suit = "quick"'),
        ("bad_eps", "eps = [-0.1]", 'cascade = "fgsm"'),
    ]:
        (tmp / f"{name}.toml").write_text(PLAN.format(threat=threat, whitebox=whitebox))
    (tmp / "sed.toml").write_text("sed = 1\n" + PLAN.format(threat="eps = [0.1]", whitebox='cascade = "fgsm"'))
    (tmp / "broken.toml").write_text("name = [\n")
    patch_plan = PLAN.format(threat="eps = [0.1]", whitebox='cascade = "fgsm"') + "[patch]\nsizez = [0.1]\n"
    (tmp / "patch_typo.toml").write_text(patch_plan)
    ev = ["-n", "8", "-o", out, "--no-progress"]
    e, w = "error", "warning"
    return [
        # names, with suggestions
        (e, ["train", "--model", "resnet19"]),
        (e, ["train", "--model", "lenet5", "--dataset", "digit"]),
        (e, ["attack", "-m", m, "-a", "pgdd", *ev]),
        (e, ["evaluate", "-m", m, "-c", "quik", *ev]),
        (e, ["attack", "-m", "digits/lenet6-standard", "--eps", "0.1", *ev]),
        (e, ["defend", "--defense", "pgd-att", "-m", "lenet5", "--threat", "linf:0.1"]),
        (e, ["benchmark", "--plan", "defualt"]),
        (e, ["proxy", "train", "--target", m, "--substitute", "mlpp"]),
        # threat models and epsilons
        (e, ["attack", "-m", m, "--threat", "l3", *ev]),
        (e, ["attack", "-m", m, "--threat", "l1:1", *ev]),
        (e, ["evaluate", "-m", m, "--threat", "l0:1", *ev]),
        (e, ["attack", "-m", m, "--eps", "-0.1", *ev]),
        (e, ["attack", "-m", m, "--eps", "1.5", *ev]),
        (e, ["attack", "-m", m, "--eps", "1/0", *ev]),
        (e, ["attack", "-m", m, "--eps", "abc", *ev]),
        (e, ["attack", "-m", m, "-a", "cw-l2", "--threat", "linf", "--eps", "0.1", *ev]),
        (e, ["defend", "--defense", "pgd-at", "-m", "lenet5", "--threat", "l1:1"]),
        (e, ["transfer", "--source", m, "--target", m, "-n", "8", "--out", out]),
        (e, ["transfer", "--source", m, "--target", m, "--eps", "0.1", "-o", out]),
        (e, ["attack", "-m", m, "--bogus", *ev]),
        (w, ["attack", "-m", m, "-a", "fgsm", "--threat", "l2", "--eps", "1000", *ev]),
        (w, ["attack", "-m", m, "-a", "fgsm", "--threat", "linf", "--eps", "0.6", *ev]),
        (e, ["attack", "-m", m, "-a", "fgsm", "--threat", "l1", "--eps", "64", *ev]),
        # counts and options
        (e, ["attack", "-m", m, "--eps", "0.1", "-n", "0", "-o", out]),
        (w, ["attack", "-m", m, "-a", "fgsm", "--eps", "0.1", "-n", "100000", "-o", out, "--no-progress"]),
        (e, ["attack", "-m", m, "--eps", "0.1", "--target-policy", "class:12", "--targeted", *ev]),
        (e, ["attack", "-m", m, "-a", "apgd-ce", "--eps", "0.1", "--targeted", *ev]),
        (e, ["evaluate", "-m", m, "-c", "standard", "--eps", "0.1", "--targeted", "--target-policy", "all", *ev]),
        (e, ["attack", "-m", m, "-a", "pgd", "-p", "steps=abc", "--eps", "0.1", *ev]),
        (e, ["attack", "-m", m, "-a", "fgsm", "-p", "bogus=1", "--eps", "0.1", *ev]),
        (e, ["train", "-m", "lenet5", "-p", "classic"]),
        (e, ["train", "-m", "lenet5", "-p", "depth=7"]),
        (e, ["train", "-m", "lenet5", "--freeze", "features"]),
        (e, ["defend", "--defense", "fgsm-rs", "-m", "lenet5", "--threat", "linf:0.1", "-p", "guard=maybe"]),
        (e, ["data", "list", "--threads", "0"]),
        (e, ["--seed", "1", "report", str(tmp)]),
        (e, ["train", "-m", "lenet5", "--device", "tpu"]),
        (e, ["evaluate", "-m", m, "-c", "quick", "-s", "quick", *ev]),
        (e, ["transfer-matrix", "--models", m, "--threat", "linf:0.1", "-n", "8", "--out", out]),
        # data and files
        (e, ["train", "-m", "lenet5", "--dataset", "mnist", "--data-dir", str(tmp / "nodata")]),
        (e, ["attack", "-m", str(tmp / "w.pt"), "--eps", "0.1", *ev]),
        (e, ["attack", "--model-def", f"{tmp / 'missing.py'}:build", "--eps", "0.1", *ev]),
        (e, ["attack", "--model-def", f"{tmp / 'bad_syntax.py'}:build", "--eps", "0.1", *ev]),
        (e, ["attack", "--model-def", f"{net}:nothere", "--eps", "0.1", *ev]),
        (e, ["attack", "--model-def", f"{net}:broken", "--eps", "0.1", *ev]),
        (e, ["attack", "--model-def", f"{net}:build3", "--eps", "0.1", *ev]),
        (e, ["attack", "--model-def", f"{net}:nan", "--eps", "0.1", *ev]),
        (e, ["attack", "-m", m, "--weights", str(tmp / "w.safetensors"), "--eps", "0.1", *ev]),
        (e, ["attack", "-m", m, "--dataset", "cifar10", "--eps", "0.1", *ev]),
        (e, ["regress", "--baseline", str(tmp / "baseline.parquet"), "--current", str(tmp)]),
        (e, ["report", str(tmp / "no-such-run")]),
        # explain, detection, patches (issue 19)
        (e, ["explain", "-m", m, "-a", "pgdd", *ev]),
        (e, ["explain", "-m", m, "--methods", "saliancy", *ev]),
        (e, ["explain", "-m", m, "--threat", "linf:2", *ev]),
        (e, ["detect", "-m", m, "--detector", "feature-squeezin", "-e", "0.1", *ev]),
        (e, ["detect", "-m", m, "--detector", "learned", "-e", "0.1", "--fpr", "1.5", *ev]),
        (e, ["patch", "-m", m, "--threat", "patch:1.5", *ev]),
        (e, ["patch", "-m", m, "--threat", "patch:0.1", "--target", "12", *ev]),
        (e, ["attack", "-m", m, "-a", "pgd", "--threat", "patch:0.1", *ev]),
        (e, ["benchmark", "--plan", str(tmp / "patch_typo.toml"), "-o", out]),
        # plans
        (e, ["benchmark", "--plan", str(tmp / "eps_typo.toml"), "-o", out]),
        (e, ["benchmark", "--plan", str(tmp / "suit_typo.toml"), "-o", out]),
        (e, ["benchmark", "--plan", str(tmp / "sed.toml"), "-o", out]),
        (e, ["benchmark", "--plan", str(tmp / "bad_eps.toml"), "-o", out]),
        (e, ["benchmark", "--plan", str(tmp / "broken.toml"), "-o", out]),
        (e, ["benchmark", "--plan", str(tmp / "missing.toml"), "-o", out]),
        (e, ["benchmark", "--plan", "ci", "--plan", "x", "-s", "ci"]),
    ]


def first_line(text: str, kind: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if kind == "warning":
        lines = [ln for ln in lines if ln.startswith(("Warning:", "Note:"))] or lines
    return lines[0] if lines else ""


def main() -> int:
    from click.testing import CliRunner

    from cli import main as rbc

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ.update(RBC_HOME=str(tmp / "store"), RBC_OFFLINE="1")
        os.environ.setdefault("RBC_DATA_DIR", str(ROOT.parent / "shared" / "data"))
        (tmp / "net.py").write_text(MODEL_FILE)
        runner = CliRunner()
        trained = runner.invoke(rbc, ["--threads", "1", "train", "-m", "lenet5", "--epochs", "1", "--no-progress"])
        assert trained.exit_code == 0, trained.output
        rows, bad = [], 0
        for i, (kind, args) in enumerate(cases(tmp)):
            args = [a.replace("{out}", str(tmp / f"out{i}")) for a in args]
            result = runner.invoke(rbc, ["--threads", "1", *args], prog_name="rbc")
            line = first_line(result.output, kind)
            ok = result.exit_code == 2 and line.startswith("Error:") and len(result.output.strip().splitlines()) == 1
            if kind == "warning":
                ok = result.exit_code == 0 and line.startswith(("Warning:", "Note:"))
            bad += not ok
            shown = " ".join(a.replace(str(tmp), "$TMP") for a in args)
            cell = line.replace(str(tmp), "$TMP").replace("|", PIPE)
            rows.append(f"| `rbc {shown}` | {result.exit_code} | {cell} |" + ("" if ok else " **unexpected**"))
            print(("ok  " if ok else "BAD ") + rows[-1], flush=True)
    text = (
        "# Bad inputs and what `rbc` says\n\n"
        "Generated by `python benchmarks/bad_inputs.py` (CliRunner, offline, digits, a one-epoch LeNet-5 in a\n"
        "temporary store; `$TMP` is that folder). Input errors: exit code 2 and one `Error:` line; warnings: exit\n"
        f"code 0 and a `Warning:`/`Note:` line on stderr, the run goes on. {len(rows)} inputs.\n\n"
        "| command | exit code | first line |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    (ROOT / "docs" / "bad_inputs.md").write_text(text)
    print(f"{len(rows)} inputs, {bad} unexpected; wrote docs/bad_inputs.md")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
