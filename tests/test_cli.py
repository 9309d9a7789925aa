"""pipelines/cli.py: the `eercf` script's subcommand dispatch, usage, and every job's --help."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
import types

import pytest

from pipelines import cli
from pipelines.cli import SUBCOMMANDS, command_module
from tests.helpers import ROOT

# old spellings kept as hidden aliases (pipelines/flags.py)
HIDDEN = ("--out", "--output-dir", "--init", "--arch")


@pytest.mark.parametrize("argv", [[], ["-h"], ["--help"], ["help"]])
def test_usage_lists_every_command(argv, capsys):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: eercf <command>")
    for name, (_, help_) in SUBCOMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(help_)}$", out, re.M)


def test_unknown_command_is_a_usage_error(capsys):
    assert cli.main(["extrakt", "--input", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'extrakt'" in err and "usage: eercf" in err


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_dispatch_hands_the_rest_of_argv_to_the_jobs_run(name, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(run=lambda argv: calls.append(argv) or 7)
    monkeypatch.setattr(cli.importlib, "import_module",
                        lambda module: fake if module == command_module(name) else None)
    assert cli.main([name, "--output", "o", "--x"]) == 7
    assert calls == [["--output", "o", "--x"]]


def test_a_run_returning_none_exits_zero(monkeypatch):
    fake = types.SimpleNamespace(run=lambda argv: None)
    monkeypatch.setattr(cli.importlib, "import_module", lambda module: fake)
    assert cli.main(["synth"]) == 0


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_job_help_names_its_command_and_hides_old_spellings(name, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([name, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: eercf {name}")
    assert importlib.import_module(command_module(name)).build_parser().prog == f"eercf {name}"
    for old in HIDDEN:
        assert not re.search(rf"{old}(?![-\w])", out)


def test_the_console_module_runs_as_a_script():
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: eercf <command>")
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and "unknown command 'nope'" in proc.stderr
