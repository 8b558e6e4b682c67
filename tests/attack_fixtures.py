"""Tiny seeded models and data for the attack tests (sklearn digits, 1 x 8 x 8, 10 classes).

Cached per process, so the contract and cross-check modules train each model once.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv net for 1 x 8 x 8 inputs; the dropout makes train and eval mode differ."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * width * 16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@functools.cache
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): digits scaled to [0, 1], a fixed 1500 / 297 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return x[:1500], y[:1500], x[1500:], y[1500:]


@functools.cache
def _trained_state(steps: int, seed: int) -> dict:
    x_train, y_train, _, _ = digits()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(y_train), (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_model(steps: int = 300, seed: int = 0) -> TinyNet:
    """A fresh copy (eval mode) of a TinyNet trained for ``steps`` Adam steps on digits."""
    model = TinyNet()
    model.load_state_dict(_trained_state(steps, seed))
    return model.eval()


def held_out(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` held-out digits."""
    _, _, x_test, y_test = digits()
    return x_test[:n].clone(), y_test[:n].clone()
