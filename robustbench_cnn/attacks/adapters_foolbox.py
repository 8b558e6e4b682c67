"""foolbox 3 attacks behind the :class:`~attacks.base.Attack` contract.

The model is wrapped once per mini-batch as ``foolbox.PyTorchModel(model, bounds=(0, 1),
device=x.device)``. foolbox draws from torch's global RNG, so each call runs inside
:func:`~attacks.functional.seeded_global_rng` with the call's seed (the global RNG is restored
afterwards). Decision-based attacks count model queries through :class:`QueryCounter`.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks.base import Attack, PerturbOutput
from robustbench_cnn.attacks.functional import seeded_global_rng
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.types import Norm, ThreatModel


class QueryCounter(nn.Module):
    """Wraps a model and counts the inputs (rows) it is queried on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return self.model(x)


def _criterion(y: torch.Tensor, targets: torch.Tensor | None) -> Any:
    import foolbox as fb

    if targets is not None:
        return fb.criteria.TargetedMisclassification(targets)
    return fb.criteria.Misclassification(y)


def _fmodel(model: nn.Module, device: torch.device) -> Any:
    import foolbox as fb

    return fb.PyTorchModel(model, bounds=(0, 1), device=device)


class _FoolboxAttack(Attack):
    """Runs ``self.build(threat)`` via foolbox's ``__call__`` and returns its raw output."""

    black_box = False
    single_step = False
    eot_param = None

    def build(self, threat: ThreatModel) -> Any:
        raise NotImplementedError

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        attack = self.build(threat)
        with seeded_global_rng(generator.initial_seed(), x.device):
            raw, _, _ = attack(_fmodel(model, x.device), x, _criterion(y, targets), epsilons=threat.eps)
        return raw


@ATTACKS.register("cw-l2")
class CarliniWagnerL2(_FoolboxAttack):
    """Carlini & Wagner L2 attack (foolbox ``L2CarliniWagnerAttack``).

    Paper: Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017
    (https://arxiv.org/abs/1608.04644).

    Distance: l2 (minimal-norm attack; the result is then projected onto the eps ball).

    Arguments (foolbox defaults):
        binary_search_steps (int): searches over the constant c (default 9).
        steps (int): Adam steps per constant (default 10000).
        stepsize (float): Adam step size (default 0.01).
        confidence (float): required logit margin (default 0).
        initial_const (float): first c (default 0.001).
        abort_early (bool): stop a search when the loss stalls (default True).

    Targeted: yes. Deterministic: yes.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> get_attack("cw-l2", steps=200)(model, x, y, ThreatModel.parse("l2:0.5")).robust_accuracy
    """

    norms = (Norm.L2,)
    supports_targeted = True
    deterministic = True
    kind = "white-box"
    defaults = {
        "binary_search_steps": 9,
        "steps": 10000,
        "stepsize": 0.01,
        "confidence": 0.0,
        "initial_const": 0.001,
        "abort_early": True,
    }

    def build(self, threat: ThreatModel) -> Any:
        import foolbox as fb

        return fb.attacks.L2CarliniWagnerAttack(**self.params)


@ATTACKS.register("deepfool")
class DeepFool(_FoolboxAttack):
    """DeepFool (foolbox ``LinfDeepFoolAttack`` / ``L2DeepFoolAttack`` by norm).

    Paper: Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool
    deep neural networks", CVPR 2016 (https://arxiv.org/abs/1511.04599).

    Distance: linf, l2 (minimal-norm attack; the result is then projected onto the eps ball).

    Arguments (foolbox defaults):
        steps (int): maximum iterations (default 50).
        candidates (int | None): most likely classes considered (default 10).
        overshoot (float): step overshoot (default 0.02).
        loss (str): ``logits`` (default) or ``crossentropy``.

    Targeted: no. Deterministic: yes.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> get_attack("deepfool")(model, x, y, ThreatModel.parse("linf:0.1")).robust_accuracy
    """

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = False
    deterministic = True
    kind = "white-box"
    defaults = {"steps": 50, "candidates": 10, "overshoot": 0.02, "loss": "logits"}

    def build(self, threat: ThreatModel) -> Any:
        import foolbox as fb

        cls = fb.attacks.LinfDeepFoolAttack if threat.norm is Norm.LINF else fb.attacks.L2DeepFoolAttack
        return cls(**self.params)


@ATTACKS.register("foolbox-pgd")
class FoolboxPGD(_FoolboxAttack):
    """PGD as implemented by foolbox (``LinfPGD`` / ``L2PGD``): the cross-check reference for ``pgd``.

    Paper: Madry et al., ICLR 2018 (https://arxiv.org/abs/1706.06083).

    Distance: linf, l2.

    Arguments (foolbox defaults; None picks the norm's default):
        steps (int | None): gradient steps (linf 40, l2 50).
        rel_stepsize (float | None): step relative to eps (linf 0.01/0.3, l2 0.025).
        abs_stepsize (float | None): absolute step, takes precedence (default None).
        random_start (bool): uniform start in the ball (default True).

    Targeted: yes. Deterministic: only with ``random_start=False``. Returns the final iterate.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> get_attack("foolbox-pgd", random_start=False)(model, x, y, ThreatModel.parse("linf:0.1"))
    """

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = True
    deterministic = False
    kind = "white-box"
    optional_numbers = frozenset({"steps", "rel_stepsize", "abs_stepsize"})
    defaults = {"steps": None, "rel_stepsize": None, "abs_stepsize": None, "random_start": True}

    def build(self, threat: ThreatModel) -> Any:
        import foolbox as fb

        cls = (
            fb.attacks.LinfProjectedGradientDescentAttack
            if threat.norm is Norm.LINF
            else fb.attacks.L2ProjectedGradientDescentAttack
        )
        kwargs = {k: v for k, v in self.params.items() if v is not None}
        return cls(**kwargs)


class _DecisionAttack(Attack):
    """Decision-based foolbox attack: own initialisation, then ``run`` from adversarial starts.

    Starting points come from foolbox's ``LinearSearchBlendedUniformNoiseAttack`` (what the
    attacks use by default); points for which no adversarial start is found are returned
    unchanged instead of failing the whole batch. Queries are counted on the wrapped model and
    reported per sample as the batch total divided by the batch size (foolbox advances all
    samples of a batch in lockstep).
    """

    kind = "decision"
    black_box = True
    single_step = False
    eot_param = None
    supports_targeted = False
    deterministic = False

    def build(self, threat: ThreatModel) -> Any:
        raise NotImplementedError

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        import foolbox as fb

        counter = QueryCounter(model).eval()
        fmodel = _fmodel(counter, x.device)
        init = fb.attacks.LinearSearchBlendedUniformNoiseAttack(
            directions=int(self.params["init_directions"]), steps=int(self.params["init_steps"])
        )
        out = x.clone()
        with seeded_global_rng(generator.initial_seed(), x.device):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*failed to draw sufficient random.*")
                starts = init.run(fmodel, x, _criterion(y, None))
            with torch.no_grad():
                ok = counter(starts).argmax(dim=1) != y
            if ok.any():
                advs = self.build(threat).run(
                    fmodel, x[ok], _criterion(y[ok], None), starting_points=starts[ok], early_stop=threat.eps
                )
                out[ok] = advs.detach()
        per_sample = -(-counter.rows // max(x.shape[0], 1))  # ceil
        return out, torch.full((x.shape[0],), per_sample, dtype=torch.int64, device=x.device)


@ATTACKS.register("boundary")
class Boundary(_DecisionAttack):
    """Boundary Attack (foolbox ``BoundaryAttack``), decision-based.

    Paper: Brendel, Rauber & Bethge, "Decision-Based Adversarial Attacks: Reliable Attacks Against
    Black-Box Machine Learning Models", ICLR 2018 (https://arxiv.org/abs/1712.04248).

    Distance: l2 (minimal-norm attack; the result is then projected onto the eps ball).

    Arguments (foolbox defaults):
        steps (int): maximum steps (default 25000).
        spherical_step (float): initial orthogonal step (default 0.01).
        source_step (float): initial step toward the original (default 0.01).
        source_step_convergance (float): stop when source_step falls below (default 1e-7).
        step_adaptation (float): step size factor (default 1.5).
        update_stats_every_k (int): success statistics period (default 10).
        init_directions (int): random draws to find an adversarial start (default 1000).
        init_steps (int): line-search steps toward the start (default 50).

    Targeted: no. Deterministic: no (seeded). Queries: counted (``result.queries``).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> res = get_attack("boundary", steps=1000)(model, x, y, ThreatModel.parse("l2:1.0"))
        >>> res.queries.float().mean()
    """

    norms = (Norm.L2,)
    defaults = {
        "steps": 25000,
        "spherical_step": 0.01,
        "source_step": 0.01,
        "source_step_convergance": 1e-7,
        "step_adaptation": 1.5,
        "update_stats_every_k": 10,
        "init_directions": 1000,
        "init_steps": 50,
    }

    def build(self, threat: ThreatModel) -> Any:
        import foolbox as fb

        kwargs = {k: v for k, v in self.params.items() if not k.startswith("init_")}
        return fb.attacks.BoundaryAttack(**kwargs)


@ATTACKS.register("hopskipjump")
class HopSkipJump(_DecisionAttack):
    """HopSkipJump Attack (foolbox ``HopSkipJumpAttack``), decision-based.

    Paper: Chen, Jordan & Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack",
    IEEE S&P 2020 (https://arxiv.org/abs/1904.02144).

    Distance: linf, l2 (foolbox's ``constraint`` follows the threat's norm; minimal-norm attack,
    then projected onto the eps ball).

    Arguments (foolbox defaults):
        steps (int): optimisation iterations (default 64).
        initial_gradient_eval_steps (int): queries for the first gradient estimate (default 100).
        max_gradient_eval_steps (int): cap on gradient-estimate queries (default 10000).
        stepsize_search (str): ``geometric_progression`` (default) or ``grid_search``.
        gamma (float): binary-search threshold factor (default 1.0).
        init_directions (int): random draws to find an adversarial start (default 1000).
        init_steps (int): line-search steps toward the start (default 50).

    Targeted: no. Deterministic: no (seeded). Queries: counted (``result.queries``).

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64.

    Example::

        >>> res = get_attack("hopskipjump", steps=10)(model, x, y, ThreatModel.parse("linf:0.1"))
        >>> res.queries.float().mean()
    """

    norms = (Norm.LINF, Norm.L2)
    defaults = {
        "steps": 64,
        "initial_gradient_eval_steps": 100,
        "max_gradient_eval_steps": 10000,
        "stepsize_search": "geometric_progression",
        "gamma": 1.0,
        "init_directions": 1000,
        "init_steps": 50,
    }

    def build(self, threat: ThreatModel) -> Any:
        import foolbox as fb

        kwargs = {k: v for k, v in self.params.items() if not k.startswith("init_")}
        return fb.attacks.HopSkipJumpAttack(constraint="linf" if threat.norm is Norm.LINF else "l2", **kwargs)
