"""Transfer attacks: craft white-box adversarial examples on a source model, score them on a target.

The source is a substitute (``rbc proxy train``), any checkpoint, or an ensemble of several (their
logits averaged, :class:`LogitEnsemble`). A white-box attack from the registry (``fgsm``, ``pgd``,
``mi-fgsm``, ``di-fgsm``, ``di-mi-fgsm``) runs on the **source**; the **target** is only queried,
through an :class:`~attacks.blackbox.oracle.Oracle` in labels mode, to classify the clean inputs and
then the final adversarial examples (one query per attacked point per epsilon, in
``AttackResult.queries``).

Conventions:

- Success is measured on the points the target classifies correctly (the others are not attacked:
  ``success`` False, ``x_adv = x``), untargeted: ``pred != y``; targeted: ``pred == target``.
- On the source, the attack uses the **source's own predictions** as labels (``source_labels="pred"``,
  as in Papernot et al.'s code; it also avoids label leaking, Kurakin et al. 2017), so every point is
  perturbed even where the source is wrong. ``source_labels="true"`` uses ``y`` instead; the attack
  then leaves the points the source misclassifies unperturbed.
- Attacks with early stopping (``pgd``) run without it unless asked (``early_stop=False``): stopping
  as soon as the source is fooled gives low-confidence examples that transfer poorly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from robustbench_cnn.attacks import ATTACKS, Attack, get_attack
from robustbench_cnn.attacks.blackbox.oracle import Oracle
from robustbench_cnn.attacks.curve import GrowingBall
from robustbench_cnn.attacks.functional import make_generator
from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel
from robustbench_cnn.models.ensemble import LogitEnsemble

__all__ = ["LogitEnsemble", "as_source", "craft_on_source", "random_noise_attack", "score_on_target", "transfer_attack"]

SourceLike = nn.Module | Sequence[nn.Module] | Mapping[str, nn.Module]


def as_source(sources: SourceLike, names: Sequence[str] | None = None) -> tuple[nn.Module, list[str]]:
    """One source module (a :class:`LogitEnsemble` for several) and the names of its members."""
    if isinstance(sources, Oracle):
        raise TypeError("a transfer source must be a white-box nn.Module, not an Oracle")
    if isinstance(sources, nn.Module):
        members, default = [sources], [type(sources).__name__]
    elif isinstance(sources, Mapping):
        members, default = list(sources.values()), [str(k) for k in sources]
    else:
        members = list(sources)
        default = [f"source{i}" for i in range(len(members))]
    if not members or not all(isinstance(m, nn.Module) for m in members):
        raise TypeError("sources must be an nn.Module, a list of them, or a dict name -> nn.Module")
    names = list(names) if names is not None else default
    if len(names) != len(members):
        raise ValueError(f"{len(names)} source names for {len(members)} source models")
    return (members[0] if len(members) == 1 else LogitEnsemble(members)), names


def _device_of(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _make_attack(attack: str | Attack, params: Mapping[str, Any] | None) -> Attack:
    if isinstance(attack, Attack):
        if params:
            raise ValueError("give attack parameters either in the Attack instance or in attack_params")
        return attack
    cls = ATTACKS.get(attack)
    if cls.black_box:
        raise ValueError(
            f"attack {attack!r} is {cls.kind}: transfer attacks craft with a white-box attack "
            f"on the source (fgsm, pgd, mi-fgsm, di-fgsm, di-mi-fgsm)"
        )
    return get_attack(attack, **{**cls.transfer_defaults, **dict(params or {})})


def _check_source_labels(source_labels: str) -> None:
    if source_labels not in ("pred", "true"):
        raise ValueError(f"invalid source_labels {source_labels!r}: use pred or true")


def _labels_on_source(
    source: nn.Module, xs: torch.Tensor, ys: torch.Tensor, source_labels: str, batch_size: int | None
) -> torch.Tensor:
    """The labels the source attack uses: the source's own predictions (``pred``, in eval mode, restored) or
    ``ys`` (``true``)."""
    if source_labels != "pred" or not len(xs):
        return ys
    was_training = source.training
    source.eval()
    try:
        with torch.no_grad():
            return torch.cat([source(xb).argmax(1) for xb in xs.split(batch_size or 512)])
    finally:
        source.train(was_training)


def craft_on_source(
    source: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    attack: Attack,
    *,
    targets: torch.Tensor | None = None,
    seed: int = 0,
    source_labels: str = "pred",
    batch_size: int | None = None,
) -> AttackResult:
    """Run the white-box ``attack`` on ``source``; the result's ``x_adv`` is what the target sees."""
    _check_source_labels(source_labels)
    device = _device_of(source)
    xs = x.to(device)
    ys = _labels_on_source(source, xs, y.to(device), source_labels, batch_size)
    tgt = targets.to(device) if targets is not None else None
    return attack(source, xs, ys, threat, targets=tgt, seed=seed, batch_size=batch_size)


def score_on_target(
    oracle: Oracle,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor,
    threat: ThreatModel,
    *,
    clean_pred: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    attack: str = "transfer",
    params: dict[str, Any] | None = None,
    elapsed_s: float = 0.0,
) -> AttackResult:
    """The target's :class:`AttackResult` for candidate adversarial examples ``x_adv``.

    Only the points the target classifies correctly (and, targeted, whose target differs from the
    label) are attacked: they are queried once each (``queries`` 1); the others keep ``x_adv = x``.
    ``clean_pred`` (the target's labels on ``x``) is queried through the oracle when not given.
    """
    y = y.to(x.device)
    x_adv = x_adv.to(x.device)
    n = x.shape[0]
    ids = torch.arange(n)
    if clean_pred is None:
        clean_pred = oracle.labels(x, ids=ids)
    clean_pred = clean_pred.to(x.device)
    clean_correct = clean_pred == y
    todo = clean_correct.clone()
    if targets is not None:
        targets = targets.to(x.device)
        todo &= targets != y
    final = torch.where(todo.view(-1, *([1] * (x.dim() - 1))), x_adv, x)
    pred_adv = clean_pred.clone()
    queries = torch.zeros(n, dtype=torch.int64, device=x.device)
    idx = todo.nonzero().flatten()
    if idx.numel():
        pred_adv[idx] = oracle.labels(final[idx], ids=idx.cpu()).to(x.device)
        queries[idx] = 1
    success = todo & ((pred_adv == targets) if targets is not None else (pred_adv != y))
    return AttackResult(
        x_adv=final,
        success=success,
        clean_correct=clean_correct,
        perturbation_norm=threat.norm.measure(final - x),
        pred_adv=pred_adv,
        target=targets.clone() if targets is not None else torch.full_like(y, -1),
        queries=queries,
        threat=threat,
        attack=attack,
        elapsed_s=elapsed_s,
        params=dict(params or {}),
    )


def tensor_digest(*tensors: torch.Tensor | None) -> str:
    """A sha256 of the tensors' shapes, dtypes and values (None included as a marker)."""
    digest = hashlib.sha256()
    for t in tensors:
        if t is None:
            digest.update(b"none")
            continue
        t = t.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class CraftedExamples:
    """The examples a source attack crafted, kept for the next call that would craft the very same ones (in memory,
    in this process; the least recently used go first once they hold more than ``max_bytes``, 256 MiB by default:
    a targeted transfer to every class crafts one set per class).

    Crafting depends only on the source side: its weights, the points and the labels it attacks, the attack and its
    parameters, the epsilons, the seed, the targets and the mini-batch size; not on the target, which only scores
    the examples. A plan that transfers from one proxy to every model crafts the same examples once per model;
    with this cache it crafts them once, and every target scores the same examples it would have got.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self.max_bytes = max_bytes
        self.hits = self.misses = 0
        self._entries: OrderedDict[str, list[tuple[torch.Tensor, float, float]]] = OrderedDict()

    @staticmethod
    def key(source: nn.Module, x: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None,
            attack: Attack, norm: Norm, eps_values: Sequence[float], seed: int, batch_size: int | None) -> str:  # fmt: skip
        """What the crafted examples depend on, as one digest."""
        state = [t for t in source.state_dict().values() if isinstance(t, torch.Tensor)]
        meta = json.dumps(
            [attack.name, attack.params, norm.value, list(eps_values), seed, batch_size, str(x.device)],
            sort_keys=True,
            default=str,
        )
        return tensor_digest(*state) + tensor_digest(x, labels, targets) + hashlib.sha256(meta.encode()).hexdigest()

    def get(self, key: str) -> list[tuple[torch.Tensor, float, float]] | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
            self._entries.move_to_end(key)
        return found

    def put(self, key: str, crafted: list[tuple[torch.Tensor, float, float]]) -> None:
        self._entries[key] = crafted
        self._entries.move_to_end(key)
        while len(self._entries) > 1 and self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)

    @property
    def nbytes(self) -> int:
        """Bytes of the examples held."""
        return sum(x.numel() * x.element_size() for entry in self._entries.values() for x, _, _ in entry)


def transfer_attack(
    sources: SourceLike,
    target: nn.Module | Oracle,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel | Norm | str,
    attack: str | Attack = "fgsm",
    eps_list: Sequence[float] | None = None,
    targets: torch.Tensor | None = None,
    seed: int = 0,
    *,
    attack_params: Mapping[str, Any] | None = None,
    source_names: Sequence[str] | None = None,
    target_name: str | None = None,
    source_labels: str = "pred",
    batch_size: int | None = None,
    crafted: CraftedExamples | None = None,
) -> list[AttackResult]:
    """Transfer ``attack`` from ``sources`` to ``target``: one :class:`AttackResult` per epsilon.

    Args:
        sources: the white-box source: an ``nn.Module``, a list of them or a dict name -> module
            (several are ensembled by averaging logits).
        target: the target ``nn.Module`` (wrapped in a labels-only :class:`Oracle`) or an Oracle.
        x, y: images N x C x H x W in [0, 1] and int64 labels [N].
        threat: a ThreatModel (its eps is used when ``eps_list`` is None), or a norm (then give
            ``eps_list``).
        attack: a white-box registry name (``fgsm``, ``pgd``, ``mi-fgsm``, ``di-fgsm``, ``di-mi-fgsm``)
            with ``attack_params``, or an :class:`~attacks.base.Attack` instance.
        eps_list: epsilons; each is crafted independently on the source.
        targets: int64 target classes [N] (from :func:`attacks.targets.choose_targets`) for a
            targeted transfer; success then means the target predicts the target class.
        seed: seeds the source attack.
        crafted: a :class:`CraftedExamples` cache: examples an earlier call crafted with the same source, points,
            labels, targets, attack, epsilons, seed and batch size are scored again instead of crafted again (the
            same examples; its ``hits`` and ``misses`` count the two cases).

    Returns:
        per epsilon (ascending), the target's result: ``attack`` is ``"transfer:<name>"``, ``params``
        records the sources, the source attack's parameters and its white-box success rate, and
        ``queries`` the target queries per sample (1 for each attacked point).
    """
    if isinstance(threat, ThreatModel):
        norm, default_eps = threat.norm, [threat.eps]
    else:
        norm, default_eps = (threat if isinstance(threat, Norm) else Norm.parse(str(threat))), None
    eps_values = sorted(float(e) for e in (eps_list if eps_list is not None else default_eps or []))
    if not eps_values:
        raise ValueError("give the epsilons: a ThreatModel with eps, or eps_list")
    _check_source_labels(source_labels)
    source, names = as_source(sources, source_names)
    atk = _make_attack(attack, attack_params)
    oracle = target if isinstance(target, Oracle) else Oracle(target, "labels")
    n = x.shape[0]
    clean_start = time.perf_counter()
    clean_pred = oracle.labels(x, ids=torch.arange(n))
    clean_s = time.perf_counter() - clean_start
    device = _device_of(source)
    xs = x.to(device)
    labels = _labels_on_source(source, xs, y.to(device), source_labels, batch_size)
    key, examples = "", None
    if crafted is not None:
        key = CraftedExamples.key(source, xs, labels, targets, atk, norm, eps_values, seed, batch_size)
        examples = crafted.get(key)
    crafted_here = examples is None
    if examples is None:
        examples = _craft_every_eps(atk, source, xs, labels, targets, norm, eps_values, seed, batch_size)
        if crafted is not None:
            crafted.put(key, examples)
    results = []
    for eps, (x_adv, source_success, craft_s) in zip(eps_values, examples, strict=True):
        t0 = time.perf_counter()
        tm = ThreatModel(norm, eps)
        params = {
            "sources": names,
            "target": target_name,
            "source_attack": atk.name,
            "source_attack_params": dict(atk.params),
            "source_labels": source_labels,
            "source_success_rate": source_success,
            "seed": seed,
        }
        res = score_on_target(
            oracle, x, y, x_adv.to(x.device), tm, clean_pred=clean_pred, targets=targets,
            attack=f"transfer:{atk.name}", params=params,
        )  # fmt: skip
        res.elapsed_s = time.perf_counter() - t0 + clean_s + (craft_s if crafted_here else 0.0)
        results.append(res)
    return results


def _craft_every_eps(
    atk: Attack,
    source: nn.Module,
    xs: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor | None,
    norm: Norm,
    eps_values: Sequence[float],
    seed: int,
    batch_size: int | None,
) -> list[tuple[torch.Tensor, float, float]]:
    """Per epsilon (ascending): the crafted points (``xs`` where there are none), the source attack's success rate
    and the seconds it took."""
    # each epsilon is crafted afresh on the source, on every point: success is the target's, so nothing carries
    # forward on the source and the source attack starts where it always does
    n = xs.shape[0]
    ball = GrowingBall(
        [atk],
        source,
        xs,
        labels,
        attackable=torch.ones(n, dtype=torch.bool),
        targets=targets.to(xs.device) if targets is not None else None,
        seed=seed,
        batch_size=batch_size,
        warm_start=False,
        carry_forward=False,
    )
    examples = []
    for eps in eps_values:
        t0 = time.perf_counter()
        (step,) = ball.run(ThreatModel(norm, eps))
        result = step.result  # None only when there are no points
        x_adv = result.x_adv if result is not None else xs
        rate = result.success_rate if result is not None else float("nan")
        examples.append((x_adv, rate, time.perf_counter() - t0))
    return examples


def random_noise_attack(
    target: nn.Module | Oracle, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel, seed: int = 0
) -> AttackResult:
    """A control: random perturbations on the sphere of the threat (linf: ``±eps`` per pixel; l2:
    a random direction of norm eps), clipped to [0, 1], scored like a transfer attack (``"noise"``)."""
    gen = make_generator(seed, torch.device("cpu"))
    if threat.norm is Norm.LINF:
        delta = (torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1) * threat.eps
    elif threat.norm is Norm.L2:
        d = torch.randn(x.shape, generator=gen)
        delta = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1))) * threat.eps
    else:
        raise ValueError(f"random noise is defined for linf and l2, not {threat.norm.value}")
    oracle = target if isinstance(target, Oracle) else Oracle(target, "labels")
    x_adv = (x + delta.to(x.device, x.dtype)).clamp(0.0, 1.0)
    return score_on_target(oracle, x, y, x_adv, threat, attack="noise", params={"seed": seed})
