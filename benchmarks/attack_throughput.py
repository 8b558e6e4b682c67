"""PGD throughput against foolbox, torchattacks, ART and the forward+backward bound; cost of an 8-epsilon curve.

Part 1, throughput. One model (``--model``, default ``smallcnn`` on 1x28x28, seeded random weights, eval mode,
parameters frozen for every contender, or with ``--params trainable`` left as training leaves them: ours freezes
them during the attack, the libraries do not), one batch (``--batch``, default 256, uniform noise in [0, 1]) labelled
with the model's own predictions (so every point is clean-correct and every contender attacks every point), PGD
linf eps 0.3, ``--steps`` (10) steps of ``2.5 * eps / steps``, random start, cross-entropy:

- ``ours``: ``attacks.get_attack("pgd", steps=10, random_start=True, early_stop=False)`` through ``Attack.__call__``
  (validation, clean prediction, projection, re-evaluation included): 10 forward+backward and 2 forward passes;
- ``ours (clean logits known)``: the same call with ``clean_logits=`` as ``evaluate`` makes it (the clean pass is
  done once per evaluation, not once per attack and epsilon): 10 forward+backward and 1 forward;
- ``ours (autograd kernels)``: ``ours (clean logits known)`` with the faster kernels switched off
  (``fast_gradient_kernels = False``: neither the first-layer input-gradient kernels of :mod:`core.input_gradients`
  nor batch norm folded into the convolutions, :mod:`core.batchnorm_folding`): the same work through autograd's own
  kernels on the model as given, as every library runs it;
- ``ours (defaults: early stop)``: PGD-10 as ``evaluate`` runs it by default (``early_stop=True``, clean logits
  known): a point leaves the batch at the first iterate that fools the model, so it does *less work* than the
  others wherever points break before the last step. Its row is not a kernel-efficiency figure; read it with the
  ``robust_acc`` column (every contender's robust accuracy on the batch: equal or lower is as strong);
- ``foolbox``: ``LinfPGD(steps, abs_stepsize, random_start=True)`` on ``foolbox.PyTorchModel``;
- ``torchattacks``: ``torchattacks.PGD(eps, alpha, steps, random_start=True)`` (returns the images only: it
  computes neither the clean prediction nor which points it broke);
- ``torchattacks + success``: the same plus the one forward pass that says which points are adversarial, i.e. the
  least work that yields a robust accuracy (reported beside, not counted as a library);
- ``art``: ``ProjectedGradientDescentPyTorch(max_iter=steps, eps_step, num_random_init=1)`` on a
  ``PyTorchClassifier`` (numpy in and out, as ART's API is);
- ``bound``: ``steps`` x (forward, CE, ``torch.autograd.grad`` w.r.t. the input), parameters frozen, at the
  iterates of one plain PGD run on the batch (recorded beforehand, untimed): the forward+backward work of PGD and
  nothing else, through autograd's kernels. (Until 2026-12 it took the gradient ``steps`` times at the clean batch,
  which costs less than at PGD's iterates, since max-pooling's cost depends on the data: up to 6% on LeNet-5.)
- ``bound (fast kernels)``: the same loop on the model with its batch norm folded (built once, untimed) inside
  :func:`core.input_gradients.fast_input_gradients`: the bound of ours on the faster kernels it takes (where the
  model has batch norm or an eligible first layer; else equal to ``bound``).

``--input noise`` (default) attacks uniform noise through a randomly initialised ``--model``; ``--input test``
attacks the first ``--batch`` test images of the store model ``--curve-model``'s dataset that it classifies
correctly (MNIST for the default ``mnist/lenet5-standard``, trained here when missing; any stored checkpoint, e.g.
``cifar10-jpeg/resnet18-fgsm-rs``): the realistic case for the early-stop row.

Repetitions are interleaved (the order rotates each round) after one warm-up call each; the figure is the median of
``images * steps / seconds``. Targets: ours >= the fastest library, ours >= 0.95 x bound. A profile of one call of
``ours`` (forward calls with and without grad, and their time) says where the time beyond the bound goes, and what
the bound leaves out: a robust accuracy needs one forward pass at the final iterate (foolbox makes it too;
torchattacks and ART return images only), so ``ceiling_vs_bound_with_verification = 1 / (1 + forward / (steps x
(forward + backward)))`` is the most any contender that says which points it broke can reach against the bound.

Part 2, robustness curve. ``--curve-model`` (default the store's ``mnist/lenet5-standard``; trained here for 3 epochs
when missing) on ``--curve-n`` MNIST test points, 8 epsilons (``--curve-eps``), PGD with the same steps and step rule
(``rel_stepsize = 2.5 / steps``, random start) for both: ours via ``evaluate(..., [("pgd", ...)], eps_list)`` (growing
ball, early stop, warm starts from the previous epsilon's iterates; also without warm starts, ``warm_start=False``)
and ``Attack.robustness_curve`` (PGD's default since 2026-12: the shrinking ball of ``attacks/curve.py``), foolbox
via one multi-epsilon call ``attack(fmodel, x, y, epsilons=[...])``. Target: ours >= 3x cheaper at equal or lower
robust accuracy per eps. ``benchmarks/curve_cost.py`` measures the curves in more detail (passes counted, PGD-AT
net, the independent per-epsilon attack; ``docs/curves.md``).

In both parts every contender (and the bound) runs the model in its declared CPU memory layout, as our attacks do
(the runs in ``docs/curves.md`` and ``docs/measurements.md`` predate the layouts: all NCHW).

For a large model on a shared CPU: ``--contenders`` runs a subset (ours and the bound always run), ``--no-warmup``
makes the first timed call also the robust-accuracy call, ``--profile-reps -1`` skips the profile; e.g. the CIFAR-10
ResNet-18 row of ``docs/curves.md``::

    python benchmarks/attack_throughput.py --model resnet18 --channels 3 --size 32 --batch 128 --steps 10 \
        --eps 0.0313725 --reps 1 --no-warmup --no-curve --profile-reps -1 \
        --contenders "ours (clean logits known),foolbox,torchattacks,art" --threads 1

    RBC_DATA_DIR=../shared/data RBC_HOME=/tmp/store python benchmarks/attack_throughput.py --threads 1

Writes ``results/benchmarks/attack_throughput.{parquet,csv,md}`` (and ``attack_throughput_curve.*``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from _util import load_average as _load  # noqa: E402
from _util import markdown_table, standard_model
from torch import nn

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.attacks.functional import make_generator
from robustbench_cnn.core.batchnorm_folding import folded_batchnorm
from robustbench_cnn.core.geometry import random_start
from robustbench_cnn.core.input_gradients import fast_input_gradients
from robustbench_cnn.core.model_utils import cpu_layout, eval_mode
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.evaluation.engine import evaluate
from robustbench_cnn.models import build_model


# ------------------------------------------------------------------------------------------------ contenders
def make_contenders(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int
) -> dict[str, Callable[[], torch.Tensor]]:
    """Zero-argument callables, each running one full PGD on the batch and returning the adversarial batch."""
    import foolbox as fb
    import torchattacks
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    alpha = 2.5 * eps / steps
    threat = ThreatModel.parse(f"linf:{eps}")
    ours = get_attack("pgd", steps=steps, random_start=True, early_stop=False)
    ours_default = get_attack("pgd", steps=steps, random_start=True)

    ours_autograd = get_attack("pgd", steps=steps, random_start=True, early_stop=False)
    ours_autograd.fast_gradient_kernels = False  # this instance only: autograd's kernels, as the libraries run
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
    fb_attack = fb.attacks.LinfPGD(steps=steps, abs_stepsize=alpha, random_start=True)
    ta_attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    classifier = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=tuple(x.shape[1:]),
        nb_classes=int(model(x[:1]).shape[1]),
        clip_values=(0.0, 1.0),
        device_type="gpu" if x.device.type == "cuda" else "cpu",
    )
    art_attack = ProjectedGradientDescentPyTorch(
        classifier,
        norm=np.inf,
        eps=eps,
        eps_step=alpha,
        max_iter=steps,
        num_random_init=1,
        batch_size=x.shape[0],
        verbose=False,
    )
    x_np, y_np = x.cpu().numpy(), y.cpu().numpy()

    with torch.no_grad():
        clean_logits = model(x)

    def run_ours() -> torch.Tensor:
        return ours(model, x, y, threat, seed=seed).x_adv

    def run_ours_known() -> torch.Tensor:
        return ours(model, x, y, threat, seed=seed, clean_logits=clean_logits).x_adv

    def run_ours_autograd() -> torch.Tensor:
        return ours_autograd(model, x, y, threat, seed=seed, clean_logits=clean_logits).x_adv

    def run_ours_default() -> torch.Tensor:
        return ours_default(model, x, y, threat, seed=seed, clean_logits=clean_logits).x_adv

    def run_foolbox() -> torch.Tensor:
        _, clipped, _ = fb_attack(fmodel, x, y, epsilons=eps)
        return clipped

    def run_torchattacks() -> torch.Tensor:
        return ta_attack(x, y)

    def run_torchattacks_success() -> torch.Tensor:
        adv = ta_attack(x, y)
        with torch.no_grad():
            model(adv).argmax(1)
        return adv

    def run_art() -> torch.Tensor:
        return torch.from_numpy(art_attack.generate(x_np, y_np))

    folded = folded_batchnorm(model)  # built once here; ours builds its copy inside each timed call

    def run_bound_fast() -> torch.Tensor:
        with fast_input_gradients(folded):
            return run_bound(folded)

    # The iterates of one plain PGD run (untimed): the bound computes its gradients at exactly the points a PGD
    # run visits. At a fixed input it would be too low a bar: max-pooling and ReLU cost depends on the data (a
    # LeNet-5 no-grad forward takes 9.9 ms on 256 clean MNIST images, 12.2 ms on perturbed ones).
    iterates = []
    xa = random_start(x, threat, make_generator(seed, x.device))
    lo, hi = threat.linf_box(x)
    for _ in range(steps):
        iterates.append(xa)
        xg = xa.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(xg), y), [xg])
        xa = torch.add(xa, grad.sign(), alpha=alpha).clamp_(lo, hi)

    def run_bound(net: nn.Module = model) -> torch.Tensor:
        flags = [p.requires_grad for p in net.parameters()]
        for p in net.parameters():  # the least work a gradient step needs: no parameter gradients
            p.requires_grad_(False)
        for xa in iterates:
            xg = xa.detach().requires_grad_(True)
            loss = F.cross_entropy(net(xg), y)
            (grad,) = torch.autograd.grad(loss, [xg])
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)
        return iterates[-1]

    return {
        "ours": run_ours,
        "ours (clean logits known)": run_ours_known,
        "ours (autograd kernels)": run_ours_autograd,
        "ours (defaults: early stop)": run_ours_default,
        "foolbox": run_foolbox,
        "torchattacks": run_torchattacks,
        "torchattacks + success": run_torchattacks_success,
        "art": run_art,
        "bound": run_bound,
        "bound (fast kernels)": run_bound_fast,
    }


class Probe(nn.Module):
    """Wraps a model: records each forward call (grad enabled?, rows, CPU seconds) for the profile."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[tuple[bool, int, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = time.process_time()
        out = self.model(x)
        self.calls.append((torch.is_grad_enabled(), int(x.shape[0]), time.process_time() - t))
        return out


def _markdown(df: pd.DataFrame) -> str:
    return markdown_table(df, ".4g")


def profile_ours(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int, reps: int
) -> dict[str, float]:
    """Where one call of ours spends its time: forwards with grad (the steps), forwards without grad (clean
    prediction, PGD's own final check, the base class's re-evaluation), backward + the rest."""
    probe = Probe(model).eval()
    attack = get_attack("pgd", steps=steps, random_start=True, early_stop=False)
    threat = ThreatModel.parse(f"linf:{eps}")
    totals, fwd_grad, fwd_nograd, n_grad, n_nograd = [], [], [], [], []
    for _ in range(reps):
        probe.calls.clear()
        t = time.process_time()
        attack(probe, x, y, threat, seed=seed)
        totals.append(time.process_time() - t)
        fwd_grad.append(sum(s for g, _, s in probe.calls if g))
        fwd_nograd.append(sum(s for g, _, s in probe.calls if not g))
        n_grad.append(sum(1 for g, _, _ in probe.calls if g))
        n_nograd.append(sum(1 for g, _, _ in probe.calls if not g))
    # one no-grad forward and one forward+backward, on the batch moved to a random point of the ball (the cost of a
    # pass depends on the data; PGD's passes run on perturbed points)
    one_fwd, one_fb = [], []
    x = random_start(x, ThreatModel.parse(f"linf:{eps}"), make_generator(seed, x.device))
    for _ in range(reps):
        with torch.no_grad():
            t = time.process_time()
            model(x)
            one_fwd.append(time.process_time() - t)
        xa = x.clone().requires_grad_(True)
        # the same kernels as ours: frozen parameters, and the fast first-layer kernel where ours takes it
        with eval_mode(model), fast_input_gradients(model):
            t = time.process_time()
            (g,) = torch.autograd.grad(F.cross_entropy(model(xa), y), [xa])
            one_fb.append(time.process_time() - t)
    med = statistics.median
    total = med(totals)
    return {
        "total_cpu_s": total,
        "forward_calls_with_grad": med(n_grad),
        "forward_calls_no_grad": med(n_nograd),
        "forward_with_grad_s": med(fwd_grad),
        "forward_no_grad_s": med(fwd_nograd),
        "backward_and_rest_s": total - med(fwd_grad) - med(fwd_nograd),
        "extra_over_bound_s": total - steps * med(one_fb),
        "extra_over_bound_in_forwards": (total - steps * med(one_fb)) / med(one_fwd),
        "one_forward_no_grad_s": med(one_fwd),
        "one_forward_backward_s": med(one_fb),
        "bound_equivalent_s": steps * med(one_fb),
        # A robust accuracy needs one forward at the final iterate beyond the bound's steps x (forward+backward):
        # the best any contender that reports success can reach against the bound (update step taken as free).
        "verify_forward_share_of_bound": med(one_fwd) / (steps * med(one_fb)),
        "ceiling_vs_bound_with_verification": 1.0 / (1.0 + med(one_fwd) / (steps * med(one_fb))),
    }


# ------------------------------------------------------------------------------------------------- the curve
def run_curve(args: argparse.Namespace, eps_text: str) -> pd.DataFrame:
    import foolbox as fb

    from robustbench_cnn.data import load_split

    model = standard_model(args.curve_model, args.store, args.data_dir, epochs=3)
    for p in model.parameters():
        p.requires_grad_(False)
    test = load_split(args.curve_model.split("/")[0], "test", n=args.curve_n, data_dir=args.data_dir)
    x, y = test.x, test.y
    eps_list = [float(e) for e in eps_text.split(",")]
    rel = 2.5 / args.steps
    attack = get_attack("pgd", steps=args.steps, rel_stepsize=rel, random_start=True)
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    fb_attack = fb.attacks.LinfPGD(steps=args.steps, rel_stepsize=rel, random_start=True)
    with torch.no_grad():
        clean_correct = model(x).argmax(1) == y

    def ours_eval(seed: int) -> list[float]:
        ev = evaluate(model, x, y, "linf", eps_list, [attack], seed=seed, batch_size=len(y))
        return [acc for _, acc in ev.curve()]

    def ours_eval_fresh(seed: int) -> list[float]:
        ev = evaluate(model, x, y, "linf", eps_list, [attack], seed=seed, batch_size=len(y), warm_start=False)
        return [acc for _, acc in ev.curve()]

    def ours_curve(seed: int) -> list[float]:
        results = attack.robustness_curve(model, x, y, "linf", eps_list, seed=seed)
        return [r.robust_accuracy for r in results]

    def foolbox_multi(seed: int) -> list[float]:
        torch.manual_seed(seed)
        _, _, success = fb_attack(fmodel, x, y, epsilons=eps_list)
        return [float((clean_correct & ~s).float().mean()) for s in success]

    contenders = {
        "ours: evaluate(pgd, 8 eps)": ours_eval,
        "ours: Attack.robustness_curve": ours_curve,
        "ours: evaluate, fresh random starts": ours_eval_fresh,
        "foolbox: attack(epsilons=8)": foolbox_multi,
    }
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    accs: dict[str, list[list[float]]] = {k: [] for k in contenders}
    loads: list[str] = []
    names = list(contenders)
    # every contender runs the model in the memory layout our attacks switch it to on the CPU: the same model
    with cpu_layout(model, "cpu"):
        for rep in range(args.curve_reps):  # seed args.seed + rep for every contender: accuracy spread over seeds
            for k in names[rep % len(names) :] + names[: rep % len(names)]:
                t, c = time.perf_counter(), time.process_time()
                accs[k].append(contenders[k](args.seed + rep))
                wall[k].append(time.perf_counter() - t)
                cpu[k].append(time.process_time() - c)
            loads.append(_load())
    fb = "foolbox: attack(epsilons=8)"
    rows = []
    for k in names:
        per_eps = list(zip(*accs[k]))
        rows.append(
            {
                "contender": k,
                "median_wall_s": statistics.median(wall[k]),
                "median_cpu_s": statistics.median(cpu[k]),
                "speedup_wall": statistics.median(wall[fb]) / statistics.median(wall[k]),
                "speedup_cpu": statistics.median(cpu[fb]) / statistics.median(cpu[k]),
                **{f"ra@{e:g}": statistics.mean(a) for e, a in zip(eps_list, per_eps)},
                **{f"range@{e:g}": f"{min(a):.3f}-{max(a):.3f}" for e, a in zip(eps_list, per_eps)},
                "runs_wall_s": " ".join(f"{t:.2f}" for t in wall[k]),
                "seeds": args.curve_reps,
                "n": len(y),
                "steps": args.steps,
                "eps_list": eps_text,
                "load_avg": loads[-1],
            }
        )
    return pd.DataFrame(rows)


def stored_model_batch(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The trained ``--curve-model`` (a ``-standard`` one is trained here when missing) and the first ``--batch``
    test images of its dataset that it classifies correctly, with their labels: the realistic input of the
    early-stop row."""
    from robustbench_cnn.data import load_split
    from robustbench_cnn.store import read_card, resolve_checkpoint

    model = standard_model(args.curve_model, args.store, args.data_dir, epochs=3).eval()
    dataset = read_card(resolve_checkpoint(args.curve_model, args.store)).dataset  # e.g. imagefolder:<dir>
    test = load_split(dataset, "test", n=8 * args.batch, data_dir=args.data_dir)
    with torch.no_grad():
        correct = (model(test.x).argmax(1) == test.y).nonzero().flatten()[: args.batch]
    return model, test.x[correct], test.y[correct]


# ---------------------------------------------------------------------------------------------------- main
@dataclasses.dataclass
class Throughput:
    """What part 1 measured: the table, the profile of ours, the median CPU and wall seconds per contender, the
    fastest library by each, and the load averages per round."""

    table: pd.DataFrame
    profile: dict[str, float | str]
    median_cpu: dict[str, float]
    median_wall: dict[str, float]
    fastest_cpu: str
    fastest_wall: str
    loads: list[str]


def measure_throughput(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
) -> Throughput:
    """Part 1: time every contender and the bound on the batch (call it inside the model's CPU layout)."""
    contenders = make_contenders(model, x, y, args.eps, args.steps, args.seed)
    if args.contenders:  # a subset (e.g. for a large model on a shared CPU); ours and the bound are always kept
        wanted = {c.strip() for c in args.contenders.split(",")} | {"ours", "bound"}
        unknown = wanted - set(contenders)
        if unknown:
            parser.error(f"unknown contender(s) {sorted(unknown)}: choose from {list(contenders)}")
        contenders = {k: v for k, v in contenders.items() if k in wanted}
    names = list(contenders)
    robust_acc: dict[str, float] = {}

    def record(k: str, adv: torch.Tensor) -> None:
        with torch.no_grad():
            robust_acc[k] = float("nan") if k.startswith("bound") else float((model(adv).argmax(1) == y).float().mean())

    for k, fn in contenders.items() if args.warmup else ():  # warm-up; the robust accuracy each contender leaves
        torch.manual_seed(args.seed)
        record(k, fn())
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    loads = []
    for rep in range(args.reps):
        for k in names[rep % len(names) :] + names[: rep % len(names)]:
            torch.manual_seed(args.seed + rep)
            t, c = time.perf_counter(), time.process_time()
            adv = contenders[k]()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
            if k not in robust_acc:  # --no-warmup: the first timed call gives the robust accuracy
                record(k, adv)
        loads.append(_load())
    work = args.batch * args.steps
    med_w = {k: statistics.median(v) for k, v in wall.items()}
    med_c = {k: statistics.median(v) for k, v in cpu.items()}
    libs = [k for k in ("foolbox", "torchattacks", "art") if k in med_w]
    fastest_w = min(libs, key=lambda k: med_w[k])
    fastest_c = min(libs, key=lambda k: med_c[k])
    nan = float("nan")
    fast_bound_c = med_c.get("bound (fast kernels)", nan)
    rows = []
    for k in names:
        rows.append(
            {
                "contender": k,
                "robust_acc": robust_acc[k],
                "img_steps_per_cpu_s": work / med_c[k],
                "img_steps_per_wall_s": work / med_w[k],
                "median_cpu_s": med_c[k],
                "median_wall_s": med_w[k],
                "wall_min_max_s": f"{min(wall[k]):.2f}-{max(wall[k]):.2f}",
                "vs_bound_cpu": med_c["bound"] / med_c[k],
                "vs_bound_wall": med_w["bound"] / med_w[k],
                "vs_fast_bound_cpu": fast_bound_c / med_c[k],
                "vs_fastest_lib_cpu": med_c[fastest_c] / med_c[k],
                "vs_fastest_lib_wall": med_w[fastest_w] / med_w[k],
                "model": args.model,
                "input": args.input,
                "shape": f"{args.channels}x{args.size}x{args.size}",
                "batch": len(y),
                "steps": args.steps,
                "reps": args.reps,
                "params": args.params,
                "threads": args.threads,
                "device": str(x.device),
                "load_avg_first_last": f"{loads[0]} | {loads[-1]}",
            }
        )
    df = pd.DataFrame(rows)
    prof: dict[str, float | str] = {}
    if args.profile_reps >= 0:
        prof = dict(
            profile_ours(model, x, y, args.eps, args.steps, args.seed, args.profile_reps or max(3, args.reps // 2))
        )
        prof["load_avg"] = _load()
    return Throughput(df, prof, med_c, med_w, fastest_c, fastest_w, loads)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument(
        "--params",
        choices=["frozen", "trainable"],
        default="frozen",
        help="frozen: requires_grad off for every contender; trainable: the model as training leaves "
        "it (ours freezes the parameters itself during an attack, the libraries do not)",
    )
    parser.add_argument("--reps", type=int, default=7, help="interleaved repetitions (after a warm-up)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--input",
        choices=["noise", "test"],
        default="noise",
        help="noise: uniform noise through a randomly initialised --model; test: the first --batch "
        "clean-correct test images of the trained --curve-model's dataset, through it",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--curve-model", default="mnist/lenet5-standard")
    parser.add_argument("--curve-n", type=int, default=1000)
    parser.add_argument(
        "--curve-eps",
        default="0.0375,0.075,0.1125,0.15,0.1875,0.225,0.2625,0.3;0.02,0.04,0.06,0.08,0.1,0.12,0.14,0.16",
        help="8 comma-separated epsilons; several lists separated by ';' (one curve each)",
    )
    parser.add_argument("--curve-reps", type=int, default=3)
    parser.add_argument("--no-curve", action="store_true")
    parser.add_argument(
        "--contenders",
        default="",
        help="comma-separated subset of the contenders (default all; ours and bound always run)",
    )
    parser.add_argument(
        "--profile-reps", type=int, default=0, help="calls profiled (0: max(3, reps // 2); -1: no profile)"
    )
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one untimed call per contender first (--no-warmup for a large model: the first timed call is also "
        "the robust-accuracy call)",
    )
    parser.add_argument("--store", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="results/benchmarks/attack_throughput", help="path without extension")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("art").setLevel(logging.WARNING)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if args.input == "test":
        model, x, y = stored_model_batch(args)
        model, x, y = model.to(device).eval(), x.to(device), y.to(device)
        args.model, args.channels, args.size = args.curve_model, x.shape[1], x.shape[-1]
    else:
        model = (
            build_model(
                args.model,
                in_channels=args.channels,
                num_classes=10,
                input_size=args.size,
                mean=[0.5] * args.channels,
                std=[0.5] * args.channels,
            )
            .to(device)
            .eval()
        )
        gen = torch.Generator().manual_seed(args.seed)
        x = torch.rand(args.batch, args.channels, args.size, args.size, generator=gen).to(device)
        with torch.no_grad():
            y = model(x).argmax(1)  # every point clean-correct: every contender attacks every point
    for p in model.parameters():  # "trainable": as a trained or loaded model is held; only ours freezes them
        p.requires_grad_(args.params == "trainable")

    # every contender and the bound run the model in the memory layout our attacks switch it to on the CPU (the
    # architecture's declared one): the same model for all; NCHW again before the curves
    with cpu_layout(model, device):
        measured = measure_throughput(args, parser, model, x, y)
    df = measured.table
    nan = float("nan")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out.with_suffix(".parquet"), index=False)
    df.to_csv(out.with_suffix(".csv"), index=False)
    shown = df[
        [
            "contender",
            "robust_acc",
            "img_steps_per_cpu_s",
            "img_steps_per_wall_s",
            "median_cpu_s",
            "median_wall_s",
            "wall_min_max_s",
            "vs_bound_cpu",
            "vs_bound_wall",
            "vs_fast_bound_cpu",
            "vs_fastest_lib_cpu",
            "vs_fastest_lib_wall",
        ]
    ]
    cmd = "python benchmarks/attack_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    verdicts = []
    for label, med, fastest in (
        ("CPU time", measured.median_cpu, measured.fastest_cpu),
        ("wall time", measured.median_wall, measured.fastest_wall),
    ):
        for who in ("ours", "ours (clean logits known)", "ours (autograd kernels)", "ours (defaults: early stop)"):
            if who not in med:
                continue
            verdicts += [
                f"- {label}: {who} >= fastest library ({fastest}): "
                f"{'yes' if med[who] <= med[fastest] else 'NO'} ({med[fastest] / med[who]:.3f}); "
                f">= torchattacks + success: {med.get('torchattacks + success', nan) / med[who]:.3f}; "
                f">= 0.95 x bound: {'yes' if med['bound'] / med[who] >= 0.95 else 'NO'} "
                f"({med['bound'] / med[who]:.3f}); vs bound (fast kernels): "
                f"{med.get('bound (fast kernels)', nan) / med[who]:.3f}"
            ]
    text = [
        f"# PGD throughput ({args.model} {args.channels}x{args.size}x{args.size}, {args.input} batch of {len(y)}, "
        f"{args.steps} steps, parameters {args.params}, {args.threads} thread(s), {device}, "
        f"{platform.processor() or platform.machine()})",
        "",
        f"`{cmd.strip()}`",
        "",
        "CPU time is the process's (time.process_time, 1 thread): on a shared machine it does not count the time "
        "spent waiting for a core, so it is the steadier figure; wall time is shown beside it.",
        "",
        _markdown(shown),
        f"load average (1/5/15 min) at first and last round: {measured.loads[0]} | {measured.loads[-1]}",
        "",
        *verdicts,
        "",
        "The early-stop row does fewer gradient steps wherever a point breaks before the last step (work saved, "
        "not a faster kernel); the equal-work rows are the kernel-efficiency figures. 'ours (clean logits known)' "
        "can beat the autograd bound where the model's first layer takes the faster input-gradient kernel "
        "(core/input_gradients.py) or its batch norm folds into the convolutions (core/batchnorm_folding.py), the "
        "same function up to float rounding; 'ours (autograd kernels)' is the same work on the model as given, "
        "through autograd's kernels.",
        "",
        "## Profile of ours (one call, CPU seconds, medians)",
        "",
        "\n".join(f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in measured.profile.items()),
        "",
    ]
    if not args.no_curve:
        curves = []
        for k, eps_text in enumerate(e for e in args.curve_eps.split(";") if e.strip()):
            curve = run_curve(args, eps_text.strip())
            curves.append(curve.assign(curve=k))
            fb_row = curve[curve.contender.str.startswith("foolbox")].iloc[0]
            ra_cols = [c for c in curve.columns if c.startswith("ra@")]
            shown_curve = curve[
                ["contender", "median_wall_s", "median_cpu_s", "speedup_wall", "speedup_cpu", *ra_cols, "load_avg"]
            ]
            ranges = curve[["contender", *[c for c in curve.columns if c.startswith("range@")]]]
            text += [
                f"## 8-epsilon curve {k + 1}: eps {eps_text.strip()} ({args.curve_model}, n={args.curve_n}, "
                f"PGD-{args.steps}, rel step 2.5/{args.steps}, random start; robust accuracy: mean over "
                f"{args.curve_reps} seeds)",
                "",
                _markdown(shown_curve),
                "robust accuracy range over the seeds:",
                "",
                _markdown(ranges),
            ]
            for _, r in curve.iterrows():
                if r.contender.startswith("ours"):
                    worse = [f"{c} (+{r[c] - fb_row[c]:.4f})" for c in ra_cols if r[c] > fb_row[c] + 1e-12]
                    ok3 = "yes" if min(r.speedup_cpu, r.speedup_wall) >= 3 else "NO"
                    text.append(
                        f"- {r.contender}: {r.speedup_cpu:.2f}x (CPU) / {r.speedup_wall:.2f}x (wall) cheaper "
                        f"than foolbox (target >= 3x: {ok3}); "
                        f"mean robust accuracy <= foolbox's at every eps: "
                        f"{'yes' if not worse else 'NO: ' + ', '.join(worse)}"
                    )
            text.append("")
        all_curves = pd.concat(curves, ignore_index=True)
        all_curves.to_parquet(out.with_name(out.name + "_curve.parquet"), index=False)
        all_curves.to_csv(out.with_name(out.name + "_curve.csv"), index=False)
    report = "\n".join(text) + "\n"
    out.with_suffix(".md").write_text(report)
    print(report)
    return df


if __name__ == "__main__":
    main()
