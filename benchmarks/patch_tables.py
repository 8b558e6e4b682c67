"""The patch tables of several ``rbc patch`` run folders as one Markdown board, one curve and one patch grid.

Run from the repository root::

    python benchmarks/patch_tables.py RUN_DIR [RUN_DIR ...] --out docs/patches

It reads each folder's ``patch.parquet`` (it runs no model), prints the leaderboard's patch board
(:func:`robustbench_cnn.reporting.boards_extra.patch_board`) over all of them as Markdown, and writes
``patch_curve.png`` and ``patches.png`` (:mod:`robustbench_cnn.reporting.patch_figures`) into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import pandas as pd

    from robustbench_cnn.reporting.boards_extra import add_markdown, patch_board
    from robustbench_cnn.reporting.patch_figures import write_patch_figures

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="rbc patch run folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    args = parser.parse_args()
    table = pd.concat([pd.read_parquet(run / "patch.parquet") for run in args.runs], ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in write_patch_figures(args.out, table):
        print(f"wrote {path}", file=sys.stderr)
    print(add_markdown("", [patch_board(table)]).strip())


if __name__ == "__main__":
    main()
