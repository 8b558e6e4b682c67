"""The shape of the package: ``import cli`` is light (no torch), nothing imports ``cli``, every command has a help
page and is one of our click classes, and the package root resolves its public names lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli import main
from robustbench_cnn.commands.errors import RbcCommand, RbcGroup

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "numpy", "pandas", "rich.console", "rich.table")


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every command and group under ``group``, with the words that reach it."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands(main))


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_importing_cli_imports_no_heavy_module() -> None:
    """``rbc --help`` must not pay for torch: a fresh interpreter imports cli and finds none of HEAVY loaded."""
    result = _run_python(f"import sys, cli; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_pages_import_no_torch() -> None:
    """``rbc --help`` and every ``rbc <cmd> --help`` run in one fresh interpreter without importing torch."""
    pages = [[]] + [list(words) for words, _ in COMMANDS]
    code = (
        "import sys\nfrom cli import main\n"
        f"for words in {pages!r}:\n"
        "    try:\n        main([*words, '--help'], prog_name='rbc')\n    except SystemExit as exc:\n"
        "        assert exc.code == 0, (words, exc.code)\n"
        "print('torch' in sys.modules)\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def _imports_cli(tree: ast.AST) -> list[int]:
    """Line numbers of ``import cli``, ``from cli import ...`` and ``import_module("cli")``, at any depth
    (function-local imports count)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "cli" or a.name.startswith("cli.") for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "cli":
            lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).split(".")[0] == "cli"
        ):
            lines.append(node.lineno)
    return lines


def test_no_module_of_the_package_imports_cli() -> None:
    files = sorted((ROOT / "robustbench_cnn").rglob("*.py"))
    assert len(files) > 20  # the walk found the package
    offenders = {
        str(f.relative_to(ROOT)): lines for f in files if (lines := _imports_cli(ast.parse(f.read_text(), str(f))))
    }
    assert offenders == {}


def test_the_cli_import_check_sees_function_local_imports() -> None:
    code = "def f():\n    from cli import main\n\ndef g():\n    import importlib\n    importlib.import_module('cli')\n"
    assert _imports_cli(ast.parse(code)) == [2, 6]


def test_rbc_help_exits_0() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in main.commands)


@pytest.mark.parametrize("words", [words for words, _ in COMMANDS], ids=" ".join)
def test_every_command_help_exits_0(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")


def test_every_command_is_one_of_our_classes() -> None:
    """Groups are RbcGroups and commands RbcCommands: one-line input errors, --threads, and the shared options
    given before the subcommand reach every command."""
    for words, command in COMMANDS:
        expected = RbcGroup if isinstance(command, click.Group) else RbcCommand
        assert isinstance(command, expected), words
        if not isinstance(command, click.Group):
            assert any("--threads" in p.opts for p in command.params if isinstance(p, click.Option)), words


def test_package_root_resolves_public_names_lazily() -> None:
    import robustbench_cnn

    assert set(robustbench_cnn.__all__) <= set(dir(robustbench_cnn))
    from robustbench_cnn import load_model, load_split
    from robustbench_cnn.data import load_split as data_load_split
    from robustbench_cnn.workflows import load_model as workflows_load_model

    assert load_model is workflows_load_model and load_split is data_load_split
    for name in robustbench_cnn.__all__:
        assert getattr(robustbench_cnn, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        robustbench_cnn.nope  # noqa: B018
