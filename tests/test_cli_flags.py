"""Every job: `build_parser()`/`run(argv)`, `--output` and `--model`, old spellings as hidden
aliases."""
from __future__ import annotations

import importlib
import re

import pytest

from pipelines.cli import SUBCOMMANDS, command_module
from pipelines.flags import parse_args

REQUIRED = {
    "extract": ["--input", "x.mp4"],
    "build-index": ["--shards", "s"],
    "query": ["--index", "i", "--queries", "q.tsv", "--model", "m"],
    "evaluate": ["--ranked", "r.tsv", "--ground-truth", "g.tsv"],
    "train": [],
    "synth": [],
    "demo": [],
    "report": ["--ranked", "r.tsv", "--queries", "q.tsv", "--index", "i"],
    "search": ["--index", "i", "--model", "m", "a text"],
    "import-dataset": ["msrvtt", "--annotations", "a", "--videos", "v"],
    "verify": [],
}


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_job_has_parser_run_and_output(name):
    module = importlib.import_module(command_module(name))
    assert callable(module.run)
    parser = module.build_parser()
    args = parse_args(parser, [*REQUIRED[name], "--output", "o"])
    assert args.output == "o"
    for old in ("--out", "--output-dir"):
        assert parse_args(parser, [*REQUIRED[name], old, "o"]).output == "o"
        assert not re.search(rf"{old}(?![-\w])", parser.format_help())  # hidden


@pytest.mark.parametrize("name", ["extract", "query", "train", "demo", "report", "search"])
def test_model_flag_and_hidden_aliases(name):
    parser = importlib.import_module(command_module(name)).build_parser()
    base = [*(a for a in REQUIRED[name] if a not in ("--model", "m")), "--output", "o"]
    assert parse_args(parser, [*base, "--model", "a"]).model == "a"
    for old in ("--init", "--arch"):
        assert parse_args(parser, [*base, old, "a"]).model == "a"
        assert not re.search(rf"{old}(?![-\w])", parser.format_help())


def test_missing_required_output_is_a_usage_error(capsys):
    parser = importlib.import_module("pipelines.commands.build_index").build_parser()
    with pytest.raises(SystemExit) as exited:
        parse_args(parser, ["--shards", "s"])
    assert exited.value.code == 2
    assert "--output" in capsys.readouterr().err
