"""Benchmark plans: datasets x models (with training recipes) x threat models x cell kinds x epsilons.

A plan is a TOML file (see ``plans/*.toml``) or one of the built-in ones (``default``, ``ci``, ``mnist``,
``cifar10``). Parsing validates everything up front (names, epsilons, recipes), so a typo fails before any
training starts; :meth:`Plan.cells` expands it into the cells the runner runs: training cells for the models the
store lacks, white-box cells (the ``[whitebox] cascade`` of attacks, untargeted, and ``[targeted]``), the
``[proxy]`` substitute training and its transfer to every model, and the ``[transfer]`` matrix.

One word, one meaning: the TOML benchmark file is a *plan*; an attack preset (``fast``, ``quick``, ``standard``,
``plus``) is
a *cascade*. ``[whitebox] suite = ...`` and the names ``Suite``, ``load_suite``, ``parse_suite`` are deprecated
aliases (one release).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustbench_cnn.core.errors import RbcError
from robustbench_cnn.core.types import Norm, ThreatModel, parse_eps
from robustbench_cnn.evaluation.engine import DEFAULT_CASCADE

if TYPE_CHECKING:
    from robustbench_cnn.pipeline.cells import Cell

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLANS_DIR = Path(__file__).resolve().parent / "plans"
SUITES_DIR = PLANS_DIR  # deprecated name


@dataclass
class ModelSpec:
    """A model of the plan: an architecture and a recipe (``standard`` or a defense), or a checkpoint."""

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
class Plan:
    """A benchmark plan (see the module docstring); :meth:`cells` expands it into the runner's cells."""

    name: str
    datasets: list[str]
    models: list[ModelSpec]
    norm: str = "linf"
    eps: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.3])
    cascade: str = DEFAULT_CASCADE  # the [whitebox] attack cascade: fast | quick | standard | plus | attack names
    n: int | None = 1000
    seed: int = 0
    batch_size: int = 256
    targeted: dict[str, Any] | None = None  # {attack, policy, eps}
    proxy: dict[str, Any] | None = None  # {target, substitute, seed_size, rounds, lam, budget, epochs_per_round}
    transfer: dict[str, Any] | None = None  # {attack, eps}: proxy -> every model, and the transfer matrix
    report_eps: float | None = None  # the epsilon the leaderboard ranks at (default: the largest)
    source: str = "<built-in>"
    certify: dict[str, Any] | None = None  # {sigma, radii, models, n, n0, noise_samples, alpha, attack_steps, ...}
    corruptions: dict[str, Any] | None = None  # {threat, n}
    explain: dict[str, Any] | None = None  # {models, n, attack, params, threat, target, methods}
    detection: dict[str, Any] | None = None  # {detectors, eps, models, n, attacks, adaptive_steps, fpr, ...}
    patch: dict[str, Any] | None = None  # {models, sizes, targets, n, train_n, placements, params}

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def cells(
        self,
        *,
        store: str | os.PathLike | None = None,
        data_dir: str | os.PathLike | None = None,
        device: str = "auto",
    ) -> list[Cell]:
        """The plan's cells, each after the cells it needs, per dataset:

        1. ``defense-train`` for each model the store ``store`` lacks (a stored defended model trained at another
           threat is an error: its robustness would be reported under this plan's model);
        2. ``whitebox``: each model against the ``cascade`` at every epsilon, and with ``[targeted]`` the targeted
           attack at its epsilons;
        3. with ``[proxy]``: ``proxy-train`` of a substitute of the proxy target, then ``transfer`` from it to every
           model (at every non-zero epsilon, the ``[transfer]`` attack);
        4. with ``[transfer]`` and two models or more: one ``transfer-matrix`` at the ``[transfer]`` epsilon;
        5. with ``[corruptions]``: a ``corruptions`` cell per model (``threat``, default ``corruptions``; ``n``);
        6. with ``[certify]``: a ``certify`` cell per model of its ``models`` (plan keys; default every model);
        7. with ``[explain]``: an ``explain`` cell per model of its ``models`` (plan keys; default every model).
        8. with ``[detection]``: a ``detection`` cell per model of its ``models`` (plan keys; default every model);
        9. with ``[patch]``: a ``patch`` cell per model of its ``models`` (plan keys; default every model).

        ``store`` and ``data_dir`` are resolved to absolute paths so that Ray workers see the same ones.
        """
        from robustbench_cnn.data import data_root, dataset_info
        from robustbench_cnn.pipeline.cells import (
            defense_train_cell,
            proxy_train_cell,
            substitute_checkpoint,
            transfer_cell,
            transfer_matrix_cell,
            whitebox_cell,
        )
        from robustbench_cnn.store import store_root

        store = str(store_root(store).resolve())
        data_dir = str(data_root(data_dir).resolve())
        where = {"device": device, "data_dir": data_dir, "store": store}
        cells: list[Cell] = []
        for dataset in self.datasets:
            slug = dataset_info(dataset, data_dir).slug
            names: dict[str, str] = {}  # plan key (arch-recipe[-tag]) -> checkpoint name
            trains: dict[str, tuple[str, ...]] = {}  # checkpoint name -> the ref of its training cell, if any
            for spec in self.models:
                name = spec.checkpoint_name(slug)
                names[name.split("/", 1)[1]] = name
                train = _training_cell(spec, name, dataset, self.seed, store, defense_train_cell, where)
                if train is not None:
                    cells.append(train)
                trains[name] = (train.ref,) if train is not None else ()
            common = dict(dataset=dataset, n=self.n, seed=self.seed, batch_size=self.batch_size, **where)
            for name in names.values():
                cells.append(
                    whitebox_cell(
                        name, norm=self.norm, eps=self.eps, cascade=self.cascade, after=trains[name], **common
                    )
                )
                if self.targeted:
                    cells.append(
                        whitebox_cell(
                            name,
                            norm=self.norm,
                            eps=[parse_eps(e) for e in self.targeted.get("eps", self.eps)],
                            cascade=self.targeted.get("attack", "pgd"),
                            targeted=True,
                            target_policy=self.targeted.get("policy", "random"),
                            after=trains[name],
                            **common,
                        )
                    )
            everything = tuple(ref for refs in trains.values() for ref in refs)
            if self.proxy:
                target_key, options, attack, eps_list = self._proxy_settings(names)
                target = names[target_key]
                proxy = proxy_train_cell(
                    target,
                    dataset,
                    options.pop("substitute", "lenet5"),
                    options=options,
                    seed=self.seed,
                    after=trains[target],
                    **where,
                )
                cells.append(proxy)
                for name in names.values():
                    cells.append(
                        transfer_cell(
                            [substitute_checkpoint(proxy)],
                            name,
                            dataset,
                            self.norm,
                            eps_list,
                            attack,
                            n=self.n,
                            cascade=f"proxy:{target_key}",
                            source_names=["proxy"],
                            seed=self.seed,
                            after=(proxy.ref, *trains[name]),
                            **where,
                        )
                    )
            if self.transfer and len(names) > 1:
                eps = parse_eps(self.transfer.get("eps", max(self.eps)))
                cells.append(
                    transfer_matrix_cell(
                        list(names.values()),
                        dataset,
                        str(ThreatModel(Norm.parse(self.norm), eps)),
                        self.transfer.get("attack", "fgsm"),
                        n=self.n,
                        seed=self.seed,
                        after=everything,
                        **where,
                    )
                )
            cells += self._extra_cells(names, trains, dataset, where)
        return cells

    def _extra_cells(
        self, names: dict[str, str], trains: dict[str, tuple[str, ...]], dataset: str, where: dict[str, Any]
    ) -> list[Cell]:
        """The ``[corruptions]``, ``[certify]``, ``[explain]``, ``[detection]`` and ``[patch]`` cells of one
        dataset."""
        from robustbench_cnn.pipeline.cells import certify_cell, corruptions_cell, explain_cell

        out: list[Cell] = []
        if self.corruptions is not None:
            c = self.corruptions
            for name in names.values():
                out.append(
                    corruptions_cell(
                        name, dataset, str(c.get("threat", "corruptions")), n=c.get("n", self.n), seed=self.seed,
                        batch_size=self.batch_size, after=trains[name], **where,
                    )
                )  # fmt: skip
        if self.certify is not None:
            c = dict(self.certify)
            keys = _chosen_models("certify", c, names)
            n = c.pop("n", 100)
            for key in keys:
                out.append(
                    certify_cell(
                        names[key],
                        dataset,
                        n=n,
                        seed=self.seed,
                        after=trains[names[key]],
                        **_certify_params(c),
                        **where,
                    )
                )
        if self.explain is not None:
            c = dict(self.explain)
            keys = _chosen_models("explain", c, names)
            n = c.pop("n", 100)
            for key in keys:
                out.append(
                    explain_cell(
                        names[key], dataset, n=n, seed=self.seed, after=trains[names[key]],
                        **_explain_params(c, self), **where,
                    )
                )  # fmt: skip
        if self.detection is not None:
            from robustbench_cnn.pipeline.cells import detection_cell

            c = dict(self.detection)
            keys = _chosen_models("detection", c, names)
            n = c.pop("n", 500)
            for key in keys:
                out.append(
                    detection_cell(
                        names[key],
                        dataset,
                        norm=self.norm,
                        n=n,
                        seed=self.seed,
                        after=trains[names[key]],
                        **_detection_params(c, self.eps, self.norm),
                        **where,
                    )
                )
        if self.patch is not None:
            out += self._patch_cells(names, trains, dataset, where)
        return out

    def _patch_cells(
        self, names: dict[str, str], trains: dict[str, tuple[str, ...]], dataset: str, where: dict[str, Any]
    ) -> list[Cell]:
        """The ``[patch]`` cells of one dataset: one ``patch`` cell per chosen model, after its training cell."""
        from robustbench_cnn.data import dataset_info
        from robustbench_cnn.pipeline.cells import patch_cell

        c = dict(self.patch or {})
        keys = _chosen_models("patch", c, names)
        n = c.pop("n", self.n)
        info = dataset_info(dataset, where["data_dir"])
        try:
            params = _patch_params(c, info.num_classes, info.size)
        except ValueError as exc:  # a class or a size the dataset lacks
            raise ValueError(f"invalid plan {self.source} for dataset {dataset}: {exc}") from None
        return [
            patch_cell(
                names[key], dataset, n=n, seed=self.seed, batch_size=self.batch_size, after=trains[names[key]],
                **params, **where,
            )
            for key in keys
        ]  # fmt: skip

    def _proxy_settings(self, names: dict[str, str]) -> tuple[str, dict[str, Any], str, list[float]]:
        """(target key, substitute-training options, transfer attack, epsilons) of the plan's ``[proxy]``."""
        proxy = dict(self.proxy or {})
        target_key = proxy.pop("target", next(iter(names)))
        if target_key not in names:
            raise ValueError(f"proxy target {target_key!r} is not a model of the plan: use one of {', '.join(names)}")
        transfer = self.transfer or {"attack": "fgsm", "eps": max(self.eps)}
        return target_key, proxy, transfer.get("attack", "fgsm"), [e for e in self.eps if e > 0]


#: Deprecated name of :class:`Plan` (one release).
Suite = Plan


def _training_cell(
    spec: ModelSpec, name: str, dataset: str, seed: int, store: str, make: Any, where: dict[str, Any]
) -> Cell | None:
    """A ``defense-train`` cell for ``spec`` when the store lacks checkpoint ``name``, else None (a listed
    ``checkpoint`` must exist; a stored defended model must have been trained at the spec's threat)."""
    from robustbench_cnn.core.errors import CheckpointError
    from robustbench_cnn.store import other_threat, resolve_checkpoint

    try:
        folder = resolve_checkpoint(name, store)
    except CheckpointError:
        if spec.checkpoint:
            raise
    else:
        defended = spec.recipe != "standard" and spec.threat and not spec.checkpoint
        stored = other_threat(folder, spec.threat) if defended else None
        if stored is not None:  # else another model's robustness would be reported under this spec
            raise RbcError(
                f"checkpoint {name!r} in the store was trained at {stored}, the plan asks for "
                f"{spec.threat}: give the model a tag in the plan, or use another store"
            )
        return None
    return make(
        name,
        dataset,
        spec.arch,
        spec.recipe,
        threat=spec.threat,
        epochs=spec.epochs,
        params=spec.params,
        train=spec.train,
        tag=spec.tag,
        seed=seed,
        **where,
    )


def _chosen_models(table: str, section: dict[str, Any], names: dict[str, str]) -> list[str]:
    """The plan keys of a table's ``models`` (popped from ``section``; default every model of the plan), checked."""
    keys = list(section.pop("models", list(names)))
    unknown = [k for k in keys if k not in names]
    if unknown:
        raise ValueError(f"[{table}] models {unknown} are not models of the plan: use {', '.join(names)}")
    return keys


#: The keys a plan accepts, per table ("" is the top level; ``[[models]]`` entries take :class:`ModelSpec`'s
#: fields and ``[proxy]`` the substitute-training options, checked in :func:`_check_proxy`). An unknown key is an
#: error with the closest accepted one, never silently ignored (a misspelled key would run with the default).
PLAN_SCHEMA: dict[str, frozenset[str]] = {
    "": frozenset(
        {"name", "datasets", "n", "seed", "batch_size", "threat", "whitebox", "targeted", "proxy", "transfer"}
        | {"report", "models", "certify", "corruptions", "explain", "detection", "patch"}
    ),
    "threat": frozenset({"norm", "eps"}),
    "whitebox": frozenset({"cascade", "suite"}),
    "targeted": frozenset({"attack", "policy", "eps"}),
    "transfer": frozenset({"attack", "eps"}),
    "report": frozenset({"eps"}),
    "corruptions": frozenset({"threat", "n"}),
    "explain": frozenset({"models", "n", "attack", "params", "threat", "target", "methods"}),
    "certify": frozenset(
        {"models", "n", "sigma", "radii", "n0", "noise_samples", "alpha", "attack_steps", "attack_noise_samples"}
    ),
    "detection": frozenset(
        {"models", "n", "detectors", "eps", "attacks", "adaptive_steps", "adaptive_restarts", "fpr", "fit_n"}
        | {"calibration_n"}
    ),
    "patch": frozenset({"models", "n", "sizes", "targets", "train_n", "placements", "params"}),
}
#: Deprecated keys, per table, and the key that replaces them (suggested instead of the deprecated one).
_DEPRECATED_KEYS: dict[str, dict[str, str]] = {"whitebox": {"suite": "cascade"}}


def unknown_keys_error(table: str, given: Any, accepted: set[str] | frozenset[str], source: str) -> RbcError | None:
    """An ``RbcError`` naming the keys of ``given`` (a TOML table) that ``accepted`` lacks, each with the closest
    accepted key (``difflib``), or None when every key is known. ``table`` names it in the message (``threat``,
    ``models`` for a ``[[models]]`` entry, ``""`` for the top level)."""
    import difflib

    unknown = sorted(set(given) - set(accepted))
    if not unknown:
        return None
    deprecated = _DEPRECATED_KEYS.get(table, {})
    current = sorted(set(accepted) - set(deprecated))
    where = "[[models]]" if table == "models" else f"[{table}]" if table else "top-level"
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, current, n=1, cutoff=0.6)
        if not close:  # a misspelled deprecated key: suggest what replaces it
            old = difflib.get_close_matches(key, list(deprecated), n=1, cutoff=0.6)
            close = [deprecated[old[0]]] if old else []
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return RbcError(
        f"invalid plan {source}: unknown {where} key{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
        f"accepted: {', '.join(current)}"
    )


def _check_keys(data: dict[str, Any], source: str) -> None:
    """Every table of the plan holds only the keys of :data:`PLAN_SCHEMA` (``[[models]]`` entries: the fields of
    :class:`ModelSpec`); a table key must hold a table."""
    error = unknown_keys_error("", data, PLAN_SCHEMA[""], source)
    if error:
        raise error
    for table, accepted in PLAN_SCHEMA.items():
        if not table or table not in data:
            continue
        if not isinstance(data[table], dict):
            raise RbcError(f"invalid plan {source}: {table} must be a table ([{table}]), got {data[table]!r}")
        error = unknown_keys_error(table, data[table], accepted, source)
        if error:
            raise error
    models = data.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        raise RbcError(f"invalid plan {source}: models must be [[models]] tables")
    if "proxy" in data and not isinstance(data["proxy"], dict):
        raise RbcError(f"invalid plan {source}: proxy must be a table ([proxy]), got {data['proxy']!r}")


def _model(entry: dict[str, Any], where: str) -> ModelSpec:
    known = set(ModelSpec.__dataclass_fields__)
    error = unknown_keys_error("models", entry, known, where)
    if error:
        raise error
    if "arch" not in entry:
        raise RbcError(f'{where}: every [[models]] entry needs arch = "..."')
    return ModelSpec(**entry)


def _check_targeted_and_transfer(plan: Plan) -> None:
    """The ``[targeted]`` policy and epsilons and the ``[transfer]`` epsilon, checked as the benchmark will
    use them (``ValueError``): a typo there must fail before any training, like one in ``[threat]``."""
    from robustbench_cnn.attacks.targets import parse_policy

    if plan.targeted:
        policy = str(plan.targeted.get("policy", "random"))
        if parse_policy(policy)[0] == "all":
            raise ValueError(
                "[targeted] policy 'all' gives a success matrix, not a table row: use random, "
                "least-likely, next or class:K (or `rbc attack --target-policy all`)"
            )
        eps = plan.targeted.get("eps", plan.eps)
        if not isinstance(eps, list) or not eps:
            raise ValueError(f"[targeted] eps must be a non-empty list like [0.1, 0.2], got {eps!r}")
        ThreatModel.parse_curve(plan.norm, eps)
    if plan.transfer and "eps" in plan.transfer:
        ThreatModel.parse_curve(plan.norm, [plan.transfer["eps"]])


def _note(text: str) -> None:
    """A one-line note on stderr (deprecations)."""
    from robustbench_cnn.core.progress import console

    console.print(f"note: {text}", markup=False, highlight=False)


def _cascade(whitebox: dict[str, Any], source: str) -> str:
    """The ``[whitebox]`` cascade; the deprecated key ``suite`` is read with a note."""
    if "suite" in whitebox:
        if "cascade" in whitebox:
            raise ValueError("[whitebox] gives both cascade and its deprecated name suite: keep cascade")
        _note(f'{source}: [whitebox] suite = ... is deprecated, write cascade = "{whitebox["suite"]}"')
        return str(whitebox["suite"])
    return str(whitebox.get("cascade", DEFAULT_CASCADE))


def _certify_params(section: dict[str, Any]) -> dict[str, Any]:
    """The ``certify_cell`` settings of a ``[certify]`` table (``models`` and ``n`` removed), checked."""
    from robustbench_cnn.pipeline.cells.certify import check_certify

    allowed = {"sigma", "radii", "n0", "noise_samples", "alpha", "attack_steps", "attack_noise_samples"}
    unknown = sorted(set(section) - allowed - {"models", "n"})
    if unknown:
        raise ValueError(f"[certify] has unknown key(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}")
    if "sigma" not in section:
        raise ValueError("[certify] needs sigma (the smoothing noise level, e.g. 0.25)")
    params = {k: v for k, v in section.items() if k in allowed}
    params["radii"] = [parse_eps(r) for r in params.get("radii", [0.0, 0.25, 0.5])]
    defaults = {"n0": 100, "noise_samples": 10_000, "alpha": 0.001, "attack_steps": 20, "attack_noise_samples": 16}
    check_certify({**defaults, **params})
    return params


def _explain_params(section: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The ``explain_cell`` settings of an ``[explain]`` table (``models`` and ``n`` left out), checked: ``attack``
    (default pgd) with its ``params``, ``threat`` (default the plan's norm at its largest epsilon), ``target`` (a
    target policy; default untargeted), ``methods`` (default all four)."""
    from robustbench_cnn.pipeline.cells.explain import check_explain, explain_cell

    threat = str(section.get("threat", f"{plan.norm}:{max(plan.eps)}"))
    params = {
        "attack": str(section.get("attack", "pgd")),
        "attack_params": dict(section.get("params", {})),
        "target_policy": section.get("target") or None,
        "methods": section.get("methods"),
    }
    check_explain(explain_cell("", "", threat, **params).params)
    return {"threat": threat, **params}


def _detection_params(section: dict[str, Any], plan_eps: list[float], norm: str) -> dict[str, Any]:
    """The ``detection_cell`` settings of a ``[detection]`` table (``models`` and ``n`` removed), checked:
    ``detectors`` (names, or ``"all"``; default all), ``eps`` (default the plan's non-zero epsilons), ``attacks``,
    ``adaptive_steps``, ``adaptive_restarts``, ``fpr``, ``fit_n``, ``calibration_n`` (the cell's defaults)."""
    from robustbench_cnn.detectors import DETECTORS
    from robustbench_cnn.pipeline.cells.detection import check_detection

    allowed = PLAN_SCHEMA["detection"] - {"models", "n"}
    unknown = sorted(set(section) - allowed - {"models", "n"})
    if unknown:
        raise ValueError(f"[detection] has unknown key(s) {', '.join(unknown)}: use {', '.join(sorted(allowed))}")
    params = {k: v for k, v in section.items() if k in allowed}
    names = params.pop("detectors", ["all"])
    names = [names] if isinstance(names, str) else list(names)
    params["detectors"] = [(d, {}) for n in names for d in (DETECTORS.list() if n == "all" else [n])]
    params["eps"] = [parse_eps(e) for e in params.get("eps", [e for e in plan_eps if e > 0])]
    defaults = {"attacks": ["fgsm", "pgd"], "adaptive_steps": 100, "adaptive_restarts": 1, "fpr": 0.05}
    defaults |= {"fit_n": 2000, "calibration_n": 1000, "norm": norm}
    check_detection({**defaults, **params})
    return params


def _patch_targets(entries: Any, num_classes: int | None) -> list[int]:
    """The ``patch_cell`` targets of a ``[patch] targets`` list: ``"none"`` (untargeted, -1), a class ``3``, or
    ``"all"`` (every class); ``ValueError`` otherwise. With ``num_classes`` None (a plan parsed before its
    datasets are known) only the forms are checked and ``"all"`` gives no class yet."""
    from robustbench_cnn.pipeline.cells.patch import UNTARGETED

    entries = [entries] if isinstance(entries, (str, int)) else entries
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'[patch] targets must be a non-empty list like ["none", 3], got {entries!r}')
    top = f"0 to {num_classes - 1}" if num_classes is not None else "such as 3"
    targets: set[int] = set()
    for entry in entries:
        text = str(entry).strip().lower() if isinstance(entry, (str, int)) and not isinstance(entry, bool) else ""
        if text in ("none", "untargeted"):
            targets.add(UNTARGETED)
        elif text == "all":
            targets.update(range(num_classes or 0))
        elif text.isdigit() and (num_classes is None or int(text) < num_classes):
            targets.add(int(text))
        else:
            raise ValueError(
                f'[patch] targets: invalid target {entry!r}: use "none" (untargeted), a class {top}, or "all"'
            )
    return sorted(targets)


def _patch_params(section: dict[str, Any], num_classes: int | None = None, side: int | None = None) -> dict[str, Any]:
    """The ``patch_cell`` settings of a ``[patch]`` table (``models`` and ``n`` left out), checked: ``sizes``
    (patch areas, default [0.05, 0.1, 0.2]), ``targets`` (default ``["none"]``, untargeted), ``train_n`` (training
    images the patch is learned on, default 10,000), ``placements`` (random positions per test point, default 1),
    ``params`` (the ``patch`` attack's parameters, default its own). With the dataset's ``num_classes`` and image
    ``side`` known, the target classes and the sizes (at least one pixel) are checked against them too."""
    from robustbench_cnn.core.patch_threat import PatchThreat
    from robustbench_cnn.pipeline.cells.patch import UNTARGETED, check_patch, patch_cell

    sizes = section.get("sizes", [0.05, 0.1, 0.2])
    if not isinstance(sizes, list):
        raise ValueError(f"[patch] sizes must be a list of areas like [0.05, 0.1, 0.2], got {sizes!r}")
    whole = {"train_n": section.get("train_n", 10_000), "placements": section.get("placements", 1)}
    for key, value in whole.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"[patch] {key} must be a whole number >= 1, got {value!r}")
    params = {
        "sizes": [t.area for t in PatchThreat.parse_sizes("patch", sizes)],
        "targets": _patch_targets(section.get("targets", ["none"]), num_classes),
        "attack_params": dict(section.get("params", {})),
        **whole,
    }
    # "all" before the dataset is known gives no class yet: check the other settings with the untargeted patch
    check_patch(patch_cell("", "", **{**params, "targets": params["targets"] or [UNTARGETED]}).params, num_classes)
    for area in params["sizes"]:
        if side is not None and PatchThreat(area).side(side, side) == 0:
            raise ValueError(
                f"[patch] size {area:g} covers not one pixel of a {side} x {side} image: use at least 1/{side**2}"
            )
    return params


def parse_plan(data: dict[str, Any], source: str = "<dict>") -> Plan:
    """Build and validate a :class:`Plan` from the TOML structure."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.defenses import DEFENSES
    from robustbench_cnn.evaluation.engine import check_attack_names
    from robustbench_cnn.models import MODELS

    _check_keys(data, source)
    try:
        threat = data.get("threat", {})
        curve = ThreatModel.parse_curve(threat.get("norm", "linf"), threat.get("eps", [0.0, 0.1, 0.2, 0.3]))
        models = [_model(m, f"{source} [[models]] #{i + 1}") for i, m in enumerate(data.get("models", []))]
        datasets = list(data.get("datasets", ["digits"]))
        plan = Plan(
            name=str(data.get("name", Path(source).stem)),
            datasets=datasets,
            models=models,
            norm=curve[0].norm.value,
            eps=[t.eps for t in curve],
            cascade=_cascade(data.get("whitebox", {}), source),
            n=data.get("n", 1000),
            seed=int(data.get("seed", 0)),
            batch_size=int(data.get("batch_size", 256)),
            targeted=data.get("targeted"),
            proxy=data.get("proxy"),
            transfer=data.get("transfer"),
            report_eps=(parse_eps(data["report"]["eps"]) if "eps" in data.get("report", {}) else None),
            source=source,
            certify=data.get("certify"),
            corruptions=data.get("corruptions"),
            explain=data.get("explain"),
            detection=data.get("detection"),
            patch=data.get("patch"),
        )
        _check_targeted_and_transfer(plan)
        if plan.certify is not None:
            _certify_params(dict(plan.certify))
        if plan.explain is not None:
            _explain_params(dict(plan.explain), plan)
        if plan.detection is not None:
            _detection_params(dict(plan.detection), plan.eps, plan.norm)
        if plan.patch is not None:
            n = plan.patch.get("n", 1)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"[patch] n must be a whole number of test points >= 1, got {n!r}")
            _patch_params({k: v for k, v in plan.patch.items() if k not in ("models", "n")})
            keys = [spec.checkpoint_name("_").split("/", 1)[-1] for spec in models]
            unknown = [k for k in plan.patch.get("models", keys) if k not in keys]
            if unknown:
                raise ValueError(f"[patch] models {unknown} are not models of the plan: use {', '.join(keys)}")
        if plan.corruptions is not None:
            from robustbench_cnn.core.corruption_threat import CorruptionThreat

            CorruptionThreat.parse(str(plan.corruptions.get("threat", "corruptions")))
    except (TypeError, ValueError) as exc:
        raise RbcError(f"invalid plan {source}: {exc}") from None
    if not models:
        raise RbcError(f"invalid plan {source}: it lists no [[models]]")
    for spec in models:
        if not spec.checkpoint:
            MODELS.get(spec.arch)
            if spec.recipe != "standard":
                DEFENSES.get(spec.recipe)
                if not spec.threat:
                    raise RbcError(
                        f"invalid plan {source}: model {spec.arch}/{spec.recipe} needs threat = "
                        f'"linf:EPS" (the training threat model)'
                    )
                ThreatModel.parse_ball(spec.threat)
    _check_distinct_names(models, source)
    check_attack_names(plan.cascade)
    _check_attack_compatibility(plan, source)
    if plan.targeted:
        ATTACKS.get(plan.targeted.get("attack", "pgd"))
    if plan.transfer:
        ATTACKS.get(plan.transfer.get("attack", "fgsm"))
    if plan.proxy:
        MODELS.get(plan.proxy.get("substitute", "lenet5"))
        _check_proxy(plan, source)
    return plan


def _check_distinct_names(models: list[ModelSpec], source: str) -> None:
    """Models the plan trains must have distinct checkpoint names: two specs under one name (the same arch and
    recipe without tags) would share one stored model, and the second would be evaluated as the first."""
    seen: dict[str, int] = {}
    for i, spec in enumerate(models, start=1):
        if spec.checkpoint:
            continue
        name = spec.checkpoint_name("<dataset>")
        if name in seen:
            raise RbcError(
                f"invalid plan {source}: [[models]] #{seen[name]} and #{i} are both {name}: "
                f'give one a tag (tag = "...")'
            )
        seen[name] = i


def _check_attack_compatibility(plan: Plan, source: str) -> None:
    """Every attack the plan names can run with its norm (and, for ``[targeted]``, takes targets)."""
    from robustbench_cnn.attacks import ATTACKS
    from robustbench_cnn.evaluation.engine import resolve_attacks

    norm = Norm.parse(plan.norm)
    try:
        resolve_attacks(plan.cascade, norm)
        checks = []
        if plan.targeted:
            checks.append(("[targeted]", plan.targeted.get("attack", "pgd"), True))
        if plan.transfer or plan.proxy:
            checks.append(("[transfer]", (plan.transfer or {}).get("attack", "fgsm"), False))
        for section, name, targeted in checks:
            cls = ATTACKS.get(name)
            if norm not in cls.norms:
                raise ValueError(f"{section} attack {name!r} does not support norm {norm.value}")
            if targeted and not cls.supports_targeted:
                raise ValueError(f"{section} attack {name!r} does not support targeted attacks")
    except ValueError as exc:
        raise RbcError(f"invalid plan {source}: {exc}") from None


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


def _check_proxy(plan: Plan, source: str) -> None:
    """``[proxy]`` keys are ``target``, ``substitute`` and ``train_substitute``'s options; the target is one of
    the plan's models (checked here, before any training, not after the white-box work)."""
    import inspect

    from robustbench_cnn.attacks.blackbox.substitute import train_substitute

    options = set(inspect.signature(train_substitute).parameters) - _PROXY_SET_BY_BENCHMARK
    known = options | {"target", "substitute"}
    error = unknown_keys_error("proxy", plan.proxy or {}, known, source)
    if error:
        raise error
    target = (plan.proxy or {}).get("target")
    if target is not None:
        names = {spec.checkpoint_name("_").split("/", 1)[-1] for spec in plan.models}
        if target not in names:
            raise RbcError(
                f"invalid plan {source}: [proxy] target {target!r} is not a model of the plan "
                f"(use one of {', '.join(sorted(names))})"
            )


def load_plan(name_or_path: str | None) -> Plan:
    """A built-in plan by name (``default``, ``ci``, ``mnist``, ``cifar10``) or a TOML file path."""
    text = name_or_path or "default"
    path = Path(text)
    if not path.suffix:
        path = PLANS_DIR / f"{text}.toml"
        if not path.exists():
            known = sorted(p.stem for p in PLANS_DIR.glob("*.toml"))
            raise RbcError(f"unknown plan {text!r}: use one of {', '.join(known)} or a path to a .toml file")
    if not path.exists():
        raise RbcError(f"plan file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RbcError(f"plan file {path} is not valid TOML: {exc}") from None
    return parse_plan(data, str(path))


def load_suite(name_or_path: str | None) -> Plan:
    """Deprecated name of :func:`load_plan` (one release)."""
    return load_plan(name_or_path)


def parse_suite(data: dict[str, Any], source: str = "<dict>") -> Plan:
    """Deprecated name of :func:`parse_plan` (one release)."""
    return parse_plan(data, source)
