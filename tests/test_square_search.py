"""Our Square loop against pyautoattack's ``SquareAttack.attack_single_run``: the same run, number for number."""

from __future__ import annotations

import pytest
import torch
from attack_fixtures import held_out, trained_model
from pyautoattack.square import SquareAttack
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.square_search import square_search
from robustbench_cnn.core.types import Norm

LIBRARY_NORM = {Norm.LINF: "Linf", Norm.L2: "L2"}


def library_run(model, x, y, norm: Norm, eps: float, n_queries: int, loss: str, rescale: bool, seed: int = 0):
    square = SquareAttack(
        model, norm=LIBRARY_NORM[norm], n_queries=n_queries, eps=eps, p_init=0.8, n_restarts=1, seed=seed,
        loss=loss, resc_schedule=rescale, device=x.device,
    )  # fmt: skip
    square.init_hyperparam(x)
    torch.manual_seed(seed)
    with torch.no_grad():
        queries, x_best = square.attack_single_run(x, y)
    return queries, x_best


def our_run(model, x, y, norm: Norm, eps: float, n_queries: int, loss: str, rescale: bool, seed: int = 0, **kw):
    torch.manual_seed(seed)
    run = square_search(model, x, y, norm, eps, n_queries, loss=loss, rescale_schedule=rescale, **kw)
    return run.queries, run.x_best


class ColourNet(nn.Module):
    """A 3-channel, 10 x 10 conv net (random weights): colour images, windows of several channels."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 25, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize(
    ("norm", "eps", "loss", "rescale"),
    [
        (Norm.LINF, 0.1, "margin", False),
        (Norm.LINF, 0.1, "ce", True),
        (Norm.L2, 1.0, "margin", False),
        (Norm.L2, 1.0, "ce", True),
    ],
)
def test_our_loop_is_the_library_run_number_for_number(norm: Norm, eps: float, loss: str, rescale: bool) -> None:
    torch.set_num_threads(1)
    model = trained_model()
    x, y = held_out(48)
    theirs = library_run(model, x, y, norm, eps, 300, loss, rescale)
    ours = our_run(model, x, y, norm, eps, 300, loss, rescale)
    broken = int((model(ours[1]).argmax(1) != y).sum())
    assert 0 < broken < len(y)  # some points leave the run early, others spend the whole budget
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[1], theirs[1])


@pytest.mark.parametrize("norm", [Norm.LINF, Norm.L2])
def test_colour_images_give_the_library_run_too(norm: Norm) -> None:
    torch.set_num_threads(1)
    model = ColourNet().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 10, 10, generator=g)
    y = model(x).argmax(1)
    eps = 0.03 if norm is Norm.LINF else 0.5
    theirs = library_run(model, x, y, norm, eps, 200, "margin", False)
    ours = our_run(model, x, y, norm, eps, 200, "margin", False)
    assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1])


def test_an_abandoned_run_is_the_run_of_the_short_budget() -> None:
    model = trained_model()
    x, y = held_out(48)
    short = library_run(model, x, y, Norm.LINF, 0.1, 40, "margin", False)
    abandoned = our_run(model, x, y, Norm.LINF, 0.1, 400, "margin", False, abandon_after=40, grow_if=10**6)
    assert torch.equal(abandoned[0], short[0]) and torch.equal(abandoned[1], short[1])
    kept = our_run(model, x, y, Norm.LINF, 0.1, 400, "margin", False, abandon_after=40, grow_if=1)
    full = library_run(model, x, y, Norm.LINF, 0.1, 400, "margin", False)
    assert torch.equal(kept[0], full[0]) and torch.equal(kept[1], full[1])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"loss": "hinge"}, "use margin or ce"),
        ({"n_queries": 0}, "n_queries and n_restarts"),
        ({"p_init": 1.5}, "p_init"),
    ],
)
def test_bad_square_parameters_fail_when_the_attack_is_made(params: dict, message: str) -> None:
    for name in ("square", "square-check"):
        with pytest.raises(ValueError, match=message):
            get_attack(name, **params)
