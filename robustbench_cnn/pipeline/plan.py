"""Benchmark suites: datasets x models (with training recipes) x threat models x attacks x epsilons.

A suite is a TOML file (see ``suites/*.toml``) or one of the built-in ones (``default``, ``ci``). Parsing
validates everything up front (names, epsilons, recipes), so a typo fails before any training starts.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.types import Norm, ThreatModel, parse_eps

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_DIR = Path(__file__).resolve().parent / "plans"


@dataclass
class ModelSpec:
    """A model of the suite: an architecture and a recipe (``standard`` or a defense), or a checkpoint."""

    arch: str
    recipe: str = "standard"
    threat: str | None = None  # training threat model of a defense, e.g. "linf:0.1"
    epochs: int | None = None
    params: dict[str, Any] = field(default_factory=dict)  # defense parameters (alpha, steps, beta, ...)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides (batch_size, lr, ...)
    tag: str | None = None
    checkpoint: str | None = None  # use an existing checkpoint instead of training

    def checkpoint_name(self, dataset_slug: str) -> str:
        from robustbench_cnn.store import checkpoint_name

        return self.checkpoint or checkpoint_name(dataset_slug, self.arch, self.recipe, self.tag)


@dataclass
class Suite:
    name: str
    datasets: list[str]
    models: list[ModelSpec]
    norm: str = "linf"
    eps: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3])
    attacks: str = "quick"
    n: int | None = 1000
    seed: int = 0
    batch_size: int = 256
    targeted: dict[str, Any] | None = None  # {attack, policy, eps}
    proxy: dict[str, Any] | None = None  # {target, substitute, seed_size, rounds, lam, budget, epochs_per_round}
    transfer: dict[str, Any] | None = None  # {attack, eps}: proxy -> every model, and the transfer matrix
    report_eps: float | None = None  # the epsilon the leaderboard ranks at (default: the largest)
    source: str = "<built-in>"

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _model(entry: dict[str, Any], where: str) -> ModelSpec:
    known = set(ModelSpec.__dataclass_fields__)
    unknown = set(entry) - known
    if unknown:
        raise RbcError(f"{where}: unknown model keys {', '.join(sorted(unknown))} (use {', '.join(sorted(known))})")
    if "arch" not in entry:
        raise RbcError(f'{where}: every [[models]] entry needs arch = "..."')
    return ModelSpec(**entry)


def _check_targeted_and_transfer(suite: Suite) -> None:
    """The ``[targeted]`` policy and epsilons and the ``[transfer]`` epsilon, checked as the benchmark will
    use them (``ValueError``): a typo there must fail before any training, like one in ``[threat]``."""
    from robustbench_cnn.attacks.targets import parse_policy

    norm = Norm.parse(suite.norm)
    if suite.targeted:
        policy = str(suite.targeted.get("policy", "random"))
        if parse_policy(policy)[0] == "all":
            raise ValueError(
                "[targeted] policy 'all' gives a success matrix, not a table row: use random, "
                "least-likely, next or class:K (or `rbc attack --target-policy all`)"
            )
        eps = suite.targeted.get("eps", suite.eps)
        if not isinstance(eps, list) or not eps:
            raise ValueError(f"[targeted] eps must be a non-empty list like [0.1, 0.2], got {eps!r}")
        for e in eps:
            ThreatModel(norm, parse_eps(e))
    if suite.transfer and "eps" in suite.transfer:
        ThreatModel(norm, parse_eps(suite.transfer["eps"]))


def parse_suite(data: dict[str, Any], source: str = "<dict>") -> Suite:
    """Build and validate a :class:`Suite` from the TOML structure."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.defenses import DEFENSES
    from robustbench_cnn.evaluation.engine import check_attack_names
    from robustbench_cnn.models import MODELS

    try:
        threat = data.get("threat", {})
        norm = Norm.parse(threat.get("norm", "linf")).value
        eps = sorted({parse_eps(e) for e in threat.get("eps", [0.0, 0.1, 0.2, 0.3])})
        for e in eps:
            ThreatModel(Norm.parse(norm), e)
        models = [_model(m, f"{source} [[models]] #{i + 1}") for i, m in enumerate(data.get("models", []))]
        datasets = list(data.get("datasets", ["digits"]))
        suite = Suite(
            name=str(data.get("name", Path(source).stem)),
            datasets=datasets,
            models=models,
            norm=norm,
            eps=eps,
            attacks=str(data.get("whitebox", {}).get("suite", "quick")),
            n=data.get("n", 1000),
            seed=int(data.get("seed", 0)),
            batch_size=int(data.get("batch_size", 256)),
            targeted=data.get("targeted"),
            proxy=data.get("proxy"),
            transfer=data.get("transfer"),
            report_eps=(parse_eps(data["report"]["eps"]) if "eps" in data.get("report", {}) else None),
            source=source,
        )
        _check_targeted_and_transfer(suite)
    except (TypeError, ValueError) as exc:
        raise RbcError(f"invalid suite {source}: {exc}") from None
    if not models:
        raise RbcError(f"invalid suite {source}: it lists no [[models]]")
    for spec in models:
        if not spec.checkpoint:
            MODELS.get(spec.arch)
            if spec.recipe != "standard":
                DEFENSES.get(spec.recipe)
                if not spec.threat:
                    raise RbcError(
                        f"invalid suite {source}: model {spec.arch}/{spec.recipe} needs threat = "
                        f'"linf:EPS" (the training threat model)'
                    )
                ThreatModel.parse(spec.threat)
    _check_distinct_names(models, source)
    check_attack_names(suite.attacks)
    _check_attack_compatibility(suite, source)
    if suite.targeted:
        ATTACKS.get(suite.targeted.get("attack", "pgd"))
    if suite.transfer:
        ATTACKS.get(suite.transfer.get("attack", "fgsm"))
    if suite.proxy:
        MODELS.get(suite.proxy.get("substitute", "lenet5"))
        _check_proxy(suite, source)
    return suite


def _check_distinct_names(models: list[ModelSpec], source: str) -> None:
    """Models the suite trains must have distinct checkpoint names: two specs under one name (the same arch and
    recipe without tags) would share one stored model, and the second would be evaluated as the first."""
    seen: dict[str, int] = {}
    for i, spec in enumerate(models, start=1):
        if spec.checkpoint:
            continue
        name = spec.checkpoint_name("<dataset>")
        if name in seen:
            raise RbcError(
                f"invalid suite {source}: [[models]] #{seen[name]} and #{i} are both {name}: "
                f'give one a tag (tag = "...")'
            )
        seen[name] = i


def _check_attack_compatibility(suite: Suite, source: str) -> None:
    """Every attack the suite names can run with its norm (and, for ``[targeted]``, takes targets)."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.evaluation.engine import resolve_attacks

    norm = Norm.parse(suite.norm)
    try:
        resolve_attacks(suite.attacks, norm)
        checks = []
        if suite.targeted:
            checks.append(("[targeted]", suite.targeted.get("attack", "pgd"), True))
        if suite.transfer or suite.proxy:
            checks.append(("[transfer]", (suite.transfer or {}).get("attack", "fgsm"), False))
        for section, name, targeted in checks:
            cls = ATTACKS.get(name)
            if norm not in cls.norms:
                raise ValueError(f"{section} attack {name!r} does not support norm {norm.value}")
            if targeted and not cls.supports_targeted:
                raise ValueError(f"{section} attack {name!r} does not support targeted attacks")
    except ValueError as exc:
        raise RbcError(f"invalid suite {source}: {exc}") from None


#: ``train_substitute`` arguments the benchmark sets itself (not ``[proxy]`` keys).
_PROXY_SET_BY_BENCHMARK = {
    "target_model",
    "dataset",
    "substitute_arch",
    "seed",
    "device",
    "data_dir",
    "store",
    "target_name",
    "progress",
    "save",
    "tag",
}


def _check_proxy(suite: Suite, source: str) -> None:
    """``[proxy]`` keys are ``target``, ``substitute`` and ``train_substitute``'s options; the target is one of
    the suite's models (checked here, before any training, not after the white-box work)."""
    import inspect

    from robustbench_cnn.attacks.blackbox.substitute import train_substitute

    options = set(inspect.signature(train_substitute).parameters) - _PROXY_SET_BY_BENCHMARK
    known = options | {"target", "substitute"}
    unknown = sorted(set(suite.proxy or {}) - known)
    if unknown:
        raise RbcError(
            f"invalid suite {source}: unknown [proxy] key(s) {', '.join(unknown)} (use {', '.join(sorted(known))})"
        )
    target = (suite.proxy or {}).get("target")
    if target is not None:
        names = {spec.checkpoint_name("_").split("/", 1)[-1] for spec in suite.models}
        if target not in names:
            raise RbcError(
                f"invalid suite {source}: [proxy] target {target!r} is not a model of the suite "
                f"(use one of {', '.join(sorted(names))})"
            )


def load_suite(name_or_path: str | None) -> Suite:
    """A built-in suite by name (``default``, ``ci``, ``mnist``, ``cifar10``) or a TOML file path."""
    text = name_or_path or "default"
    path = Path(text)
    if not path.suffix:
        path = SUITES_DIR / f"{text}.toml"
        if not path.exists():
            known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
            raise RbcError(f"unknown suite {text!r}: use one of {', '.join(known)} or a path to a .toml file")
    if not path.exists():
        raise RbcError(f"suite file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RbcError(f"suite file {path} is not valid TOML: {exc}") from None
    return parse_suite(data, str(path))
