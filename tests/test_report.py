"""The leaderboard: Pareto front, ranking, worst-case selection, self-contained HTML, and a real run end to end."""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from report_fixtures import cell_rows, summary, three_models, write_examples, write_run, write_transfer

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.reporting.report import leaderboards, pareto_front, worst_case, write_report

IMG_RE = re.compile(r"<img\b[^>]*>", re.I)


# ------------------------------------------------------------------------------------------ Pareto front


def test_pareto_front_synthetic() -> None:
    clean = [0.90, 0.80, 0.70, 0.60, 0.90, 0.60, 0.50, float("nan")]
    robust = [0.10, 0.50, 0.40, 0.60, 0.05, 0.60, 0.60, 0.99]
    # 2 is dominated by 1; 4 by 0; 6 by 3 (equal robust, lower clean); 3 and 5 are equal: both kept; NaN never.
    assert pareto_front(clean, robust) == [3, 5, 1, 0]


@pytest.mark.parametrize(
    ("clean", "robust", "front"),
    [
        ([], [], []),
        ([0.5], [0.2], [0]),
        ([0.9, 0.8, 0.7], [0.1, 0.2, 0.3], [2, 1, 0]),  # a pure trade-off: everyone is on the front
        ([0.9, 0.8, 0.7], [0.9, 0.2, 0.3], [0]),  # one point dominates all
    ],
)
def test_pareto_front_edges(clean, robust, front) -> None:
    assert pareto_front(clean, robust) == front


# ------------------------------------------------------------------------------------------ leaderboards


def test_worst_case_row_or_single_attack_row() -> None:
    frame = summary(
        cell_rows("m/suite", 0.9, {0.1: 0.3}),  # pgd 0.32, fgsm 0.30, worst-case 0.30
        cell_rows("m/single", 0.9, {0.1: 0.5}, attacks=["pgd"], cascade="pgd"),
    )
    worst = worst_case(frame).set_index("model")
    assert worst.loc["m/suite", "attack"] == "worst-case" and worst.loc["m/suite", "robust_acc"] == pytest.approx(0.3)
    assert worst.loc["m/single", "attack"] == "pgd" and worst.loc["m/single", "robust_acc"] == pytest.approx(0.5)


def test_ranking_and_columns() -> None:
    boards = leaderboards(summary(*three_models()))
    assert [(b.dataset, b.norm) for b in boards] == [("digits", "l2"), ("digits", "linf")]
    linf = boards[1]
    assert linf.eps == pytest.approx(0.3)
    table = linf.entries
    assert table["model"].tolist() == ["digits/b-pgd-at", "digits/a-standard", "digits/c-standard"]
    assert table["rank"].tolist() == [1, 2, 3]
    assert table["robust_acc"].tolist() == pytest.approx([0.6, 0.4, 0.4])
    assert table["pgd"].tolist() == pytest.approx([0.62, 0.42, 0.42])  # robust after the first attack
    assert table["defense"].iloc[0] == "pgd-at"
    assert table.set_index("model").loc["digits/c-standard", "flags"] == "single-step-beats-iterative"
    assert set(linf.curves) == {"digits/a-standard", "digits/b-pgd-at", "digits/c-standard"}


def test_selected_eps_is_the_largest_common_one_and_missing_entries_rank_last() -> None:
    cells = three_models()[:2] + [cell_rows("digits/z-late", 0.99, {0: 0.99, 0.1: 0.95})]  # no eps 0.3
    linf = leaderboards(summary(*cells))[0]
    assert linf.eps == pytest.approx(0.1)
    assert linf.entries["model"].tolist() == ["digits/z-late", "digits/b-pgd-at", "digits/a-standard"]
    chosen = leaderboards(summary(*cells), eps={"linf": 0.3})[0]
    assert chosen.entries["model"].tolist() == ["digits/b-pgd-at", "digits/a-standard", "digits/z-late"]
    assert math.isnan(chosen.entries["robust_acc"].iloc[-1])


def _md_rows(md: str, heading: str) -> list[list[str]]:
    section = md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[1:]]  # skip the header


def _data_uris(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_files_from_a_synthetic_run(tmp_path: Path, store: Path) -> None:
    run = write_run(tmp_path / "run", *three_models())
    write_transfer(run)
    write_examples(run, ["digits/a-standard", "digits/b-pgd-at"])
    md_path, html_path = write_report(run, tmp_path / "out")
    assert md_path == tmp_path / "out" / "leaderboard.md" and html_path.name == "leaderboard.html"
    md, page = md_path.read_text(), html_path.read_text()

    rows = _md_rows(md, "digits · linf · untargeted")
    assert [r[:2] for r in rows] == [["1", "digits/b-pgd-at"], ["2", "digits/a-standard"], ["3", "digits/c-standard"]]
    assert rows[0][5:7] == ["90.0", "60.0"]  # clean %, robust % at linf:0.3
    assert "robust % @ linf:0.3" in md and "single-step-beats-iterative" in md
    assert "## Transfer matrix" in md and "## Adversarial examples" in md
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):  # Markdown images exist beside it
        assert (md_path.parent / link).is_file(), link

    # Self-contained: every image an embedded PNG, no URL, script, stylesheet link or remote source.
    images = IMG_RE.findall(page)
    assert len(images) == 2 * 2 + 1 + 1  # 2 boards x (curves, trade-off) + transfer heatmap + example grid
    assert all('src="data:image/png;base64,' in tag for tag in images)
    assert not re.search(r"https?://|<script|<link|@import|url\(|<iframe|<object", page, re.I)
    assert re.findall(r'\b(?:src|href)="([^"]*)"', page) and all(
        v.startswith(("data:image/png;base64,", "#")) for v in re.findall(r'\b(?:src|href)="([^"]*)"', page)
    )
    from PIL import Image

    pngs = _data_uris(page)
    assert len(pngs) == len(images)
    for png in pngs:
        with Image.open(io.BytesIO(png)) as im:
            assert im.format == "PNG" and im.width > 100 and im.height > 100

    # Flags section explains each raised flag.
    assert "a classic sign of gradient masking" in page and "Validity flags" in page


def test_report_without_optional_tables(tmp_path: Path, store: Path) -> None:
    run = write_run(tmp_path / "run", three_models()[0])
    md_path, html_path = write_report(run)
    assert md_path.parent == run
    page = html_path.read_text()
    assert len(IMG_RE.findall(page)) == 2
    assert "Transfer matrix" not in page and "Adversarial examples" not in page
    assert "No validity flags were raised." in page


def test_report_errors(tmp_path: Path) -> None:
    with pytest.raises(RbcError, match="does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RbcError, match="not a run folder"):
        write_report(tmp_path / "empty")
    run = write_run(tmp_path / "run", three_models()[0])
    (run / "examples.npz").write_bytes(b"not an npz")
    with pytest.raises(RbcError, match="unreadable examples file"):
        write_report(run)


def test_report_command(tmp_path: Path, store: Path) -> None:
    from robustbench_cnn.commands.report import report_command

    run = write_run(tmp_path / "run", *three_models())
    result = CliRunner().invoke(report_command, [str(run), "--out", str(tmp_path / "o"), "--eps", "linf:0.1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "o" / "leaderboard.md"), str(tmp_path / "o" / "leaderboard.html")]
    assert "robust % @ linf:0.1" in (tmp_path / "o" / "leaderboard.md").read_text()
    bad = CliRunner().invoke(report_command, [str(tmp_path / "missing")])
    assert bad.exit_code == 2 and bad.stderr.strip().startswith("Error: run folder")


# ------------------------------------------------------------------------------------------ a real run


def test_real_run_end_to_end(tmp_path: Path, store: Path) -> None:
    """Train a tiny model into a temporary store, evaluate two cells, add examples, write the report."""
    from robustbench_cnn.evaluation.examples import load_examples
    from robustbench_cnn.evaluation.examples import write_examples as real_examples
    from robustbench_cnn.pipeline.cells import whitebox_cell
    from robustbench_cnn.pipeline.runner import run_cells
    from robustbench_cnn.tables.results import read_summary
    from robustbench_cnn.training import TrainConfig
    from robustbench_cnn.workflows import train_model

    trained = train_model("lenet5", "digits", TrainConfig.for_dataset("digits", epochs=3), progress=False)
    name = trained.card.name
    cells = [whitebox_cell(name, "digits", "linf", [0, 0.1], cascade, n=50) for cascade in ("pgd", "pgd,fgsm")]
    run = run_cells(cells, tmp_path / "run", progress=False).dir
    real_examples(run, [name], "digits", "linf:0.1", n=2)
    assert len(load_examples(run / "examples.npz")["x"]) == 2

    md_path, html_path = write_report(run)
    board = leaderboards(read_summary(run))[0]
    # The cascade pgd -> fgsm can only break more points than pgd alone: pgd ranks first (ties: by cascade name).
    assert board.entries["cascade"].tolist() == ["pgd", "pgd,fgsm"]
    assert board.entries["robust_acc"].iloc[0] >= board.entries["robust_acc"].iloc[1]
    assert board.entries["pgd"].tolist() == pytest.approx([board.entries["robust_acc"].iloc[0]] * 2)
    assert board.entries["train_cost"].iloc[0].endswith("(3 ep)")  # from the model card in the store
    rows = _md_rows(md_path.read_text(), "digits · linf · untargeted")
    assert {r[1] for r in rows} == {name} and {r[3] for r in rows} == {"pgd", "pgd,fgsm"}
    page = html_path.read_text()
    assert len(IMG_RE.findall(page)) == 3  # curves, trade-off, example grid
    assert np.all([len(p) > 1000 for p in _data_uris(page)])

    # Every row of the run carries the 95% intervals of its accuracies, around the rate.
    from robustbench_cnn.reporting.paired import SampleIndex
    from robustbench_cnn.tables.results import CI_COLUMNS

    frame = read_summary(run)
    for rate, (lo, hi) in CI_COLUMNS.items():
        assert frame[lo].notna().all() and frame[hi].notna().all()
        assert (frame[lo] <= frame[rate]).all() and (frame[rate] <= frame[hi]).all() and (frame[lo] < frame[hi]).all()
    # ... and the per-sample table reproduces every row, per-attack rows of the cascade included (paired tests use it)
    index = SampleIndex(pd.read_parquet(run / "samples.parquet"), frame)
    assert [index.outcomes(r)[1] for r in frame.to_dict("records")] == [""] * len(frame)


def test_report_refuses_a_ranking_eps_the_run_never_evaluated(tmp_path: Path) -> None:
    """`rbc report --eps linf:0.15` on a run without 0.15 was exit 0 with empty columns: now one line, exit 2,
    naming the evaluated epsilons."""
    run = write_run(tmp_path / "run", *three_models())
    with pytest.raises(RbcError, match=r"linf:0.15 was not evaluated in this run: linf eps evaluated: "):
        write_report(run, eps={"linf": 0.15})
    with pytest.raises(RbcError, match="evaluated no l1 threat"):
        write_report(run, eps={"l1": 0.5})
    write_report(run, eps={"linf": 0.3})  # an evaluated eps is fine
    from cli import main

    result = CliRunner().invoke(main, ["report", str(run), "--eps", "linf:0.15"])
    assert result.exit_code == 2 and result.output.strip().startswith("Error:")
    assert len(result.output.strip().splitlines()) == 1
