"""Black-box attacks: a query-counting oracle, substitute training and transfer attacks.

- :class:`Oracle`: label- or score-only access to a target, with exact query counts and a budget;
- :func:`train_substitute`: Papernot et al. (2017) substitute training by Jacobian-based augmentation, by default
  with the whole budget and translated Jacobian and FGSM points (:mod:`~attacks.blackbox.augment`);
- :func:`transfer_attack`: a white-box attack on a source (substitute, checkpoint or ensemble), scored
  on the target; :func:`transfer_matrix`: every model against every model.

The command line (``rbc proxy train``, ``rbc transfer``, ``rbc transfer-matrix``) is in
:mod:`robustbench_cnn.commands.blackbox`.
"""

from robustbench_cnn.attacks.blackbox.matrix import matrix_wide, transfer_matrix
from robustbench_cnn.attacks.blackbox.oracle import Oracle
from robustbench_cnn.attacks.blackbox.substitute import (
    SubstituteResult,
    eval_indices,
    load_seed_set,
    seed_set_indices,
    train_substitute,
)
from robustbench_cnn.attacks.blackbox.transfer import (
    CraftedExamples,
    LogitEnsemble,
    random_noise_attack,
    transfer_attack,
)

__all__ = [
    "CraftedExamples",
    "LogitEnsemble",
    "Oracle",
    "SubstituteResult",
    "eval_indices",
    "load_seed_set",
    "matrix_wide",
    "random_noise_attack",
    "seed_set_indices",
    "train_substitute",
    "transfer_attack",
    "transfer_matrix",
]
