"""The one attack base class: subclasses implement ``perturb``; ``__call__`` does the shared work.

``Attack.__call__`` (final) validates the inputs, puts the model in eval mode and restores it,
skips points that need no attack, runs ``perturb`` in mini-batches with a seeded generator,
projects every result onto the epsilon ball and [0, 1], re-evaluates the model and builds the
:class:`~robustbench_cnn.core.types.AttackResult`. So the threat-model contract holds for every attack,
native or library-backed, whatever its ``perturb`` returns.

An attack declares its kind of threat model (``threat_kind``): a norm ball (``ThreatModel``, the default) or a
patch (:class:`~robustbench_cnn.core.patch_threat.PatchThreat`). For a patch attack ``perturb`` returns the batch
and the mask of its patch; ``__call__`` checks the mask against the patch budget and keeps the clean pixels
outside it (the patch's "projection"), the pixels inside it clipped to [0, 1].
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any, ClassVar, final

import torch
from torch import nn

from robustbench_cnn.attacks.curve import BallStep, GrowingBall, shrinking_ball
from robustbench_cnn.attacks.functional import make_generator
from robustbench_cnn.core.batchnorm_folding import folded_batchnorm
from robustbench_cnn.core.geometry import project
from robustbench_cnn.core.input_gradients import fast_input_gradients
from robustbench_cnn.core.model_utils import batched_logits, cpu_layout, eval_mode
from robustbench_cnn.core.patch_threat import PatchThreat
from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel, parse_bool

__all__ = ["Attack", "PerturbOutput", "project"]

#: What ``perturb`` may return: the adversarial batch, or it and per-sample query counts (int64 [n]).
PerturbOutput = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

KINDS = ("white-box", "score", "decision")
#: The kinds of threat model an attack works in: a norm ball (ThreatModel) or an adversarial patch (PatchThreat).
THREAT_KINDS = ("ball", "patch")


class Attack:
    """Base class of every attack (native or adapter).

    Class attributes describe the attack:

    - ``threat_kind``: ``"ball"`` (default: a :class:`ThreatModel` norm ball) or ``"patch"`` (a
      :class:`PatchThreat`; ``norms`` is then empty and ``perturb`` returns ``(batch, mask)``);
    - ``norms``: the norms it supports (a call with another norm raises ``ValueError``);
    - ``supports_targeted``: whether user-supplied ``targets`` are accepted;
    - ``deterministic``: the result does not depend on ``seed`` (no randomness at all);
    - ``kind``: ``"white-box"`` (gradients), ``"score"`` (logits only) or ``"decision"`` (labels only);
    - ``black_box``: the attack only queries the model (True exactly for the score and decision kinds); the
      evaluation flags a black-box attack that breaks points the white-box ones missed;
    - ``single_step``: one gradient step (FGSM-like); the evaluation flags a single-step attack that breaks
      points the iterative ones missed (gradient masking);
    - ``eot_param``: the name of the parameter that sets the gradient samples per step (expectation over
      transformation, e.g. ``"eot_samples"``), or None when the attack cannot average gradients;
    - ``supports_start``: ``perturb`` accepts ``start=`` (warm start from given points, e.g. the last
      iterates at a smaller epsilon along a robustness curve);
    - ``curve_order``: how a cascade runs the attack along a robustness curve: ``"ascending"`` (default: on the
      growing ball, a point broken at a smaller epsilon is not attacked at larger ones) or ``"descending"`` (a
      trailing check, e.g. the Square check: run from the largest epsilon down, a point it leaves unbroken at an
      epsilon is not checked at smaller ones; :func:`~robustbench_cnn.attacks.curve.shrinking_checks`);
    - ``universal``: one perturbation is shared by all the points of a call (a universal patch), learned by
      :meth:`prepare` before the mini-batches run;
    - ``fast_gradient_kernels``: the attack's own passes run on faster kernels of the same function: the model
      with batch norm folded into the convolution before it (:mod:`core.batchnorm_folding`, any device) and the
      first-layer input-gradient kernels of :mod:`core.input_gradients` (CPU); the clean prediction and the verdict
      on each adversarial example stay the given model's (native gradient attacks; library adapters keep the model
      and autograd's kernels, so they match the library exactly);
    - ``defaults``: every hyper-parameter with its default; ``Attack(**params)`` overrides them and
      ``self.params`` (recorded in each result) is the full, JSON-serialisable set;
    - ``transfer_defaults``: the defaults that differ when the attack crafts on a source model for a transfer
      attack (:mod:`attacks.blackbox.transfer`), e.g. FGSM's smoothed margin gradient.

    Subclasses implement :meth:`perturb` and never override :meth:`__call__`.
    """

    threat_kind: ClassVar[str] = "ball"
    norms: ClassVar[tuple[Norm, ...]] = (Norm.LINF, Norm.L2)
    universal: ClassVar[bool] = False
    supports_targeted: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    kind: ClassVar[str] = "white-box"
    black_box: ClassVar[bool] = False
    single_step: ClassVar[bool] = False
    eot_param: ClassVar[str | None] = None
    supports_start: ClassVar[bool] = False
    curve_order: ClassVar[str] = "ascending"
    fast_gradient_kernels: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    transfer_defaults: ClassVar[dict[str, Any]] = {}
    #: parameters whose default is None but which take a number when given (checked like numeric defaults)
    optional_numbers: ClassVar[frozenset[str]] = frozenset()
    registry_name: ClassVar[str] = ""
    #: the fewest model outputs (classes) the attack works with
    min_classes: ClassVar[int] = 2

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override Attack.__call__; implement perturb()")
        if cls.kind not in KINDS:
            raise TypeError(f"{cls.__name__}.kind must be one of {', '.join(KINDS)}")
        if cls.black_box != (cls.kind != "white-box"):
            raise TypeError(f"{cls.__name__}.black_box must be {cls.kind != 'white-box'} for a {cls.kind} attack")
        if cls.eot_param is not None and cls.eot_param not in cls.defaults:
            raise TypeError(f"{cls.__name__}.eot_param {cls.eot_param!r} is not one of its parameters")
        if cls.threat_kind not in THREAT_KINDS:
            raise TypeError(f"{cls.__name__}.threat_kind must be one of {', '.join(THREAT_KINDS)}")
        if (cls.threat_kind == "patch") == bool(cls.norms):
            raise TypeError(f"{cls.__name__}: a patch attack has no norms and a norm-ball attack has at least one")

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"invalid parameter(s) {', '.join(unknown)} for attack {self.name!r}: accepted: {accepted}"
            )
        for key, default in self.defaults.items():  # KEY=False from the command line is the string 'False'
            if isinstance(default, bool) and key in params:
                try:
                    params[key] = parse_bool(params[key])
                except ValueError:
                    raise ValueError(
                        f"invalid {key} {params[key]!r} for attack {self.name!r}: must be true or false"
                    ) from None
            elif (isinstance(default, (int, float)) or key in self.optional_numbers) and key in params:
                params[key] = self._number(key, params[key])
        self.params: dict[str, Any] = {**self.defaults, **params}

    def _number(self, key: str, value: Any) -> Any:
        """A numeric parameter as its number: text that is no number (``-p steps=abc``) is an error naming it,
        and a count (integer default) is an ``int`` (``-p steps=1e3`` arrives as 1000.0, which the libraries'
        loops reject) or an error when it is not whole."""
        default = self.defaults[key]
        number = value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                raise ValueError(
                    f"invalid {key} {value!r} for attack {self.name!r}: must be a number (default {default!r})"
                ) from None
        if isinstance(default, int) and isinstance(number, float):
            if not number.is_integer():
                raise ValueError(
                    f"invalid {key} {value!r} for attack {self.name!r}: must be a whole number (default {default!r})"
                )
            return int(number)
        return number if isinstance(value, str) else value

    @property
    def name(self) -> str:
        return self.registry_name or type(self).__name__.lower()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------------------- to implement
    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        """Adversarial examples for ``x`` (n x C x H x W, all correctly classified, eps > 0).

        ``targets`` is None (untargeted) or int64 [n] with ``targets != y``. ``model`` is in eval
        mode with frozen parameters. Draw randomness only from ``generator``. The result need not
        be projected: the caller projects onto the eps ball and [0, 1]. Return the batch, or
        ``(batch, queries)`` with int64 per-sample query counts for black-box attacks.

        Attacks with ``supports_start = True`` also accept a keyword ``start`` (n x C x H x W, inside the
        ball and [0, 1], or None): the first run starts there instead of at its usual starting point.
        """
        raise NotImplementedError

    def prepare(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel | PatchThreat,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> None:
        """Called once per call, before the mini-batches, with every point about to be attacked (model in eval
        mode, gradients enabled). A ``universal`` attack learns its one shared perturbation here; the default does
        nothing."""

    # ------------------------------------------------------------------------------ shared helpers
    project = staticmethod(project)

    # --------------------------------------------------------------------------------- the contract
    @final
    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel | PatchThreat,
        *,
        targets: torch.Tensor | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        clean_logits: torch.Tensor | None = None,
        start: torch.Tensor | None = None,
    ) -> AttackResult:
        """Attack ``model`` on ``(x, y)`` within ``threat``; per-sample results in an AttackResult.

        Args:
            model: an ``nn.Module`` returning logits (N x K); its train/eval mode is restored.
            x: float images N x C x H x W in [0, 1] (not modified).
            y: int64 labels [N] (not modified).
            threat: the norm ball; ``threat.norm`` must be in ``self.norms``. A patch attack
                (``threat_kind = "patch"``) takes a :class:`PatchThreat` instead.
            targets: int64 target classes [N] for a targeted attack (``supports_targeted`` only);
                points whose target equals their label are skipped (success False).
            seed: seeds the ``torch.Generator`` handed to ``perturb``: same seed, same result.
            batch_size: attack in mini-batches of this size (default: all points at once).
                Same seed and same batch_size give the same result.
            clean_logits: the model's logits on ``x`` (N x K) when the caller already has them, as
                :func:`~robustbench_cnn.evaluation.engine.evaluate` does: saves the clean forward pass.
            start: warm-start points (N x C x H x W) for attacks with ``supports_start`` (projected onto
                the ball and [0, 1] first; ignored by the others); e.g. the previous epsilon's ``x_adv``.

        Returns an AttackResult whose ``x_adv[i]`` is the attack's projected output for every
        attacked point (successful or not, useful for transfer) and ``x[i]`` for skipped points
        (misclassified, target == label, or ``eps == 0``); ``perturbation_norm`` is
        ``||x_adv - x||`` in the threat's norm for every point (for a patch: the fraction of pixels changed, and
        ``mask`` says where each patch lies).
        """
        t0 = time.perf_counter()
        self._validate(x, y, threat, targets, batch_size)
        y = y.to(x.device)
        targets = targets.to(x.device) if targets is not None else None
        n = x.shape[0]
        x_adv = x.detach().clone()
        queries = torch.zeros(n, dtype=torch.int64, device=x.device)
        target = targets.clone() if targets is not None else torch.full_like(y, -1)
        bs = batch_size or max(n, 1)
        patch = isinstance(threat, PatchThreat)
        masks = torch.zeros(n, 1, *x.shape[2:], dtype=torch.bool, device=x.device) if patch else None
        active = threat.area > 0 if isinstance(threat, PatchThreat) else threat.eps > 0

        if clean_logits is not None:
            if clean_logits.dim() != 2 or clean_logits.shape[0] != n:
                raise ValueError(f"clean_logits must be N x K with N = {n}, got {tuple(clean_logits.shape)}")
        if start is not None and (not isinstance(start, torch.Tensor) or start.shape != x.shape):
            raise ValueError(f"start must be a tensor of the shape of x {tuple(x.shape)}")
        if start is not None:
            start = start.detach().to(device=x.device, dtype=x.dtype)  # indexed below with x's indices

        # the architecture's declared CPU memory layout, NCHW again after
        with eval_mode(model), cpu_layout(model, x.device), torch.no_grad():
            if clean_logits is None:
                clean_logits = batched_logits(model, x, bs)
            if n:
                pred, num_classes = clean_logits.argmax(dim=1).to(x.device), int(clean_logits.shape[1])
                self._validate_classes(y, targets, num_classes)
            else:
                pred = torch.zeros(0, dtype=torch.int64, device=x.device)
            clean_correct = pred == y
            todo = clean_correct.clone()
            if targets is not None:
                todo &= targets != y
            pred_adv = pred.clone()
            idx = todo.nonzero().flatten()
            if active and idx.numel():
                # the attack's own passes may run on a faster copy of the same function (batch norm folded into the
                # convolution before it, core/batchnorm_folding.py), made only when there is something to attack;
                # the clean prediction above and the verdict on each x_adv below are the given model's own
                attacked = folded_batchnorm(model) if self.fast_gradient_kernels else model
                with fast_input_gradients(attacked, enabled=self.fast_gradient_kernels):
                    generator = make_generator(seed, x.device)
                    with torch.enable_grad():
                        self.prepare(
                            attacked, x[idx], y[idx], threat, targets[idx] if targets is not None else None, generator
                        )
                    for chunk in idx.split(bs):
                        xb, yb = x[chunk], y[chunk]
                        tb = targets[chunk] if targets is not None else None
                        extra = {}
                        if start is not None and self.supports_start:
                            extra["start"] = project(start[chunk], xb, threat)
                        with torch.enable_grad():
                            out = self.perturb(attacked, xb, yb, threat, tb, generator, **extra)
                        adv, q = out if isinstance(out, tuple) else (out, None)
                        adv = self._check_output(adv, xb)
                        if isinstance(threat, PatchThreat):
                            mask = self._check_mask(q, xb, threat)
                            q = None
                            adv = torch.where(mask, adv.clamp(0.0, 1.0), xb)  # the clean image outside the patch
                            masks[chunk] = mask  # type: ignore[index]
                        else:
                            adv = project(adv, xb, threat)
                        x_adv[chunk] = adv
                        pred_adv[chunk] = model(adv).argmax(dim=1)
                        if q is not None:
                            queries[chunk] = q.to(device=x.device, dtype=torch.int64)
        if targets is not None:
            success = todo & (pred_adv == targets)
        else:
            success = todo & (pred_adv != y)
        return AttackResult(
            x_adv=x_adv,
            success=success,
            clean_correct=clean_correct,
            perturbation_norm=PatchThreat.measure(x_adv - x) if patch else threat.norm.measure(x_adv - x),
            pred_adv=pred_adv,
            target=target,
            queries=queries,
            threat=threat,
            attack=self.name,
            elapsed_s=time.perf_counter() - t0,
            params=dict(self.params),
            mask=masks,
        )

    # ----------------------------------------------------------------------------- robustness curve
    def robustness_curve(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        norm: Norm | str,
        eps_list: Iterable[float],
        *,
        targets: torch.Tensor | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        order: str = "auto",
    ) -> list[AttackResult]:
        """One :class:`AttackResult` per epsilon (sorted ascending).

        ``order="descending"`` (the default ``"auto"`` for attacks with ``supports_start``, e.g. PGD) runs on
        :func:`~robustbench_cnn.attacks.curve.shrinking_ball`: every point is attacked at the largest epsilon, and
        each smaller epsilon attacks only the points broken at the one above, warm-started at their adversarial
        example (then once from a fresh start); a point the attack fails to break counts as robust there and at
        every smaller epsilon. A point broken at several epsilons keeps, at each, the adversarial example of the
        smallest one (it lies in every larger ball); ``x_adv`` is ``x`` where the point was not attacked at that
        epsilon and unbroken. Its ``queries`` are those spent at its own epsilon.

        ``order="ascending"`` (the default for the other attacks) grows the ball instead, on
        :class:`~robustbench_cnn.attacks.curve.GrowingBall`: a point broken at a smaller epsilon counts as
        broken at every larger one (its ``x_adv`` lies in the larger ball), and each epsilon attacks only the points
        still robust, so the robust accuracy is non-increasing along the curve by construction. The clean forward
        pass runs once, and attacks with ``supports_start`` (PGD) warm-start each still-robust point at its last
        iterate from the previous epsilon (the clean input after an epsilon of 0), jittered by a random step of the
        epsilon increment (:func:`attacks.curve.jittered_start`). Each result's ``x_adv`` is the attack's output
        for the points attacked at its epsilon and the carried adversarial example for the points broken earlier;
        its ``queries`` are those spent at its own epsilon (zero for points already broken), as in
        :func:`robustbench_cnn.evaluation.engine.evaluate`.
        """
        norm = norm if isinstance(norm, Norm) else Norm.parse(str(norm))
        eps_sorted = sorted(float(e) for e in eps_list)
        if not eps_sorted:
            raise ValueError("eps_list is empty: give at least one epsilon")
        threats = [ThreatModel(norm, eps) for eps in eps_sorted]
        self._validate(x, y, threats[0], targets, batch_size)
        with eval_mode(model), torch.no_grad():
            logits = batched_logits(model, x, batch_size or max(x.shape[0], 1))
        y = y.to(x.device)
        targets = targets.to(x.device) if targets is not None else None
        if logits is not None:
            pred = logits.argmax(dim=1).to(x.device)
            self._validate_classes(y, targets, int(logits.shape[1]))
        else:
            pred = torch.zeros(0, dtype=torch.int64, device=x.device)
        clean_correct = pred == y
        if order not in ("auto", "ascending", "descending"):
            raise ValueError(f"order must be auto, ascending or descending, got {order!r}")
        if order == "descending" or (order == "auto" and self.supports_start):
            walk = shrinking_ball(
                self,
                model,
                x,
                y,
                threats,
                attackable=clean_correct,
                clean_logits=logits,
                targets=targets,
                seed=seed,
                batch_size=batch_size,
            )
            return self._curve_results(x, clean_correct, pred, targets, y, threats, walk)
        # the attack itself skips a point whose target is its label (it stays robust)
        ball = GrowingBall(
            [self],
            model,
            x,
            y,
            attackable=clean_correct,
            clean_logits=logits,
            targets=targets,
            seed=seed,
            batch_size=batch_size,
        )
        results: list[AttackResult] = []
        prev: AttackResult | None = None
        for threat in threats:
            t0 = time.perf_counter()
            (step,) = ball.run(threat)
            if prev is None:
                res = AttackResult(
                    x_adv=x.detach().clone(),
                    success=torch.zeros_like(clean_correct),
                    clean_correct=clean_correct,
                    perturbation_norm=torch.zeros(x.shape[0], device=x.device),
                    pred_adv=pred.clone(),
                    target=targets.clone() if targets is not None else torch.full_like(y, -1),
                    queries=torch.zeros(x.shape[0], dtype=torch.int64, device=x.device),
                    threat=threat,
                    attack=self.name,
                    params=dict(self.params),
                )
            else:
                res = AttackResult(
                    x_adv=prev.x_adv.clone(),
                    success=prev.success.clone(),
                    clean_correct=prev.clean_correct.clone(),
                    perturbation_norm=prev.perturbation_norm.clone(),
                    pred_adv=prev.pred_adv.clone(),
                    target=prev.target.clone(),
                    queries=torch.zeros_like(prev.queries),
                    threat=threat,
                    attack=self.name,
                    params=dict(self.params),
                )
            if step.result is not None:
                at, sub = step.idx.to(x.device), step.result
                res.x_adv[at] = sub.x_adv
                res.success[at] = sub.success
                res.perturbation_norm[at] = sub.perturbation_norm
                res.pred_adv[at] = sub.pred_adv
                res.queries[at] = sub.queries
            res.elapsed_s = time.perf_counter() - t0
            results.append(res)
            prev = res
        return results

    def _curve_results(
        self,
        x: torch.Tensor,
        clean_correct: torch.Tensor,
        pred: torch.Tensor,
        targets: torch.Tensor | None,
        y: torch.Tensor,
        threats: list[ThreatModel],
        walk: list[list[BallStep]],
    ) -> list[AttackResult]:
        """The per-epsilon results of a :func:`shrinking_ball` walk, in ascending order; a point broken at a smaller
        epsilon keeps that adversarial example at the larger ones. (A point attacked and left unbroken at an epsilon
        was broken at every larger one, so no output of an unbroken run is carried upwards.)"""
        results: list[AttackResult] = []
        x_adv, pred_adv = x.detach().clone(), pred.clone()
        success = torch.zeros_like(clean_correct)
        for threat, steps in zip(threats, walk):
            queries = torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
            elapsed = 0.0
            for step in steps:
                sub = step.result
                assert sub is not None
                at = step.idx.to(x.device)
                queries[at] += sub.queries
                elapsed += sub.elapsed_s
                new = sub.success & ~success[at]  # broken here and at no smaller epsilon
                x_adv[at[new]], pred_adv[at[new]] = sub.x_adv[new], sub.pred_adv[new]
                success[at[new]] = True
                fail = ~success[at]  # unbroken attacked points return the attack's output
                x_adv[at[fail]], pred_adv[at[fail]] = sub.x_adv[fail], sub.pred_adv[fail]
            results.append(
                AttackResult(
                    x_adv=x_adv.clone(),
                    success=success.clone(),
                    clean_correct=clean_correct.clone(),
                    perturbation_norm=threat.norm.measure(x_adv - x),
                    pred_adv=pred_adv.clone(),
                    target=targets.clone() if targets is not None else torch.full_like(y, -1),
                    queries=queries,
                    threat=threat,
                    attack=self.name,
                    elapsed_s=elapsed,
                    params=dict(self.params),
                )
            )
        return results

    # ---------------------------------------------------------------------------------- validation
    def _validate(self, x: Any, y: Any, threat: Any, targets: Any, batch_size: int | None) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor N x C x H x W, got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a float tensor in [0, 1], got dtype {x.dtype}")
        if x.numel() and (not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1):
            raise ValueError("x must be finite and in [0, 1] (normalisation belongs inside the model)")
        n = x.shape[0]
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (n,):
            desc = f"{tuple(y.shape)} {y.dtype}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be an int64 tensor of shape ({n},), got {desc}")
        if self.threat_kind == "patch":
            if not isinstance(threat, PatchThreat):
                raise ValueError(
                    f"attack {self.name!r} is a patch attack: give a patch threat patch:AREA (e.g. patch:0.1), "
                    f"got {threat}"
                )
            if threat.area > 0 and threat.side(x.shape[2], x.shape[3]) < 1:
                raise ValueError(
                    f"invalid patch threat {threat}: not one pixel of a {x.shape[2]} x {x.shape[3]} image "
                    f"(the smallest patch here is patch:{1 / (x.shape[2] * x.shape[3]):.3g})"
                )
        elif isinstance(threat, PatchThreat):
            supported = ", ".join(nm.value for nm in self.norms)
            raise ValueError(
                f"attack {self.name!r} does not support a patch threat: it attacks in a norm ball ({supported}); "
                "use a patch attack (rbc attacks list, threat patch)"
            )
        elif not isinstance(threat, ThreatModel):
            raise ValueError(f"threat must be a ThreatModel (use ThreatModel.parse), got {threat!r}")
        elif threat.norm not in self.norms:
            supported = ", ".join(nm.value for nm in self.norms)
            raise ValueError(f"attack {self.name!r} does not support norm {threat.norm.value}: supported: {supported}")
        if targets is not None:
            if not self.supports_targeted:
                raise ValueError(f"attack {self.name!r} does not support targeted attacks (targets given)")
            if not isinstance(targets, torch.Tensor) or targets.dtype != torch.int64 or tuple(targets.shape) != (n,):
                desc = (
                    f"{tuple(targets.shape)} {targets.dtype}"
                    if isinstance(targets, torch.Tensor)
                    else type(targets).__name__
                )
                raise ValueError(f"targets must be an int64 tensor of shape ({n},), got {desc}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    @staticmethod
    def _validate_classes(y: torch.Tensor, targets: torch.Tensor | None, num_classes: int) -> None:
        if y.numel() and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"labels y must lie in [0, {num_classes}) for a model with {num_classes} outputs")
        if targets is not None and targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
            raise ValueError(f"targets must lie in [0, {num_classes}) for a model with {num_classes} outputs")

    def _check_mask(self, mask: Any, xb: torch.Tensor, threat: PatchThreat) -> torch.Tensor:
        """A patch attack's mask (bool n x 1 x H x W), checked against the patch budget of ``threat``."""
        shape = (xb.shape[0], 1, *xb.shape[2:])
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
            got = f"{tuple(mask.shape)} {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise RuntimeError(f"patch attack {self.name!r} must return (batch, bool mask {shape}), got mask {got}")
        budget = threat.side(xb.shape[2], xb.shape[3]) ** 2
        over = mask.flatten(1).sum(dim=1) > budget
        if over.any():
            raise RuntimeError(
                f"patch attack {self.name!r} returned a mask of more than {budget} pixels ({threat}) for "
                f"{int(over.sum())} point(s)"
            )
        return mask.to(xb.device)

    def _check_output(self, adv: Any, xb: torch.Tensor) -> torch.Tensor:
        if not isinstance(adv, torch.Tensor) or adv.shape != xb.shape:
            shape = tuple(adv.shape) if isinstance(adv, torch.Tensor) else type(adv).__name__
            raise RuntimeError(f"attack {self.name!r} returned {shape}, expected {tuple(xb.shape)}")
        adv = adv.detach().to(device=xb.device, dtype=xb.dtype)
        bad = ~torch.isfinite(adv.flatten(1)).all(dim=1)
        if bad.any():
            warnings.warn(
                f"attack {self.name!r} returned non-finite values for {int(bad.sum())} "
                "point(s); they are reset to the clean input",
                RuntimeWarning,
                stacklevel=3,
            )
            adv = torch.where(bad.view(-1, 1, 1, 1), xb, adv)
        return adv
