"""robustbench-cnn: an adversarial-robustness benchmark harness for convolutional image classifiers.

Python API (mirrors RobustBench where it can)::

    from robustbench_cnn import load_model, load_split
    model = load_model("digits/lenet5-standard", device="cpu")
"""

from robustbench_cnn.core.types import AttackResult, Norm, ThreatModel
from robustbench_cnn.data import load_split
from robustbench_cnn.workflows import load_model, train_model

__version__ = "0.1.0"
__all__ = ["AttackResult", "Norm", "ThreatModel", "load_model", "load_split", "train_model", "__version__"]
