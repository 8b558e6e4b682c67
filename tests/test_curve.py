"""The growing-epsilon engine (attacks.curve.GrowingBall): carried points, warm starts, and its three callers."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import held_out, trained_model

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.blackbox.transfer import transfer_attack
from robustbench_cnn.attacks.curve import GrowingBall, jittered_start
from robustbench_cnn.core.geometry import project
from robustbench_cnn.core.types import Norm, ThreatModel
from robustbench_cnn.evaluation.engine import evaluate

EPS = [0.05, 0.1, 0.2]


@pytest.fixture(scope="module")
def setup():
    model = trained_model()
    x, y = held_out(60)
    with torch.no_grad():
        logits = model(x)
    return model, x, y, logits


def _ball(setup, attack, **kwargs) -> GrowingBall:
    model, x, y, logits = setup
    correct = logits.argmax(1) == y
    return GrowingBall([attack], model, x, y, attackable=correct, clean_logits=logits, seed=0, **kwargs)


def test_broken_points_are_carried_forward_and_never_attacked_again(setup) -> None:
    ball = _ball(setup, get_attack("fgsm"))
    attacked, broken = [], []
    for eps in EPS:
        (step,) = ball.run(ThreatModel(Norm.LINF, eps))
        attacked.append(set(step.idx.tolist()))
        broken.append(set(step.broken.tolist()))
    assert broken[0] and broken[1]  # FGSM breaks points at each epsilon here, so the check below has content
    for k in range(1, len(EPS)):
        assert attacked[k] == attacked[k - 1] - broken[k - 1]
    assert set(ball.unbroken.nonzero().flatten().tolist()).isdisjoint(set().union(*broken))

    fresh = _ball(setup, get_attack("fgsm"), carry_forward=False)
    runs = [next(iter(fresh.run(ThreatModel(Norm.LINF, eps)))) for eps in EPS]
    assert all(set(r.idx.tolist()) == attacked[0] for r in runs)  # every attackable point, at every epsilon


def test_warm_start_continues_from_the_last_iterate(setup) -> None:
    # three PGD steps at the small epsilon; then no steps, so the large epsilon's output is its (projected) start:
    # with warm starts, the previous output plus a uniform jitter of the epsilon increment, seeded by the ball
    _, x, _, _ = setup
    small, large = ThreatModel(Norm.LINF, 0.05), ThreatModel(Norm.LINF, 0.1)

    def runs(warm_start: bool) -> tuple[torch.Tensor, torch.Tensor]:
        pgd = get_attack("pgd", steps=3, early_stop=False)
        ball = _ball(setup, pgd, warm_start=warm_start)
        (first,) = ball.run(small)
        pgd.params["steps"] = 0
        (second,) = ball.run(large)
        rows = torch.searchsorted(first.idx, second.idx)  # the second run's points among the first run's
        assert second.idx.numel() > 10 and torch.equal(first.idx[rows], second.idx)
        jittered = jittered_start(first.result.x_adv[rows], Norm.LINF, 0.1 - 0.05, seed=0)
        expected = project(project(jittered, x[second.idx], large), x[second.idx], large)  # start, then output
        return second.result.x_adv, expected

    got, expected = runs(warm_start=True)
    assert torch.equal(got, expected)
    got, expected = runs(warm_start=False)
    assert not torch.allclose(got, expected, atol=1e-3)  # a fresh start is elsewhere in the ball


def test_every_growing_epsilon_loop_runs_on_the_ball(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    model, x, y, _ = setup
    calls: list[float] = []
    run = GrowingBall.run

    def counted(self, threat, before=None):
        calls.append(threat.eps)
        yield from run(self, threat, before)

    monkeypatch.setattr(GrowingBall, "run", counted)
    get_attack("fgsm").robustness_curve(model, x, y, "linf", EPS)
    assert calls == EPS
    calls.clear()
    evaluate(model, x, y, "linf", [0.0, *EPS], "fgsm")
    assert calls == EPS  # eps 0 is the cascade's second clean pass, not an attack
    calls.clear()
    transfer_attack(trained_model(200, 1), model, x, y, "linf", "fgsm", EPS)
    assert calls == EPS
