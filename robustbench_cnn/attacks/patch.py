"""The universal adversarial patch (Brown et al. 2017), trained with expectation over transformation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks.base import Attack, PerturbOutput
from robustbench_cnn.attacks.functional import get_loss, make_generator
from robustbench_cnn.attacks.patch_transforms import EotRanges, eot_apply, paste, random_positions
from robustbench_cnn.attacks.registry import ATTACKS
from robustbench_cnn.core.model_utils import eval_mode
from robustbench_cnn.core.patch_threat import PatchThreat
from robustbench_cnn.core.types import ThreatModel

__all__ = ["UNTARGETED", "UniversalPatch"]

#: Images per forward pass when a restart's patch is scored on the training images.
SCORE_BATCH = 1024
#: The key of the untargeted patch in :attr:`UniversalPatch.patches` (targeted patches are keyed by their class).
UNTARGETED = -1


@ATTACKS.register("patch")
class UniversalPatch(Attack):
    """Universal adversarial patch: one square patch, the same for every image, placed anywhere.

    Paper: Brown, Mané, Roy, Abadi & Gilmer, "Adversarial Patch", 2017 (https://arxiv.org/abs/1712.09665);
    expectation over transformation: Athalye, Engstrom, Ilyas & Kwok, "Synthesizing Robust Adversarial
    Examples", ICML 2018 (https://arxiv.org/abs/1707.07397).

    Distance: patch (threat ``patch:AREA``): a square of ``floor(sqrt(AREA * H * W))`` pixels a side; inside it
    the pixels take the patch's values in [0, 1], outside it none changes. Not a norm ball (``norms`` is empty).

    Training (:meth:`fit`, on training images): Adam on the patch pixels (clipped to [0, 1] after each step);
    each step draws ``batch`` images and, for each, ``eot_samples`` random transformations (a print-and-capture
    simulation: brightness, contrast and pixel noise; then scale, rotation and a random position, see
    :func:`~robustbench_cnn.attacks.patch_transforms.eot_apply`) and ascends the mean ``loss`` of the true label
    (untargeted) or descends that of the target class (targeted: one patch per target class). With ``restarts``
    > 1 it learns that many patches from different random starts and keeps the one with the highest success on the
    training images at random positions (patches from different starts differ by several points of success).

    Evaluation (the call): each image gets the patch at a uniformly random position (seeded), pasted exactly, with
    no transformation. A call uses the patches :meth:`fit` learned for its patch size (and targets); a patch it
    lacks is learned first on the call's own points (a transductive universal patch: what the generic attack
    contract runs), so one call always applies one patch to all its points.

    Arguments:
        steps (int): optimisation steps (default 300).
        lr (float): Adam learning rate, in pixel units (default 0.05).
        batch (int): training images per step (default 64).
        eot_samples (int): transformations drawn per image per step (default 1).
        rotation (float): largest rotation, degrees either way (default 15).
        scale (float): largest relative change of the patch's side, either way (default 0.1).
        brightness (float): largest brightness shift, either way (default 0.1).
        contrast (float): largest relative contrast change, either way (default 0.1).
        noise (float): standard deviation of the printed patch's pixel noise (default 0.02).
        loss (str): ``ce`` (default) or ``margin``.
        restarts (int): patches learned from different random starts, the best on the training images kept
            (default 3).

    Targeted: yes (one patch per target class). Deterministic: no (seeded).
    Cost: ``restarts * steps * batch * eot_samples`` forward+backward passes per patch learned, plus ``restarts``
    forwards of the training images to pick the best; then one forward per point.

    Shapes: x ``N x C x H x W`` in [0, 1]; y ``[N]`` int64; targets ``[N]`` int64 or None. The result's ``mask``
    (bool N x 1 x H x W) says where each image's patch lies.

    Example::

        >>> attack = get_attack("patch", steps=500)
        >>> threat = ThreatModel.parse("patch:0.1")
        >>> attack.fit(model, x_train, y_train, threat, seed=0)  # untargeted; target=3 for a targeted patch
        >>> attack(model, x_test, y_test, threat, seed=1).success_rate
    """

    threat_kind = "patch"
    norms = ()
    supports_targeted = True
    deterministic = False
    kind = "white-box"
    black_box = False
    single_step = False
    universal = True
    eot_param = "eot_samples"
    defaults = {
        "steps": 300,
        "lr": 0.05,
        "batch": 64,
        "eot_samples": 1,
        "rotation": 15.0,
        "scale": 0.1,
        "brightness": 0.1,
        "contrast": 0.1,
        "noise": 0.02,
        "loss": "ce",
        "restarts": 3,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        for key in ("steps", "batch", "eot_samples", "restarts"):
            if p[key] < 1:
                raise ValueError(f"invalid {key} {p[key]!r} for attack 'patch': must be >= 1")
        for key in ("lr", "rotation", "scale", "brightness", "contrast", "noise"):
            if not p[key] >= 0:
                raise ValueError(f"invalid {key} {p[key]!r} for attack 'patch': must be >= 0")
        if p["scale"] >= 1 or p["contrast"] >= 1:
            raise ValueError("invalid scale/contrast for attack 'patch': each must be < 1 (a relative change)")
        get_loss(p["loss"])
        #: learned patches, (side in pixels, target class or UNTARGETED) -> C x side x side in [0, 1]
        self.patches: dict[tuple[int, int], torch.Tensor] = {}
        self._call_patches: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def ranges(self) -> EotRanges:
        p = self.params
        return EotRanges(p["rotation"], p["scale"], p["brightness"], p["contrast"], p["noise"])

    # ------------------------------------------------------------------------------------------- training
    def fit(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: PatchThreat,
        *,
        target: int | None = None,
        seed: int = 0,
    ) -> torch.Tensor:
        """Learn the patch for ``threat``'s size on ``(x, y)`` (training images), untargeted or towards class
        ``target``; it is kept in :attr:`patches` for the calls that follow, and returned (C x s x s)."""
        self._validate(x, y, threat, None, None)
        if threat.area <= 0:
            raise ValueError(f"invalid patch threat {threat}: a patch to learn needs an area > 0")
        side = threat.side(x.shape[2], x.shape[3])
        key = (side, UNTARGETED if target is None else int(target))
        with eval_mode(model):
            with torch.no_grad():
                num_classes = int(model(x[:1]).shape[1])
            if target is not None and not 0 <= int(target) < num_classes:
                raise ValueError(f"invalid target {target!r}: the model has classes 0 to {num_classes - 1}")
            self._validate_classes(y.to(x.device), None, num_classes)
            patch = self._learn(model, x, y.to(x.device), side, key[1], make_generator(seed, x.device))
        self.patches[key] = patch
        return patch

    def _learn(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, side: int, target: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``restarts`` optimisations of a patch; the one with the most successes on ``(x, y)`` at random positions
        (model in eval mode with frozen parameters)."""
        best, best_hits = None, -1
        for _ in range(int(self.params["restarts"])):
            patch = self._optimise(model, x, y, side, target, generator)
            if int(self.params["restarts"]) == 1:
                return patch
            hits = self._successes(model, x, y, patch, target, generator)
            if hits > best_hits:
                best, best_hits = patch, hits
        assert best is not None
        return best

    @torch.no_grad()
    def _successes(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        patch: torch.Tensor,
        target: int,
        generator: torch.Generator,
    ) -> int:
        """How many of ``x`` the patch fools at random positions (untargeted: leaves ``y``; else reaches the target)."""
        side = patch.shape[-1]
        hits = 0
        for xb, yb in zip(x.split(SCORE_BATCH), y.split(SCORE_BATCH)):
            top, left = random_positions(xb.shape[0], side, xb.shape[2], xb.shape[3], generator, xb.device)
            pred = model(paste(xb, patch, top, left)[0]).argmax(dim=1)
            hits += int((pred != yb).sum() if target == UNTARGETED else ((pred == target) & (yb != target)).sum())
        return hits

    def _optimise(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, side: int, target: int, generator: torch.Generator
    ) -> torch.Tensor:
        """One optimisation of one patch from a uniformly random start."""
        p = self.params
        loss_fn, ranges = get_loss(p["loss"]), self.ranges
        shape = (x.shape[1], side, side)
        patch = torch.rand(shape, generator=generator, device=generator.device).to(x.device).requires_grad_(True)
        opt = torch.optim.Adam([patch], lr=p["lr"])
        n, draws = x.shape[0], int(p["eot_samples"])
        with torch.enable_grad():
            for _ in range(int(p["steps"])):
                idx = torch.randint(0, n, (min(int(p["batch"]), n),), generator=generator, device=generator.device)
                idx = idx.to(x.device).repeat(draws)
                logits = model(eot_apply(x[idx], patch, ranges, generator))
                if target == UNTARGETED:
                    objective = -loss_fn(logits, y[idx]).mean()  # ascend the true label's loss
                else:
                    objective = loss_fn(logits, torch.full_like(y[idx], target)).mean()  # descend the target's
                opt.zero_grad(set_to_none=True)
                objective.backward()
                opt.step()
                with torch.no_grad():
                    patch.clamp_(0.0, 1.0)
        return patch.detach()

    # ------------------------------------------------------------------------------------------- the call
    def prepare(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel | PatchThreat,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> None:
        """The patches this call needs (its size; untargeted or each target class present): those :meth:`fit`
        learned, the others learned here on the call's own points."""
        assert isinstance(threat, PatchThreat)
        side = threat.side(x.shape[2], x.shape[3])
        wanted = [UNTARGETED] if targets is None else sorted({int(t) for t in targets.tolist()})
        self._call_patches = {}
        for target in wanted:
            key = (side, target)
            if key in self.patches:
                self._call_patches[key] = self.patches[key].to(x.device)
            else:
                self._call_patches[key] = self._learn(model, x, y, side, target, generator)

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: ThreatModel | PatchThreat,
        targets: torch.Tensor | None,
        generator: torch.Generator,
    ) -> PerturbOutput:
        assert isinstance(threat, PatchThreat)
        side = threat.side(x.shape[2], x.shape[3])
        top, left = random_positions(x.shape[0], side, x.shape[2], x.shape[3], generator, x.device)
        if targets is None:
            patch = self._call_patches[(side, UNTARGETED)]
        else:
            patch = torch.stack([self._call_patches[(side, int(t))] for t in targets.tolist()])
        return paste(x, patch, top, left)
