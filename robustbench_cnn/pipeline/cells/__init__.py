"""Cell kinds: what one cell of a run computes. The runner (:mod:`robustbench_cnn.pipeline.runner`) does the
rest the same way for every kind: dependency order, resume, executors (local or Ray), progress, run metadata,
atomic writes.

Registered kinds (one module each):

- ``whitebox``: a model against an attack cascade along an epsilon list, untargeted or targeted;
- ``target-matrix``: one targeted attack towards every class (target policy ``all``);
- ``defense-train``: train a model a plan lacks (standard or a defense recipe) into the model store;
- ``proxy-train``: a substitute of a black-box target from oracle labels, saved to the model store;
- ``transfer``: from a proxy, a model or an ensemble of models to a target;
- ``transfer-matrix``: every model as source against every model as target;
- ``certify``: randomized smoothing, certified (lower) beside attacked (upper) accuracy per L2 radius;
- ``corruptions``: accuracy under common corruptions, per corruption and severity, and the mean;
- ``minimal-norm``: one minimal-norm attack run gives the curve, beside the growing ball and their worst case;
- ``explain``: saliency, Integrated Gradients, occlusion and Grad-CAM of clean vs adversarial, attribution shift;
- ``patch``: universal adversarial patches learned on training images, success rate per patch area and target class;
- ``detection``: detectors guarding a model (abstain when flagged), non-adaptive TPR/AUC and adaptive robust accuracy.

Adding a cell kind is one new module with one decorated class, plus its import line below::

    # robustbench_cnn/pipeline/cells/my_kind.py
    from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellKind, CellResult

    @CELL_KINDS.register("my-kind")
    class MyKind(CellKind):
        def check(self, cell: Cell) -> None: ...       # optional: validate cell.params before any work
        def weights(self, cell: Cell) -> str: ...      # optional: hash of the models it evaluates (resume key);
                                                       # a kind of one model derives from whitebox.OneModelKind
        def run(self, cell: Cell, progress: bool = False) -> CellResult:
            ...  # summary/sample records, named tables, model metadata: plain data

Build cells as ``Cell(kind="my-kind", model=..., dataset=..., params={...JSON-able...}, after=(other.ref,))``
(a small ``my_kind_cell(...)`` constructor beside the class keeps call sites short) and hand them to
:func:`robustbench_cnn.pipeline.runner.run_cells`; a plan emits them from :meth:`Plan.cells`.
"""

from __future__ import annotations

from robustbench_cnn.pipeline.cells import (  # noqa: F401  (register the kinds)
    certify,
    corruptions,
    defense_train,
    detection,
    explain,
    minimal_norm,
    patch,
    proxy_train,
    target_matrix,
    transfer,
    transfer_matrix,
    whitebox,
)
from robustbench_cnn.pipeline.cells.base import CELL_KINDS, Cell, CellKind, CellResult
from robustbench_cnn.pipeline.cells.certify import certify_cell
from robustbench_cnn.pipeline.cells.corruptions import corruptions_cell
from robustbench_cnn.pipeline.cells.defense_train import defense_train_cell
from robustbench_cnn.pipeline.cells.detection import detection_cell
from robustbench_cnn.pipeline.cells.explain import explain_cell
from robustbench_cnn.pipeline.cells.minimal_norm import minimal_norm_cell
from robustbench_cnn.pipeline.cells.patch import patch_cell
from robustbench_cnn.pipeline.cells.proxy_train import proxy_train_cell, substitute_checkpoint
from robustbench_cnn.pipeline.cells.target_matrix import target_matrix_cell
from robustbench_cnn.pipeline.cells.transfer import transfer_cell
from robustbench_cnn.pipeline.cells.transfer_matrix import check_matrix, transfer_matrix_cell
from robustbench_cnn.pipeline.cells.whitebox import whitebox_cell

__all__ = [
    "CELL_KINDS",
    "Cell",
    "CellKind",
    "CellResult",
    "certify_cell",
    "check_matrix",
    "corruptions_cell",
    "defense_train_cell",
    "explain_cell",
    "detection_cell",
    "minimal_norm_cell",
    "patch_cell",
    "proxy_train_cell",
    "substitute_checkpoint",
    "target_matrix_cell",
    "transfer_cell",
    "transfer_matrix_cell",
    "whitebox_cell",
]
