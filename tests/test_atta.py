"""ATTA (Zheng et al. 2020): each training point's perturbation is kept and continued by one step per epoch.

Unit checks of the mechanism on a fixed model (no optimiser step, so what changes between calls is the recipe's own
state); the recipe trained through ``defend`` on digits is in ``tests/test_defenses.py`` (every registered defense
beats standard training on PGD), and on MNIST against FGSM-RS in ``tests/test_single_step_collapse_mnist.py``.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustbench_cnn.defenses import get_defense
from robustbench_cnn.training import StepContext

EPS = 0.1


def _ctx(epoch: int, step: int, rows: torch.Tensor, size: int = 32) -> StepContext:
    return StepContext(epoch, step, 4, 0.1, torch.Generator().manual_seed(epoch), contextlib.nullcontext, rows, size)


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    x = torch.rand(32, 1, 8, 8)
    y = torch.randint(0, 10, (32,))
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    return model, x, y, seen


def test_a_point_continues_from_its_kept_perturbation_not_a_fresh_start() -> None:
    """With a tiny step the second epoch's training points are the first epoch's (up to the step), where a fresh
    random start (FGSM-RS) would put them anywhere in the ball; a point first seen later starts at random."""
    model, x, y, seen = _setup()
    alpha = 1e-4
    recipe = get_defense("atta", f"linf:{EPS}", alpha=alpha, guard=False)
    first = torch.arange(16)
    recipe.loss(model, x[first], y[first], _ctx(0, 0, first))
    epoch1 = seen[-1] - x[first]  # the trained points (the last forward) = the kept perturbations
    assert torch.equal(recipe.kept[first], epoch1)
    assert float(epoch1.abs().amax()) > EPS / 2  # a random start, not the clean point
    recipe.loss(model, x, y, _ctx(1, 0, torch.arange(32)))  # the same 16 points again, and 16 new ones
    epoch2 = seen[-1] - x
    assert float((epoch2[:16] - epoch1).abs().amax()) <= alpha + 1e-6
    fresh = get_defense("fgsm-rs", f"linf:{EPS}", alpha=alpha, guard=False)
    fresh.loss(model, x[first], y[first], _ctx(1, 0, first))
    assert float((seen[-1] - x[first] - epoch1).abs().amax()) > EPS / 2  # what a fresh start would give
    assert bool(recipe.visited.all()) and float(epoch2[16:].abs().amax()) > EPS / 2


def test_kept_perturbations_accumulate_into_a_multi_step_attack_inside_the_ball_and_box() -> None:
    """On a fixed model, six epochs of one step of eps/4 each are PGD-6: the cross-entropy at the kept points rises
    above the first epoch's, and every training point stays in the eps ball and [0, 1]."""
    model, x, y, seen = _setup()
    rows = torch.arange(32)
    recipe = get_defense("atta", f"linf:{EPS}", alpha=EPS / 4, guard=False)
    losses = []
    for epoch in range(6):
        recipe.loss(model, x, y, _ctx(epoch, 0, rows))
        point = seen[-1]
        assert float((point - x).abs().amax()) <= EPS + 1e-6
        assert float(point.min()) >= 0.0 and float(point.max()) <= 1.0
        with torch.no_grad():
            losses.append(float(F.cross_entropy(model(point), y)))
    assert losses[-1] > losses[0]


def test_a_new_run_forgets_the_last_runs_perturbations() -> None:
    model, x, y, _ = _setup()
    rows = torch.arange(32)
    recipe = get_defense("atta", f"linf:{EPS}", guard=False)
    recipe.loss(model, x, y, _ctx(3, 0, rows))
    assert bool(recipe.visited.all())
    recipe.loss(model, x[:8], y[:8], _ctx(0, 0, rows[:8]))  # epoch 0, step 0: a new training run
    assert int(recipe.visited.sum()) == 8


def test_atta_needs_the_loops_point_indices() -> None:
    model, x, y, _ = _setup()
    recipe = get_defense("atta", f"linf:{EPS}", guard=False)
    bare = StepContext(0, 0, 1, 0.1, torch.Generator(), contextlib.nullcontext)
    with pytest.raises(ValueError, match="atta keeps a perturbation per training point"):
        recipe.loss(model, x, y, bare)
