"""One CLI vocabulary (pipelines/flags.py): shared flags, -v/-q and setup_logging on every
command, one Progress line (eercf_core/progress.py), quiet --help and a quiet `eercf search`."""
from __future__ import annotations

import importlib
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from eercf_core.progress import Progress, format_seconds
from pipelines.cli import SUBCOMMANDS, command_module
from pipelines.flags import OWN_LOGGERS, parse_args, setup_logging, verbosity
from tests.helpers import ROOT
from tests.test_cli_flags import REQUIRED


def _parser(name: str):
    return importlib.import_module(command_module(name)).build_parser()


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers),
             {name: logging.getLogger(name).level for name in OWN_LOGGERS})
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_command_takes_verbose_and_quiet(name):
    parser = _parser(name)
    help_text = parser.format_help()
    assert "-v, --verbose" in help_text and "-q, --quiet" in help_text
    args = parse_args(parser, [*REQUIRED[name], "--output", "o", "-vv", "-q"])
    assert (args.verbose, args.quiet) == (2, 1)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_shows_only_defaults_worth_showing(name):
    help_text = " ".join(_parser(name).format_help().split())
    assert "(default: None)" not in help_text and "(default: False)" not in help_text
    assert help_text.count("(default: default") == 0  # never "default" stated twice
    if name == "train":
        assert "(default: 0.0001)" in help_text  # a real default is still shown


@pytest.mark.parametrize("name", ["extract", "query", "search", "report", "train"])
def test_one_device_flag_with_one_default(name):
    parser = _parser(name)
    base = [*REQUIRED[name], "--output", "o"]
    assert parse_args(parser, base).device is None  # cuda when available, else cpu
    assert parse_args(parser, [*base, "--device", "cpu"]).device == "cpu"
    assert "cuda when available" in " ".join(parser.format_help().split())


@pytest.mark.parametrize("name", ["extract", "train", "synth", "demo"])
def test_one_workers_flag_and_the_old_spelling_hidden(name):
    parser = _parser(name)
    base = [*REQUIRED[name], "--output", "o"]
    assert parse_args(parser, [*base, "--workers", "3"]).workers == 3
    assert parse_args(parser, [*base, "--decode-workers", "3"]).workers == 3
    assert not re.search(r"--decode-workers", parser.format_help())


def test_query_and_search_share_the_rerank_flags():
    flags = ("--recall-k", "--weights", "--rerank-method", "--no-frame-mask", "--nprobe")
    for name in ("query", "search"):
        parser = _parser(name)
        args = parse_args(parser, [*REQUIRED[name], "--output", "o", "--recall-k", "7", "--weights",
                                   "coarse=1", "--no-frame-mask", "--nprobe", "3"])
        assert (args.recall_k, args.weights.coarse, args.no_frame_mask, args.nprobe) == (
            7, 1.0, True, 3)
        assert all(flag in parser.format_help() for flag in flags)


def test_a_required_flag_is_required_by_argparse_under_every_spelling(capsys):
    parser = _parser("build-index")
    required = [a for a in parser._actions if a.required]
    assert {a.dest for a in required} == {"shards", "output"}
    assert parse_args(parser, ["--shards", "s", "--out", "o"]).output == "o"
    with pytest.raises(SystemExit):
        parse_args(parser, ["--shards", "s"])
    assert "the following arguments are required: --output" in capsys.readouterr().err
    usage = " ".join(parser.format_usage().split())
    assert "--output OUTPUT" in usage and "[--output" not in usage  # shown as required


def test_train_names_its_manifest_flag_apart_from_folders():
    parser = _parser("train")
    assert parse_args(parser, ["--manifest", "m.tsv", "--output", "o"]).manifest == "m.tsv"
    assert parse_args(parser, ["--videos", "m.tsv", "--output", "o"]).manifest == "m.tsv"
    assert "--videos" not in parser.format_help()


@pytest.mark.parametrize(("argv", "level"), [
    ([], 0), (["-v"], 1), (["-vv"], 2), (["--verbose", "-v"], 2), (["-q"], -1),
    (["--quiet"], -1), (["--index", "x", "-v", "a text"], 1), (["--", "-v"], 0),
    (["-version-like"], 0)])
def test_verbosity_is_read_before_the_command_loads(argv, level):
    assert verbosity(argv) == level


def test_setup_logging_silences_other_libraries_info_by_default(restore_logging):
    setup_logging(0)
    assert logging.getLogger("eercf_core.index.build").isEnabledFor(logging.INFO)
    assert logging.getLogger("pipelines.commands.query").isEnabledFor(logging.INFO)
    assert not logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
    assert logging.getLogger("faiss.loader").isEnabledFor(logging.WARNING)
    setup_logging(1)
    assert logging.getLogger("faiss.loader").isEnabledFor(logging.INFO)
    assert logging.getLogger("eercf_core").isEnabledFor(logging.DEBUG)
    setup_logging(-1)
    assert not logging.getLogger("eercf_core.index.build").isEnabledFor(logging.INFO)
    assert logging.getLogger("eercf_core.index.build").isEnabledFor(logging.WARNING)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_eercf", False)]
    assert len(ours) == 1  # set up again, not a second handler


def test_progress_line_has_rate_done_total_failures_and_eta():
    now = [100.0]
    progress = Progress("extract", 10, "videos", every=3600, started=100.0,
                        clock=lambda: now[0])
    now[0] = 104.0
    progress.add(2, failed=1, frames=24)
    assert progress.line() == ("extract: 2/10 videos (20%), 0.50 videos/s, 6.0 frames/s, "
                               "1 failed, eta 16s")
    now[0] = 120.0
    progress.add(8)
    assert progress.line().endswith("1 failed, done in 20s")


def test_progress_rate_ignores_work_done_before_a_resume(caplog):
    now = [0.0]
    progress = Progress("train", 100, "steps", every=float("inf"), show_failed=False,
                        already=50, clock=lambda: now[0])
    now[0] = 10.0
    with caplog.at_level(logging.INFO, logger="eercf_core.progress"):
        progress.add(5)  # not due: no line
        progress.add(5, detail="loss 1.0", force=True)
    assert caplog.messages == ["train: 60/100 steps (60%), 1.00 steps/s, eta 40s | loss 1.0"]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.4, "59s"), (250, "4m10s"),
                                               (7500, "2h05m")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


@pytest.mark.slow
def test_help_prints_nothing_on_stderr_and_search_at_most_one_log_line(tmp_path: Path):
    """In a fresh interpreter (import-time log lines of faiss, open_clip and Beam included)."""
    from tests.index_fixtures import tiny_index_corpus

    corpus = tiny_index_corpus(tmp_path)
    script = ("import contextlib, io, sys\n"
              "from pipelines import cli\n"
              "for name in cli.SUBCOMMANDS:\n"
              "    with contextlib.redirect_stdout(io.StringIO()), "
              "contextlib.suppress(SystemExit):\n"
              "        cli.main([name, '--help'])\n"
              "with contextlib.redirect_stdout(io.StringIO()):\n"
              "    cli.main(['--help'])\n"
              "sys.stderr.write('=== search\\n'); sys.stderr.flush()\n"
              f"sys.exit(cli.main(['search', '--index', {str(tmp_path / 'index')!r}, "
              f"'--model', {corpus['checkpoint']!r}, 'a red flag']))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    helps, _, search = proc.stderr.partition("=== search\n")
    assert helps == ""
    assert len(search.splitlines()) <= 1, search
    assert proc.stdout.startswith("s1: 'a red flag'")
