"""Target-class policies: random, least-likely, next, class:K, all; and their errors."""

from __future__ import annotations

import pytest
import torch

from robustbench_cnn.attacks.targets import all_targets, choose_targets, parse_policy

C = 10


def data(n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, C, generator=gen), torch.randint(0, C, (n,), generator=gen)


def test_random_never_equals_label_and_covers_the_other_classes() -> None:
    logits, y = data(2000)
    t = choose_targets("random", logits, y, C, torch.Generator().manual_seed(1))
    assert t.dtype == torch.int64 and t.shape == y.shape
    assert (t != y).all() and t.min() >= 0 and t.max() < C
    assert set(t.tolist()) == set(range(C))
    again = choose_targets("random", logits, y, C, torch.Generator().manual_seed(1))
    other = choose_targets("random", logits, y, C, torch.Generator().manual_seed(2))
    assert torch.equal(t, again) and not torch.equal(t, other)


def test_least_likely_is_the_argmin_logit_other_than_the_label() -> None:
    logits, y = data()
    t = choose_targets("least-likely", logits, y, C)
    assert (t != y).all()
    plain = logits.argmin(dim=1)
    keep = plain != y
    assert torch.equal(t[keep], plain[keep])
    # where the label itself has the lowest logit, the next lowest is taken
    logits2 = torch.tensor([[0.0, 1.0, 2.0], [5.0, -1.0, 3.0]])
    assert choose_targets("least-likely", logits2, torch.tensor([0, 1]), 3).tolist() == [1, 2]


def test_next_and_class_k() -> None:
    logits, y = data()
    assert torch.equal(choose_targets("next", logits, y, C), (y + 1) % C)
    assert choose_targets("next", None, torch.tensor([9]), C).tolist() == [0]
    assert (choose_targets("class:3", None, y, C) == 3).all()
    assert (choose_targets(" CLASS:0 ", None, y, C) == 0).all()


def test_all_targets_and_parse() -> None:
    assert all_targets(4) == [0, 1, 2, 3]
    assert parse_policy("all") == ("all", None)
    assert parse_policy("class:7", 10) == ("class", 7)
    assert parse_policy("Least-Likely") == ("least-likely", None)


@pytest.mark.parametrize(
    "policy, match",
    [
        ("randm", r"invalid target policy 'randm': accepted: random, least-likely, next, class:K"),
        ("", r"invalid target policy '': accepted: "),
        ("class", r"invalid target policy 'class': accepted: "),
        ("class:x", r"invalid target policy 'class:x': class:K needs an integer K"),
        ("class:10", r"invalid target policy 'class:10': K must be in \[0, 10\)"),
        ("class:-1", r"invalid target policy 'class:-1': K must be in \[0, 10\)"),
        ("all", r"policy 'all' runs one attack per class: loop over all_targets"),
    ],
)
def test_invalid_policies(policy: str, match: str) -> None:
    logits, y = data(5)
    with pytest.raises(ValueError, match=match):
        choose_targets(policy, logits, y, C)


def test_other_errors() -> None:
    logits, y = data(5)
    with pytest.raises(ValueError, match="'least-likely' needs logits of shape N x num_classes"):
        choose_targets("least-likely", None, y, C)
    with pytest.raises(ValueError, match="logits have 10 classes, expected 12"):
        choose_targets("least-likely", logits, y, 12)
    with pytest.raises(ValueError, match="targeted attacks need at least 2 classes, got 1"):
        choose_targets("next", None, torch.zeros(3, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="targeted attacks need at least 2 classes, got 1"):
        all_targets(1)
    with pytest.raises(ValueError, match=r"K must be in >= 0"):
        parse_policy("class:-2")
