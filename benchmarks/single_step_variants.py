"""Single-step AT variants on MNIST for issue 18, item 1: quick one-seed probes of ideas beyond the recipes' parameters.

A standalone loop that mirrors the N-FGSM MNIST preset of ``rbc defend`` (fastcnn on raw pixels, 10 epochs, batch
100, Adam with a triangular lr peaking at 5e-3 at epoch 4, N-FGSM noise 1 eps, step eps, eps ramped over 5 epochs;
no guard, no masking probes), with the variants as options: ``--noise``, ``--alpha`` (in eps), ``--ramp``,
``--train_eps`` (train at a larger eps than the 0.3 evaluated), ``--ema`` (evaluate an exponential moving average of
the weights), ``--kind fgsmrs``. PGD-10 on 500 test points after every epoch; at the end clean accuracy on the
10,000 test images and the default cascade (``fast``) at linf 0.3 on ``--n`` seeded test points. One JSON line per
run is appended to ``--out``. Results: docs/single_step_at.md ("Further variants").

    RBC_DATA_DIR=../shared/data python benchmarks/single_step_variants.py --seed 0 --noise 0.5 --tag n05
"""

import argparse
import copy
import json
import os
import time

import torch
import torch.nn.functional as F

from robustbench_cnn.attacks import get_attack
from robustbench_cnn.core.types import ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.evaluation.engine import evaluate
from robustbench_cnn.models import build_model


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kind", default="nfgsm")  # nfgsm | fgsmrs
    p.add_argument("--noise", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=1.0)  # in eps units
    p.add_argument("--ramp", type=float, default=5.0)
    p.add_argument("--train_eps", type=float, default=0.3)
    p.add_argument("--ema", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--clean_w", type=float, default=0.0)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", default="single_step_variants.jsonl")
    p.add_argument("--tag", default="")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    D = os.environ.get("RBC_DATA_DIR")
    tr = load_split("mnist", "train", data_dir=D)
    te = load_split("mnist", "test", data_dir=D)
    ev = load_split("mnist", "test", n=a.n, seed=1234, data_dir=D)
    mon = load_split("mnist", "test", n=500, seed=99, data_dir=D)
    model = build_model("fastcnn", in_channels=1, num_classes=10, input_size=28)
    ema = copy.deepcopy(model) if a.ema else None
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    bs = 100
    N = tr.x.shape[0]
    steps_per = N // bs
    g = torch.Generator().manual_seed(a.seed)

    def lr_at(t):  # t in epochs (float)
        pk = a.epochs * 2 // 5
        return a.lr * (t / pk if t < pk else max(0.0, (a.epochs - t) / (a.epochs - pk)))

    def pgd10(m, x, y, eps=0.3):
        return get_attack("pgd", steps=10)(m, x, y, ThreatModel.parse(f"linf:{eps}")).robust_accuracy

    hist = []
    t0 = time.time()
    for ep in range(a.epochs):
        perm = torch.randperm(N, generator=g)
        model.train()
        acc_adv = 0
        for i in range(steps_per):
            t = ep + i / steps_per
            for gr in opt.param_groups:
                gr["lr"] = lr_at(t)
            frac = min(1.0, t / a.ramp) if a.ramp > 0 else 1.0
            eps = a.train_eps * frac
            idx = perm[i * bs : (i + 1) * bs]
            x, y = tr.x[idx], tr.y[idx]
            if a.kind == "nfgsm":
                d = (torch.rand(x.shape, generator=g) * 2 - 1) * a.noise * eps
                xs = (x + d).clamp(0, 1).requires_grad_(True)
                gr_ = torch.autograd.grad(F.cross_entropy(model(xs), y), xs)[0]
                xa = (xs.detach() + a.alpha * eps * gr_.sign()).clamp(0, 1)
            elif a.kind == "fgsmrs":
                d = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
                xs = (x + d).clamp(0, 1).requires_grad_(True)
                gr_ = torch.autograd.grad(F.cross_entropy(model(xs), y), xs)[0]
                xa = torch.min(torch.max(xs.detach() + a.alpha * eps * gr_.sign(), x - eps), x + eps).clamp(0, 1)
            out = model(xa)
            loss = F.cross_entropy(out, y)
            if a.clean_w:
                loss = (1 - a.clean_w) * loss + a.clean_w * F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc_adv += (out.argmax(1) == y).sum().item()
            if ema is not None:
                with torch.no_grad():
                    dec = min(a.ema, (1 + ep * steps_per + i) / (10 + ep * steps_per + i))
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.mul_(dec).add_(pm, alpha=1 - dec)
        m = ema if ema is not None else model
        m.eval()
        r = pgd10(m, mon.x, mon.y)
        hist.append((ep, round(acc_adv / (steps_per * bs), 3), round(r, 3)))
        print(ep, hist[-1], round(time.time() - t0), flush=True)
    train_s = time.time() - t0
    m = ema if ema is not None else model
    m.eval()
    with torch.no_grad():
        clean = (
            sum((m(te.x[i : i + 1000]).argmax(1) == te.y[i : i + 1000]).sum().item() for i in range(0, 10000, 1000))
            / 100
        )
    t1 = time.time()
    e = evaluate(m, ev.x, ev.y, "linf", [0.3], "fast", seed=0)
    rob = e.robust_accuracy(0.3) * 100
    res = dict(
        vars(a),
        clean=clean,
        fast=round(rob, 2),
        pgd10_last=hist[-1][2],
        hist=hist,
        train_s=round(train_s),
        eval_s=round(time.time() - t1),
    )
    print(json.dumps(res), flush=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
