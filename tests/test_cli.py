"""The rbc CLI through click's CliRunner: the train -> list flow and the error table (one line, exit 2)."""

from __future__ import annotations

from cli_helpers import assert_one_line_error
from click.testing import CliRunner

from cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_train_then_list(store) -> None:
    result = run("train", "--model", "lenet5", "--epochs", "2", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "digits/lenet5-standard" in result.output
    listed = run("models", "list")
    assert "digits/lenet5-standard" in listed.output and "wide_resnet" in listed.output
    assert (store / "checkpoints" / "digits" / "lenet5-standard" / "card.json").exists()


def test_unknown_model_suggests(store) -> None:
    assert_one_line_error(run("train", "--model", "resnet19"), "Did you mean: resnet18")


def test_unknown_dataset_suggests(store) -> None:
    assert_one_line_error(run("train", "--model", "lenet5", "--dataset", "digit"), "Did you mean: digits")


def test_missing_data_offline(store, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RBC_OFFLINE", "1")
    result = run("train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert_one_line_error(result, f"looked in {tmp_path / 'MNIST'}")


def test_bad_device(store) -> None:
    assert_one_line_error(run("train", "--model", "lenet5", "--device", "tpu"), "invalid device 'tpu'")


def test_channel_mismatch_between_checkpoint_and_dataset(store, tmp_path) -> None:
    import numpy as np
    from PIL import Image

    assert run("train", "--model", "lenet5", "--epochs", "1", "--no-progress").exit_code == 0
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / split / "a" / "0.png")
    result = run(
        "train",
        "--model",
        "lenet5",
        "--dataset",
        f"imagefolder:{tmp_path}",
        "--init-from",
        "digits/lenet5-standard",
        "--freeze",
        "features",
    )
    assert_one_line_error(result, "expects 1-channel input")


def test_freeze_needs_init_from(store) -> None:
    assert_one_line_error(run("train", "--model", "lenet5", "--freeze", "features"), "needs --init-from")


def test_data_list_shows_digits() -> None:
    result = run("data", "list")
    assert result.exit_code == 0 and "digits" in result.output and "1x8x8" in result.output


# ------------------------------------------------------------------ shared options before and after the subcommand


def _probe_group():
    """A root group and a command built with the decorators the real commands use; the command prints what it
    received, so every shared option can be checked with exact values."""
    import json

    import click

    from robustbench_cnn.commands.errors import RbcGroup
    from robustbench_cnn.commands.options import common_options, out_option, root_options

    @click.group(cls=RbcGroup)
    @root_options
    def root() -> None:
        pass

    @root.command("show")
    @common_options
    @out_option()
    def show(**values) -> None:
        click.echo(json.dumps(values, sort_keys=True))

    return root


SHARED_GIVEN = ["--data-dir", "D", "--store", "S", "--device", "cpu", "--seed", "3", "--no-progress", "--out", "O"]
SHARED_VALUES = {"data_dir": "D", "store": "S", "device": "cpu", "seed": 3, "progress": False, "out": "O"}
SHARED_DEFAULTS = {"data_dir": None, "store": None, "device": "auto", "seed": 0, "progress": True, "out": None}


def _probe(*args: str) -> dict:
    import json

    result = CliRunner().invoke(_probe_group(), list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_shared_options_work_before_and_after_the_subcommand() -> None:
    assert _probe("show") == SHARED_DEFAULTS
    assert _probe(*SHARED_GIVEN, "show") == SHARED_VALUES
    assert _probe("show", *SHARED_GIVEN) == SHARED_VALUES
    # both places: the subcommand's value wins, option by option; the others keep the value given before
    after = ["--store", "S2", "--seed", "4", "--progress", "--out", "O2"]
    assert _probe(*SHARED_GIVEN, "show", *after) == {
        **SHARED_VALUES,
        "store": "S2",
        "seed": 4,
        "progress": True,
        "out": "O2",
    }


def test_a_shared_option_given_before_a_command_without_it_is_an_error(tmp_path) -> None:
    line = assert_one_line_error(run("--seed", "1", "report", str(tmp_path)), "--seed given before the subcommand")
    assert "report has no such option" in line
    assert run("--seed", "1", "report", "--help").exit_code == 0  # the help still shows


def test_store_before_and_after_the_subcommand_on_a_real_command(tmp_path) -> None:
    def listed_store(*args: str) -> str:
        result = run(*args)
        assert result.exit_code == 0, result.output
        text = "".join(result.output.split())  # rich wraps the title "checkpoints in STORE/checkpoints"
        return text[text.index("checkpointsin") + len("checkpointsin") :].split("/checkpoints")[0]

    first, second = tmp_path / "s1", tmp_path / "s2"
    assert listed_store("--store", str(first), "models", "list") == str(first)
    assert listed_store("models", "list", "--store", str(second)) == str(second)
    assert listed_store("--store", str(first), "models", "list", "--store", str(second)) == str(second)


def test_out_before_the_subcommand_reaches_an_option_with_another_name(tmp_path) -> None:
    """``rbc tradeoff`` calls its --out ``out_path``: the root's --out arrives there all the same."""
    result = run("--out", str(tmp_path / "t.csv"), "tradeoff", "--store", str(tmp_path / "store"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.csv").exists()


def test_threads_before_after_and_from_the_environment(monkeypatch) -> None:
    import torch

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    cases = [
        (["--threads", "2", "data", "list"], [2]),
        (["data", "list", "--threads", "3"], [3]),
        (["--threads", "2", "data", "list", "--threads", "3"], [3]),  # the subcommand's value wins
        (["data", "list"], []),  # torch's choice
    ]
    for args, expected in cases:
        calls.clear()
        assert run(*args).exit_code == 0
        assert calls == expected, args
    monkeypatch.setenv("RBC_THREADS", "2")
    calls.clear()
    assert run("data", "list").exit_code == 0 and calls == [2]
    calls.clear()
    assert run("--threads", "1", "data", "list").exit_code == 0 and calls == [1]  # the command line beats the env
    assert_one_line_error(run("data", "list", "--threads", "0"), "invalid --threads 0: must be >= 1")
    assert_one_line_error(run("--threads", "0", "data", "list"), "invalid --threads 0: must be >= 1")


# ------------------------------------------------------------------ -p/--param and the legacy spellings


DEPRECATED = "is deprecated and goes away in the next release: use -p/--param KEY=VALUE"


def test_train_param_sets_architecture_options(store) -> None:
    from robustbench_cnn.store import read_card

    result = run("train", "-m", "lenet5", "--epochs", "1", "--no-progress", "-p", "classic=true")
    assert result.exit_code == 0, result.output
    assert DEPRECATED not in result.output
    assert read_card(store / "checkpoints" / "digits" / "lenet5-standard").arch_kwargs == {"classic": True}
    legacy = run("train", "-m", "lenet5", "--epochs", "1", "--no-progress", "--arch-arg", "classic=false", "--tag", "b")
    assert legacy.exit_code == 0, legacy.output
    assert legacy.stderr.splitlines()[0] == f"Note: --arch-arg {DEPRECATED}."
    assert read_card(store / "checkpoints" / "digits" / "lenet5-standard-b").arch_kwargs == {"classic": False}


def test_param_names_the_spelling_used_in_errors(store) -> None:
    assert_one_line_error(run("train", "-m", "lenet5", "-p", "classic"), "invalid --param 'classic': use KEY=VALUE")
    result = run("train", "-m", "lenet5", "--arch-arg", "classic")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Note: --arch-arg {DEPRECATED}.",
        "Error: invalid --arch-arg 'classic': use KEY=VALUE, e.g. steps=20",
    ]


def test_defend_param_goes_to_the_defense_or_the_architecture(store) -> None:
    from robustbench_cnn.commands.defend import split_params

    assert split_params(("guard=false", "classic=true"), {"guard": True, "alpha": None}) == (
        {"guard": False},
        {"classic": True},
    )
    base = ["defend", "--defense", "fgsm-rs", "-t", "linf:0.1", "-m", "lenet5", "--epochs", "1", "--no-progress"]
    # a parameter of the defense is checked by the defense before anything is trained
    assert_one_line_error(run(*base, "-p", "guard=maybe"), "invalid guard 'maybe' for defense 'fgsm-rs'")
    legacy = run(*base, "--defense-arg", "guard=maybe")
    assert legacy.stderr.splitlines()[0] == f"Note: --defense-arg {DEPRECATED}."
    assert "invalid guard 'maybe' for defense 'fgsm-rs'" in legacy.stderr.splitlines()[1]
    # any other key is the architecture's
    line = assert_one_line_error(run(*base, "-p", "depth=7"), "lenet5 got unexpected option(s) depth")
    assert "not parameters of defense 'fgsm-rs'" in line and "go to the architecture" in line
    legacy = run(*base, "--arch-arg", "classic=maybe")
    assert legacy.exit_code == 2 and legacy.stderr.splitlines()[0] == f"Note: --arch-arg {DEPRECATED}."
    assert "lenet5 option classic='maybe'" in legacy.stderr
    assert not (store / "checkpoints").exists()


def test_transfer_param_and_its_legacy_spelling(store) -> None:
    base = ["transfer", "--source", "a", "--target", "b", "--attack", "fgsm", "--eps", "0.1"]
    # the attack refuses an unknown parameter before any model is loaded (a and b do not exist)
    assert_one_line_error(run(*base, "-p", "bogus=1"), "invalid parameter(s) bogus for attack 'fgsm'")
    legacy = run(*base, "--attack-arg", "bogus=1")
    assert legacy.exit_code == 2
    assert legacy.stderr.splitlines() == [
        f"Note: --attack-arg {DEPRECATED}.",
        "Error: invalid parameter(s) bogus for attack 'fgsm': accepted: grad_samples, grad_shift, grad_sigma, loss",
    ]


def test_every_legacy_spelling_is_hidden() -> None:
    from click.testing import CliRunner as Runner

    for command, legacy in [
        (["train"], ["--arch-arg"]),
        (["defend"], ["--defense-arg", "--arch-arg"]),
        (["transfer"], ["--attack-arg"]),
        (["transfer-matrix"], ["--attack-arg"]),
    ]:
        help_text = Runner().invoke(main, [*command, "--help"]).output
        assert "-p, --param KEY=VALUE" in help_text, command
        for flag in legacy:
            assert flag not in help_text, (command, flag)


def test_attack_help_names_the_listing_command() -> None:
    help_text = run("attack", "--help").output
    assert "see --list" not in help_text and "rbc attacks list" in help_text
