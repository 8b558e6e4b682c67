"""Projected gradient descent (Madry et al.), linf and l2, with restarts and early stopping."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_cnn.attacks.base import Attack
from robustbench_cnn.attacks.functional import eot_loss_and_grad, is_adversarial
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.geometry import ascent_step, random_start
from robustbench_cnn.core.types import Norm, ThreatModel

#: Default step: ``2.5 * eps / steps`` (Madry et al. 2018), so the iterates can cross the ball whatever the
#: number of steps; foolbox's fixed 0.01/0.3 (linf) only crosses it with >= 40 steps (``docs/measurements.md``).
DEFAULT_STEP_TRAVEL = 2.5


@ATTACKS.register("pgd")
class PGD(Attack):
    """Projected Gradient Descent.

    Paper: Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", ICLR 2018 (https://arxiv.org/abs/1706.06083).

    Distance: linf (signed steps), l2 (normalised steps); each step is projected onto the eps ball
    and [0, 1].

    Arguments:
        steps (int): gradient steps per restart (default 40).
        rel_stepsize (float | None): step size relative to eps; None = ``2.5 / steps`` (Madry et al.;
            foolbox's fixed defaults are linf 0.01/0.3 and l2 0.025: pass them for parity).
        abs_stepsize (float | None): absolute step size; takes precedence over rel_stepsize (default None).
        random_start (bool): start the first restart at a uniform point of the ball (default True);
            later restarts always start at random points. A ``start=`` given to the call (warm start,
            see :meth:`Attack.__call__`) replaces the first restart's starting point.
        restarts (int): number of runs (default 1); each runs only on the points still unbroken,
            and a point keeps the first adversarial example found.
        loss (str): ``ce`` (default), ``margin`` (CW) or ``dlr``; descended toward the target
            when targeted.
        early_stop (bool): stop attacking a point as soon as an iterate is adversarial and keep that
            iterate (default True; free, the logits come with each gradient). False keeps only the
            final iterate of each run, as foolbox does.
        eot_samples (int): gradient samples averaged per step, expectation over transformation for
            randomized models (Athalye, Carlini & Wagner 2018; default 1). ``evaluate`` raises it to 20
            when the model is randomized.

    Targeted: yes. Deterministic: only with ``random_start=False`` and ``restarts=1``.
    Cost: ``steps * eot_samples`` forward+backward passes per restart on the still-unbroken points, plus
    one forward.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None.

    Example::

        >>> attack = get_attack("pgd", steps=20, restarts=2)
        >>> result = attack(model, x, y, ThreatModel.parse("linf:0.1"), seed=0)
        >>> result.robust_accuracy
    """

    norms = (Norm.LINF, Norm.L2)
    supports_targeted = True
    deterministic = False
    kind = "white-box"
    black_box = False
    single_step = False
    eot_param = "eot_samples"
    supports_start = True
    fast_gradient_kernels = True
    optional_numbers = frozenset({"rel_stepsize", "abs_stepsize"})
    defaults = {
        "steps": 40,
        "rel_stepsize": None,
        "abs_stepsize": None,
        "random_start": True,
        "restarts": 1,
        "loss": "ce",
        "early_stop": True,
        "eot_samples": 1,
    }
    #: crafting for a transfer, success is the target's: every point gets all its steps on the source
    transfer_defaults = {"early_stop": False}

    def __init__(self, **params):
        super().__init__(**params)
        if int(self.params["steps"]) < 0 or int(self.params["restarts"]) < 1:
            raise ValueError("pgd needs steps >= 0 and restarts >= 1")
        if int(self.params["eot_samples"]) < 1:
            raise ValueError("pgd needs eot_samples >= 1")

    def stepsize(self, threat: ThreatModel) -> float:
        if self.params["abs_stepsize"] is not None:
            return float(self.params["abs_stepsize"])
        rel = self.params["rel_stepsize"]
        if rel is None:
            rel = DEFAULT_STEP_TRAVEL / max(int(self.params["steps"]), 1)
        return float(rel) * threat.eps

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
        start: torch.Tensor | None = None,
    ) -> torch.Tensor:
        p = self.params
        targeted = targets is not None
        labels = targets if targeted else y
        alpha = self.stepsize(threat)
        best = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for restart in range(int(p["restarts"])):
            pos = (~found).nonzero().flatten()  # rows of x still unbroken
            if pos.numel() == 0:
                break
            x0, lab = x[pos], labels[pos]
            box = threat.linf_box(x0)
            if restart == 0 and start is not None:
                xa = start  # warm start (e.g. the last iterate at a smaller eps); restarts stay random
            else:
                xa = random_start(x0, threat, generator) if (p["random_start"] or restart > 0) else x0
            for _ in range(int(p["steps"])):
                logits, grad = eot_loss_and_grad(model, xa, lab, p["loss"], targeted, int(p["eot_samples"]))
                if p["early_stop"]:
                    hit = is_adversarial(logits, lab, targeted)
                    if hit.any():
                        best[pos[hit]], found[pos[hit]] = xa[hit], True
                        keep = ~hit
                        pos, x0, lab, xa, grad = pos[keep], x0[keep], lab[keep], xa[keep], grad[keep]
                        box = (box[0][keep], box[1][keep]) if box is not None else None
                        if pos.numel() == 0:
                            break
                xa = ascent_step(xa, grad, alpha, x0, threat, box)
            if pos.numel():
                best[pos] = xa  # unbroken points return the last iterate (useful for transfer)
                if restart + 1 < int(p["restarts"]):  # the base class re-evaluates after the last run
                    with torch.no_grad():
                        found[pos[is_adversarial(model(xa), lab, targeted)]] = True
        return best
