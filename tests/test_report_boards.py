"""What the leaderboard says beyond the ranking: intervals, McNemar marks on the same points, the model x eps table,
targeted and black-box boards explained, training events from the model cards, one colour per model; and the
terminal summary at 80 columns."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from report_fixtures import cell_rows, paired_cell, summary, three_models, transfer_rows, write_card, write_run

from robustbench_cnn.core.statistics import format_ci, mcnemar, proportion_ci
from robustbench_cnn.reporting.report import POLICY_TEXT, leaderboards, model_order, write_report

N = 200


def _flip(robust: np.ndarray, clean: np.ndarray, lost: int, gained: int) -> np.ndarray:
    out = robust.copy()
    out[np.flatnonzero(robust)[:lost]] = False
    out[np.flatnonzero(clean & ~robust)[:gained]] = True
    return out


def _section(md: str, heading: str) -> str:
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


# ------------------------------------------------------------------------------------------ McNemar marks


def test_mcnemar_marks_on_a_constructed_pair(tmp_path: Path, store: Path) -> None:
    """a and b differ on 6 points (4 vs 2): not significantly different; b and c on 38+ points one way: significant."""
    rng = np.random.default_rng(0)
    clean = rng.random(N) < 0.95
    robust_a = clean & (rng.random(N) < 0.7)
    robust_b = _flip(robust_a, clean, lost=4, gained=2)
    robust_c = _flip(robust_a, clean, lost=40, gained=0)
    cells = [
        paired_cell(f"digits/{m}", clean, {0.1: r}) for m, r in (("a", robust_a), ("b", robust_b), ("c", robust_c))
    ]
    run = write_run(tmp_path / "run", *[rows for rows, _ in cells], samples=[s for _, s in cells])
    md_path, html_path = write_report(run, store=store)

    board = leaderboards(pd.read_parquet(run / "summary.parquet"), samples=pd.read_parquet(run / "samples.parquet"))[0]
    table = board.entries
    assert table["model"].tolist() == ["digits/a", "digits/b", "digits/c"] and board.paired == 2
    ab, bc = mcnemar(robust_a, robust_b), mcnemar(robust_b, robust_c)
    assert (ab.only_a, ab.only_b) == (4, 2) and not ab.significant and bc.significant
    assert table["p_next"].iloc[0] == pytest.approx(ab.p_value) and table["p_next"].iloc[1] == pytest.approx(bc.p_value)
    assert table["vs_next"].tolist() == [f"≈ #2 (p={ab.p_value:.2g}, n.s.)", "> #3 (p<0.001)", ""]

    md = md_path.read_text()
    rows = [ln for ln in _section(md, "digits · linf · untargeted").splitlines() if ln.startswith("| ")]
    assert "vs next (McNemar)" in rows[0]
    assert "≈ #2 (p=0.69, n.s.)" in rows[1] and "> #3 (p<0.001)" in rows[2]  # 4 vs 2 of 6: p = 0.6875
    assert "not significantly different" in md and "≈ #2 (p=0.69, n.s.)" in html_path.read_text()


def test_no_marks_without_a_per_sample_table(tmp_path: Path, store: Path) -> None:
    run = write_run(tmp_path / "run", *three_models())
    md_path, _ = write_report(run, store=store)
    assert all(b.paired == 0 for b in leaderboards(pd.read_parquet(run / "summary.parquet")))
    assert "vs next" not in md_path.read_text()


# ------------------------------------------------------------------------------------------ intervals, eps table


def test_intervals_and_the_table_over_every_epsilon(tmp_path: Path, store: Path) -> None:
    run = write_run(tmp_path / "run", *three_models())
    md = write_report(run, store=store)[0].read_text()
    rows = [ln for ln in _section(md, "digits · linf · untargeted").splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in rows[0].strip("|").split(" | ")]
    first = [c.strip() for c in rows[1].strip("|").split(" | ")]  # b-pgd-at: robust 60 of 100 at 0.3, clean 90
    lo, hi = proportion_ci(60, 100)
    assert first[head.index("robust 95% CI")] == f"{100 * lo:.1f}-{100 * hi:.1f}"
    lo, hi = proportion_ci(90, 100)
    assert first[head.index("clean 95% CI")] == f"{100 * lo:.1f}-{100 * hi:.1f}"
    every = _section(md, "digits · linf · untargeted: every epsilon")
    header = next(ln for ln in every.splitlines() if ln.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split(" | ")] == ["model", "n", "linf:0", "linf:0.1", "linf:0.3"]
    b_row = next(ln for ln in every.splitlines() if "digits/b-pgd-at" in ln)
    for rate in (0.7, 0.6):  # the fixture's worst case of b at eps 0.1 and 0.3
        assert format_ci(rate, *proportion_ci(round(rate * 100), 100)) in b_row


# ------------------------------------------------------------------------------------------ targeted, black-box


def test_targeted_board_shows_success_rate_policy_and_the_same_eps_axis(tmp_path: Path, store: Path) -> None:
    untargeted = cell_rows("digits/a", 0.9, {0: 0.9, 0.1: 0.5, 0.2: 0.3, 0.3: 0.1})
    targeted = cell_rows(
        "digits/a", 0.9, {0.1: 0.8, 0.2: 0.6}, attacks=["pgd"], cascade="pgd", targeted=True, target_policy="random"
    )
    run = write_run(tmp_path / "run", untargeted, targeted)
    boards = leaderboards(summary(untargeted, targeted))
    plain, aimed = boards
    assert aimed.targeted and aimed.x_ticks == plain.x_ticks == [0.0, 0.1, 0.2, 0.3]
    md = write_report(run, store=store)[0].read_text()
    section = _section(md, "digits · linf · targeted (random)")
    assert "target success % @ 0.3" not in section and "target success % @ 0.2" in section  # ranked at 0.2
    assert "target policy random" in section and POLICY_TEXT["random"] in section
    row = next(ln for ln in section.splitlines() if ln.startswith("| 1 "))
    assert "| 33.3 |" in row  # the fixture's success rate at 0.2: 1 - 0.6 / 0.9, in percent
    every = _section(md, "digits · linf · targeted (random): every epsilon")
    assert "Target success % of the attacked points" in every


def test_black_box_board_explains_the_proxy_points_and_cost(tmp_path: Path, store: Path) -> None:
    write_card(
        store,
        "digits/proxy",
        recipe="substitute",
        arch="fastcnn",
        clean_accuracy=0.854,
        hyperparameters={"budget": 1600, "holdout_n": 350},
        extra={"target": "digits/a-standard", "queries": 800, "agreement": 0.9, "seed_set": {"size": 100}},
    )
    cells = three_models()[:2] + [
        transfer_rows("digits/a-standard", 0.975, {0.1: 0.9, 0.3: 0.5}, "digits/proxy", n=80, attacked=78),
        transfer_rows("digits/b-pgd-at", 0.9, {0.1: 0.85, 0.3: 0.7}, "digits/proxy", n=80, attacked=72),
    ]
    run = write_run(tmp_path / "run", *cells)
    md = write_report(run, store=store)[0].read_text()
    section = _section(md, "digits · linf · untargeted · black-box transfer")
    for text in (
        "proxy digits/proxy, a fastcnn substitute of digits/a-standard",
        "800 oracle label queries of a budget of 1600",
        "its accuracy is 85.4% on 350 held-out test points, agreeing with its target on 90.0% of them",
        "the first 80 test points, disjoint from the proxy's seed set",
        "the white-box boards use 100: n and clean accuracies differ",
    ):
        assert text in section, text
    head = next(ln for ln in section.splitlines() if ln.startswith("| #"))
    assert "transfer success % @ 0.3" in head and "attacked" in head
    row = next(ln for ln in section.splitlines() if ln.startswith("| 1 "))
    assert "digits/b-pgd-at" in row and "| 72 |" in row


# ------------------------------------------------------------------------------------------ training events


def test_guard_events_and_training_problems_reach_the_flags(tmp_path: Path, store: Path) -> None:
    write_card(
        store,
        "digits/a-standard",
        recipe="fgsm-rs",
        extra={
            "defense_report": {
                "guard": {
                    "events": [
                        {"event": "collapse", "epoch": 13, "best_epoch": 10, "before": 0.73, "after": 0.52},
                        {"event": "restored", "epoch": 30, "best_epoch": 10, "before": 0.4, "after": 0.73},
                    ]
                }
            },
            "training_problems": ["PGD accuracy 0.010 with clean 0.950: no robustness"],
        },
    )
    run = write_run(tmp_path / "run", three_models()[0])
    md_path, html_path = write_report(run, store=store)
    md, page = md_path.read_text(), html_path.read_text()
    assert "No validity flags were raised" not in md and "No validity flags were raised" not in page
    flags = _section(md, "Validity flags")
    assert "**guard-collapse** (training)" in flags and "**guard-restored** (training)" in flags
    assert "epoch 13: guard PGD accuracy 52.0%, down from 73.0% at epoch 10" in flags
    assert "the weights of epoch 10 (73.0%) were restored" in flags
    assert "PGD accuracy 0.010 with clean 0.950: no robustness" in flags
    board = leaderboards(pd.read_parquet(run / "summary.parquet"), store=store)[0]
    assert board.entries["flags"].iloc[0] == "guard-collapse;guard-restored;training-problem"


# ------------------------------------------------------------------------------------------ colours


def test_one_colour_per_model_in_one_order(tmp_path: Path, store: Path) -> None:
    run = write_run(tmp_path / "run", *three_models())
    page = write_report(run, store=store)[1].read_text()
    swatches = re.findall(r'data-model="([^"]+)" data-colour="(#[0-9a-f]{6})"', page)
    per_model: dict[str, set[str]] = {}
    for model, colour in swatches:
        per_model.setdefault(model, set()).add(colour)
    assert all(len(c) == 1 for c in per_model.values()), per_model
    colours = [c.pop() for c in per_model.values()]
    assert len(set(colours)) == len(colours) == 3
    boards = leaderboards(pd.read_parquet(run / "summary.parquet"))
    # the legend order: the first board's (l2: a only) ranking, then the linf board's
    assert model_order(boards) == ["digits/a-standard", "digits/b-pgd-at", "digits/c-standard"]


# ------------------------------------------------------------------------------------------ terminal


def _bench_summary() -> pd.DataFrame:
    long = "digits/smallcnn-standard-tag"
    cells = [
        cell_rows(long, 0.98, {0: 0.98, 0.1: 0.6467, 0.3: 0.0222}, n=450),
        cell_rows(
            "digits/lenet5-fgsm-rs",
            0.991,
            {0: 0.991, 0.1: 0.7267, 0.3: 0.0867},
            n=450,
            flags="single-step-beats-iterative",
        ),
        cell_rows(
            long, 0.98, {0.1: 0.9133}, attacks=["pgd"], cascade="pgd", targeted=True, target_policy="random", n=450
        ),
        transfer_rows(long, 0.98, {0.1: 0.9114}, "digits/fastcnn-substitute-of-lenet5-standard", n=350),
    ]
    return summary(*cells)


@pytest.mark.parametrize("how", ["terminal_width", "COLUMNS"])
def test_benchmark_summary_at_80_columns_keeps_every_figure_whole(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from robustbench_cnn.commands.benchmark import benchmark
    from robustbench_cnn.pipeline import benchmark as pipeline

    frame = _bench_summary()
    monkeypatch.setattr(
        pipeline, "run_benchmark", lambda plan, out, **kw: pipeline.BenchmarkResult(tmp_path, frame, [], 1.0)
    )
    args = ["--plan", "ci", "--no-report", "--no-progress", "--out", str(tmp_path / "run")]
    if how == "terminal_width":
        result = CliRunner().invoke(benchmark, args, terminal_width=80)
    else:
        result = CliRunner().invoke(benchmark, args, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text and "..." not in text
    worst = frame[(frame["attack"] == "worst-case") | (frame["attack_kind"] != "cascade")]
    worst = worst[~((worst["cascade"] == "quick") & (worst["attack"] != "worst-case"))]
    for row in worst.to_dict("records"):  # every worst-case robust accuracy with its interval, whole
        figure = format_ci(row["robust_acc"], row["robust_acc_lo"], row["robust_acc_hi"])
        assert figure in text, figure
    assert "smallcnn-standard-tag" in text and "digits/smallcnn" not in text  # the shared prefix is dropped
    assert "digits models" in text and "random" in text and "proxy:a-standard" in text
    assert "left out at 80 columns" in text


def test_wide_output_keeps_all_columns() -> None:
    from rich.console import Console

    from robustbench_cnn.commands.output import summary_table

    console = Console(width=240, record=True)
    console.print(summary_table(_bench_summary(), width=240))
    text = console.export_text()
    assert "left out" not in text
    for header in ("setting", "cascade", "target", "clean %", "robust %", "success %", "flags"):
        assert header in text
    assert "white-box" in text and "black-box" in text and "single-step-beats-iterative" in text


def test_generic_tables_show_rates_in_percent_and_keep_figures_whole_at_80_columns() -> None:
    from rich.console import Console

    from robustbench_cnn.commands.output import table

    rows = [
        {"checkpoint": f"digits/model-with-a-long-name-{k}", "clean_acc": 0.98 - k / 100, "loss": 1.23456, "rate": 3.0}
        for k in range(3)
    ]
    console = Console(width=80, record=True)
    console.print(table("trained", rows))
    text = console.export_text()
    assert "clean_acc %" in text and "98.0" in text and "96.0" in text  # a rate column, in percent
    assert "1.2346" in text and "3.0000" in text  # not rates: a loss, and a "rate" above 1 stays as it is
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text
