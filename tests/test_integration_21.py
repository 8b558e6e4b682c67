"""Issue 21's libraries wired into the one pipeline: threat spelling, the ``certify``, ``corruptions`` and
``minimal-norm`` cell kinds, their commands and their leaderboard boards. Offline, seeded, small."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cli import main
from robustbench_cnn.core.corruption_threat import CorruptionThreat
from robustbench_cnn.core.types import Norm, ThreatModel

# ------------------------------------------------------------------------------------------------ item 1: threats


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("corruption:fog:3", CorruptionThreat("fog", 3)),
        ("corruption:fog", CorruptionThreat("fog")),
        ("corruptions", CorruptionThreat("all")),
        ("Corruptions:2", CorruptionThreat("all", 2)),
        ("linf:8/255", ThreatModel(Norm.LINF, 8 / 255)),
        ("l2:0.5", ThreatModel(Norm.L2, 0.5)),
    ],
)
def test_threat_model_parse_is_the_one_place_for_norm_balls_and_corruptions(text: str, expected: object) -> None:
    assert ThreatModel.parse(text) == expected


@pytest.mark.parametrize("bad", ["foo:1", "linf", "corruption:", "corruptions:9", "corruption:fog:0"])
def test_a_bad_threat_lists_every_accepted_form(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        ThreatModel.parse(bad)
    message = str(info.value)
    for form in ("linf:8/255", "corruption:NAME:SEVERITY", "corruptions:SEVERITY"):
        assert form in message, message


def test_a_corruption_threat_takes_no_epsilon_and_parse_ball_wants_a_ball() -> None:
    with pytest.raises(ValueError, match="takes no epsilon"):
        ThreatModel.parse("corruptions", 0.1)
    with pytest.raises(ValueError, match="needs a norm ball"):
        ThreatModel.parse_ball("corruption:fog:3")
    assert ThreatModel.parse_ball("linf", "0.1") == ThreatModel(Norm.LINF, 0.1)


# ------------------------------------------------------------------------------------------------ item 2: certify


@pytest.fixture(scope="module")
def noisy_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """fastcnn trained 2 epochs on digits with Gaussian noise sigma 0.25 (Cohen et al.'s recipe), in a store."""
    from robustbench_cnn.defenses.train import defend
    from robustbench_cnn.training import TrainConfig

    store = tmp_path_factory.mktemp("store")
    config = TrainConfig.for_dataset("digits", epochs=2)
    trained = defend(
        "gaussian-noise", "fastcnn", "digits", "l2:0.25", config, sigma=0.25, store=store, progress=False,
        eval_n=50, eval_steps=2,
    )  # fmt: skip
    return trained.card.name, store


def _certify(model: str, store: Path, out: Path, *extra: str) -> object:
    args = ["certify", "-m", model, "--sigma", "0.25", "--radii", "0,0.25,0.5", "-n", "20", "--n0", "20"]
    args += ["--noise-samples", "200", "--attack-steps", "3", "--attack-noise-samples", "2", "--batch-size", "200"]
    args += ["--store", str(store), "--out", str(out), "--no-progress", "--device", "cpu", *extra]
    return CliRunner().invoke(main, args)


def test_rbc_certify_writes_the_bracket_per_radius_and_resumes(noisy_model: tuple[str, Path], tmp_path: Path) -> None:
    model, store = noisy_model
    out = tmp_path / "run"
    result = _certify(model, store, out)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "certify.parquet")
    assert sorted(table["radius"]) == [0.0, 0.25, 0.5]
    assert (table["model"] == model).all() and (table["n"] == 20).all()
    # certified accuracy is a lower bound, the attack's an upper bound on the same points: in order at every radius
    assert (table["certified_acc"] <= table["empirical_acc"]).all()
    assert (table["gap"] >= 0).all() and (table["inconsistent"] <= table["inconsistent_allowed"]).all()
    # a noise-trained model certifies some points at radius 0 (CERTIFY returns a correct class there)
    assert table.loc[table["radius"] == 0, "certified_acc"].iloc[0] > 0
    samples = pd.read_parquet(out / "certify_samples.parquet")
    assert len(samples) == 20 and {"pa_lower", "broken@0.25"} <= set(samples.columns)
    assert "certified" in result.output and "empirical" in result.output and "gap" in result.output
    # resume: the finished cell is skipped, the table is unchanged
    again = _certify(model, store, out, "--resume")
    assert again.exit_code == 0, again.output
    cells = list((out / "cells").glob("*.certify.parquet"))
    assert len(cells) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(out / "certify.parquet"), table)


def test_rbc_certify_bad_sigma_is_one_line(noisy_model: tuple[str, Path], tmp_path: Path) -> None:
    from tests.cli_helpers import assert_one_line_error

    model, store = noisy_model
    result = _certify(model, store, tmp_path / "run", "--sigma", "0")
    assert_one_line_error(result, "invalid --sigma 0.0")


# ------------------------------------------------------------------------------------------------ item 3: corruptions


def _evaluate(model: str, store: Path, out: Path, threat: str, *extra: str) -> object:
    args = ["evaluate", "-m", model, "--threat", threat, "-n", "30", "--store", str(store), "--out", str(out)]
    return CliRunner().invoke(main, [*args, "--no-progress", "--device", "cpu", *extra])


def test_rbc_evaluate_routes_a_corruption_threat_to_the_corruptions_cell(
    noisy_model: tuple[str, Path], tmp_path: Path
) -> None:
    from robustbench_cnn.corruptions import benchmark_cells
    from robustbench_cnn.data import load_split
    from robustbench_cnn.evaluation.corruptions import evaluate_corruptions
    from robustbench_cnn.workflows import load_for_dataset

    model, store = noisy_model
    result = _evaluate(model, store, tmp_path / "one", "corruption:fog:3")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "one" / "corruptions.parquet")
    assert list(table["corruption"]) == ["fog", "mean"] and list(table["severity"]) == [3, 0]
    assert (table["benchmark"] == "mnist-c").all() and (table["model"] == model).all()
    # the cell computes what the library computes on the same points and seed
    net, _ = load_for_dataset(model, "digits", "cpu", store)
    split = load_split("digits", "test", n=30)
    direct = evaluate_corruptions(net, split.x, split.y, "corruption:fog:3", indices=split.index)
    assert table["accuracy"].iloc[0] == pytest.approx(direct.cells[0]["accuracy"], abs=1e-12)
    assert pd.read_parquet(tmp_path / "one" / "summary.parquet").empty  # no attack rows

    every = _evaluate(model, store, tmp_path / "all", "corruptions")
    assert every.exit_code == 0, every.output
    table = pd.read_parquet(tmp_path / "all" / "corruptions.parquet")
    cells = table[table["corruption"] != "mean"]
    assert {(c, s) for c, s in zip(cells["corruption"], cells["severity"])} == set(benchmark_cells("mnist-c"))
    mean = table.loc[table["corruption"] == "mean"]
    assert mean["accuracy"].iloc[0] == pytest.approx(cells["accuracy"].mean(), abs=1e-12)
    assert bool(mean["benchmark_mean"].iloc[0]) and "canny_edges" in every.output


def test_a_corruption_threat_with_eps_or_a_bad_spelling_is_one_line(
    noisy_model: tuple[str, Path], tmp_path: Path
) -> None:
    from tests.cli_helpers import assert_one_line_error

    model, store = noisy_model
    assert_one_line_error(_evaluate(model, store, tmp_path / "a", "corruptions", "--eps", "0.1"), "no epsilon")
    assert_one_line_error(_evaluate(model, store, tmp_path / "b", "corruption:fog:9"), "corruptions:SEVERITY")


# ------------------------------------------------------------------------------------------------ item 4: minimal norm


def test_rbc_attack_with_a_minimal_norm_attack_reports_its_one_run_curve(
    noisy_model: tuple[str, Path], tmp_path: Path
) -> None:
    model, store = noisy_model
    out = tmp_path / "run"
    args = ["attack", "-a", "fmn", "-p", "steps=10", "-m", model, "--threat", "l2", "--eps", "0.5,1,2", "-n", "20"]
    result = CliRunner().invoke(main, [*args, "--store", str(store), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = pd.read_parquet(out / "summary.parquet")
    assert set(summary["attack"]) == {"fmn", "growing-ball", "worst-case"}
    fmn = summary[summary["attack"] == "fmn"].sort_values("eps")
    assert list(fmn["attack_kind"]) == ["minimal-norm"] * 3 and list(fmn["eps"]) == [0.5, 1.0, 2.0]
    # one run: one minimal norm per point, and the curve is the share of points whose norm exceeds eps
    norms = pd.read_parquet(out / "minimal_norms.parquet")
    assert len(norms) == 20
    for eps, robust in zip(fmn["eps"], fmn["robust_acc"]):
        assert robust == pytest.approx(float((norms["minimal_norm"] > eps).mean()), abs=1e-12)
    assert fmn["robust_acc"].is_monotonic_decreasing
    # the reported figure is the per-sample worst case: never above either curve
    wide = summary.pivot(index="eps", columns="attack", values="robust_acc")
    assert (wide["worst-case"] <= wide[["fmn", "growing-ball"]].min(axis=1) + 1e-12).all()
    comparison = pd.read_parquet(out / "minimal_norm.parquet")
    # the library averages in float32: equal to 1e-6 relative
    assert list(comparison["minimal_norm_robust"]) == pytest.approx(list(fmn["robust_acc"]), rel=1e-6)


# ------------------------------------------------------------------------------------------------ item 5: boards


class _Tables(__import__("html.parser").parser.HTMLParser):
    """The rows (lists of cell texts, with the row's class) of every table in each <section id=...>."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[tuple[str, list[str]]]] = {}
        self._section = ""
        self._row: list[str] | None = None
        self._cls = ""
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id") or ""
            self.sections.setdefault(self._section, [])
        elif tag == "tr":
            self._row, self._cls = [], a.get("class") or ""
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.sections[self._section].append((self._cls, self._row))
            self._row = None


def _sections(page: Path) -> dict[str, list[tuple[str, list[str]]]]:
    parser = _Tables()
    parser.feed(page.read_text())
    return parser.sections


def test_the_report_of_a_certify_run_shows_the_bracket_and_flags_inconsistent_points(
    noisy_model: tuple[str, Path], tmp_path: Path
) -> None:
    model, store = noisy_model
    run = tmp_path / "run"
    assert _certify(model, store, run).exit_code == 0
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    rows = _sections(run / "leaderboard.html")["certified-vs-empirical"]
    header, body = rows[0][1], [r for _, r in rows[1:]]
    table = pd.read_parquet(run / "certify.parquet").sort_values("radius")
    assert len(body) == len(table) == 3
    col = {h: i for i, h in enumerate(header)}
    for row, rec in zip(body, table.to_dict("records")):
        low, high = row[col["certified % <= robust <= empirical %"]].split(" <= robust <= ")
        assert float(low) == pytest.approx(100 * rec["certified_acc"], abs=0.05)  # printed with one decimal
        assert float(high) == pytest.approx(100 * rec["empirical_acc"], abs=0.05)
        assert float(low) <= float(high) and row[col["status"]] == "consistent"
        assert float(row[col["gap (pp)"]]) == pytest.approx(100 * rec["gap"], abs=0.05)
    assert "## Certified vs empirical" in (run / "leaderboard.md").read_text()

    # a planted contradiction: more certified points broken than chance allows -> the row is flagged
    from robustbench_cnn.reporting.boards_extra import add_html, certified_board

    bad = table.assign(flags=["", "certified-broken", ""], inconsistent=[0, 5, 0])
    page = tmp_path / "bad.html"
    page.write_text(add_html("<html><body></body></html>", [certified_board(bad)]))
    flagged = [(cls, r) for cls, r in _sections(page)["certified-vs-empirical"][1:] if cls == "inconsistent"]
    assert len(flagged) == 1 and flagged[0][1][col["status"]] == "INCONSISTENT" and flagged[0][1][2] == "0.25"


def test_report_exports_robustbench_entries_and_reads_them_back_as_external_rows(
    noisy_model: tuple[str, Path], tmp_path: Path
) -> None:
    model, store = noisy_model
    run = tmp_path / "corr"
    assert _evaluate(model, store, run, "corruptions").exit_code == 0
    exported = tmp_path / "model_info"
    result = CliRunner().invoke(main, ["report", str(run), "--robustbench-json", str(exported), "--store", str(store)])
    assert result.exit_code == 0, result.output
    files = sorted(exported.glob("*/*/*.json"))
    assert len(files) == 1 and files[0].parent.name == "corruptions"
    mean = pd.read_parquet(run / "corruptions.parquet").query("corruption == 'mean'")["accuracy"].iloc[0]
    assert json.loads(files[0].read_text())["corruptions_acc"] == f"{100 * mean:.2f}"
    # the corruptions board ranks by the mean, and the exported entry comes back as an external reference row
    result = CliRunner().invoke(main, ["report", str(run), "--reference", str(exported)])
    assert result.exit_code == 0, result.output
    sections = _sections(run / "leaderboard.html")
    header, row = sections["corruptions"][0][1], sections["corruptions"][1][1]
    assert row[header.index("mean corruption %")] == f"{100 * mean:.1f}"
    ref_header, ref_rows = sections["external-references"][0][1], sections["external-references"][1:]
    assert len(ref_rows) == 1 and ref_rows[0][1][ref_header.index("external")] == "external"
    assert ref_rows[0][1][ref_header.index("robust %")] == f"{100 * mean:.1f}"


# ------------------------------------------------------------------------------------------------ item 6: plans


def test_a_plan_emits_corruptions_and_certify_cells_from_its_tables(tmp_path: Path) -> None:
    from robustbench_cnn.core.errors import RbcError
    from robustbench_cnn.pipeline.plan import load_plan, parse_plan

    base = {
        "datasets": ["digits"],
        "n": 50,
        "threat": {"norm": "l2", "eps": [0.0, 0.5]},
        "models": [{"arch": "fastcnn"}, {"arch": "fastcnn", "recipe": "gaussian-noise", "threat": "l2:0.5"}],
        "corruptions": {"threat": "corruption:fog:3", "n": 20},
        "certify": {"models": ["fastcnn-gaussian-noise"], "sigma": 0.25, "radii": [0, 0.25], "n": 10},
    }
    cells = parse_plan(base).cells(store=tmp_path / "store")
    corr = [c for c in cells if c.kind == "corruptions"]
    cert = [c for c in cells if c.kind == "certify"]
    assert len(corr) == 2 and {c.params["threat"] for c in corr} == {"corruption:fog:3"} and corr[0].n == 20
    assert [c.model for c in cert] == ["digits/fastcnn-gaussian-noise"] and cert[0].n == 10
    assert cert[0].params["radii"] == [0.0, 0.25] and cert[0].params["sigma"] == 0.25
    train = next(c for c in cells if c.kind == "defense-train" and c.model == "digits/fastcnn-gaussian-noise")
    assert cert[0].after == (train.ref,)  # certified after the model is trained
    for bad, message in (
        ({"certify": {"sigma": 0}}, "invalid --sigma"),
        ({"certify": {"sigma": 0.25, "radius": [1]}}, "certify] key 'radius' (did you mean 'radii'"),
        ({"corruptions": {"threat": "corruption:fog:7"}}, "invalid corruption threat"),
    ):
        with pytest.raises(RbcError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_plan({**base, **bad})
    mnist = load_plan("mnist")
    assert mnist.certify is not None and mnist.corruptions is not None
    kinds = [c.kind for c in mnist.cells(store=tmp_path / "store")]
    assert kinds.count("certify") == 1 and kinds.count("corruptions") == len(mnist.models)
