"""The error convention of every job: expected errors are one line + exit 2 (tracebacks only
with --debug or for bugs), flags are checked up front, unknown flags are refused, outputs are
proved writable before any work, and model names mean one model in every job."""
from __future__ import annotations

import json

import numpy as np
import pytest

from eercf_core.video.writer import write_video
from pipelines import cli
from pipelines.commands import build_index, extract, query
from pipelines.flags import add_model_flags, check_beam_flags, model_spec

TINY = ["--model", "eercf-tiny", "--random-init", "--device", "cpu"]


def _videos(folder, count=3):
    rng = np.random.default_rng(0)
    for i in range(count):
        frames = rng.integers(0, 255, (1, 32, 32, 3)) + np.arange(16)[:, None, None, None] * (i + 1)
        write_video(folder / f"v{i}.mp4", frames.clip(0, 255).astype(np.uint8), fps=8)
    return folder


def _main_error(capsys, argv) -> str:
    """Run `eercf argv`; it must fail with exit 2 and exactly one stderr line, returned."""
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _argparse_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------ exit-2 convention
def test_expected_errors_are_one_line_exit_2(tmp_path, capsys):
    err = _main_error(capsys, ["extract", "--input", str(tmp_path / "missing.mp4"),
                               "--output", str(tmp_path / "out"), *TINY])
    assert err.startswith("eercf extract: error: ") and "missing.mp4" in err
    (tmp_path / "r.tsv").write_text("q\t1\tv\tnan\t0.1\n")
    (tmp_path / "gt.tsv").write_text("q\tv\n")
    err = _main_error(capsys, ["evaluate", "--ranked", str(tmp_path / "r.tsv"), "--ground-truth",
                               str(tmp_path / "gt.tsv"), "--output", str(tmp_path / "e")])
    assert "r.tsv:1: scores must be finite" in err
    err = _main_error(capsys, ["build-index", "--shards", str(tmp_path / "nothing"),
                               "--output", str(tmp_path / "index")])
    assert "nothing" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.mp4"):
        cli.main(["extract", "--input", str(tmp_path / "missing.mp4"), "--output",
                  str(tmp_path / "out"), *TINY, "--debug"])


def test_bugs_keep_their_traceback(monkeypatch, tmp_path):
    def broken(argv):
        raise KeyError("a bug")

    monkeypatch.setattr(extract, "run", broken)
    with pytest.raises(KeyError):
        cli.main(["extract"])


# ---------------------------------------------------------------------------- flag checks
@pytest.mark.parametrize(("job", "flag", "value", "expect"), [
    ("extract", "--batch-size", "0", "must be >= 1"),
    ("extract", "--shard-size", "0", "must be >= 1"),
    ("extract", "--per-video-timeout", "0", "must be > 0"),
    ("extract", "--per-video-timeout", "nan", "must be > 0"),
    ("extract", "--workers", "0", "must be >= 1"),
    ("query", "--batch-size", "0", "must be >= 1"),
    ("query", "--recall-k", "0", "must be >= 1"),
    ("query", "--top-n", "-1", "must be >= 0"),
    ("query", "--weights", "coarse=abc", "coarse needs a finite number"),
    ("query", "--weights", "coarse=0,weak_frame=0,strong_frame=0,weak_patch=0", "all rerank"),
    ("query", "--weights", "corse=1", "unknown weight 'corse'"),
    ("build-index", "--nprobe", "0", "must be >= 1"),
])
def test_flags_out_of_range_fail_up_front(tmp_path, capsys, job, flag, value, expect):
    base = {"extract": ["--input", str(tmp_path / "none.mp4"), "--output", str(tmp_path / "o"),
                        *TINY],
            "query": ["--index", str(tmp_path / "none"), "--queries", str(tmp_path / "q.tsv"),
                      "--output", str(tmp_path / "r.tsv"), *TINY],
            "build-index": ["--shards", str(tmp_path / "none"), "--output", str(tmp_path / "i")]}
    err = _argparse_error(capsys, [job, *base[job], flag, value])
    assert f"argument {flag}: " in err and expect in err


def test_misspelt_flag_is_refused(tmp_path, capsys):
    err = _argparse_error(capsys, ["extract", "--input", str(tmp_path / "none.mp4"), "--output",
                                   str(tmp_path / "o"), *TINY, "--shard-sise", "8"])
    assert "unknown flag --shard-sise" in err and "did you mean --shard-size?" in err
    assert not (tmp_path / "o").exists()


def test_beam_options_still_pass():
    import argparse

    parser = argparse.ArgumentParser(prog="eercf extract")
    check_beam_flags(parser, ["--runner", "DirectRunner", "--direct_num_workers", "2",
                              "--direct_running_mode=multi_processing", "--project", "p",
                              "--region", "r", "--temp_location", "gs://b/tmp",
                              "--dask_client_address", "host:8786", "--save_main_session"])
    with pytest.raises(SystemExit):
        check_beam_flags(parser, ["--direct_num_worker", "2"])


# ------------------------------------------------------------------ outputs checked first
def _under_a_file(tmp_path):
    (tmp_path / "plain").write_text("a regular file")
    return tmp_path / "plain" / "sub"


def test_unwritable_extract_output_fails_before_any_work(tmp_path, capsys, monkeypatch):
    def no_model(spec):
        raise AssertionError("the model was built before the output was checked")

    monkeypatch.setattr(extract, "_load_model", no_model)
    err = _main_error(capsys, ["extract", "--input", str(_videos(tmp_path)), "--output",
                               str(_under_a_file(tmp_path)), *TINY])
    assert "plain/sub: --output directory is not writable" in err


def test_unwritable_outputs_of_query_build_index_evaluate(tmp_path, capsys):
    bad = _under_a_file(tmp_path)
    err = _main_error(capsys, ["query", "--index", str(tmp_path / "no-index"), "--queries",
                               str(tmp_path / "q.tsv"), "--output", str(bad / "r.tsv"), *TINY])
    assert "r.tsv: --output (its directory) is not writable" in err
    err = _main_error(capsys, ["build-index", "--shards", str(tmp_path / "no-shards"),
                               "--output", str(bad / "index")])
    assert "--output's parent directory is not writable" in err
    err = _main_error(capsys, ["evaluate", "--ranked", str(tmp_path / "no.tsv"), "--ground-truth",
                               str(tmp_path / "no-gt.tsv"), "--output", str(bad)])
    assert "--output directory is not writable" in err


# ------------------------------------------------------------------------------- models
def test_extract_without_weights_refuses_with_how_to(tmp_path, capsys):
    err = _main_error(capsys, ["extract", "--input", str(_videos(tmp_path / "v")), "--output",
                               str(tmp_path / "out"), "--model", "eercf-tiny"])
    assert "no weights given" in err and "--pretrained openai" in err and "--random-init" in err
    assert not list((tmp_path / "out").glob("*.parquet"))
    err = _main_error(capsys, ["extract", "--input", str(tmp_path / "v"), "--output",
                               str(tmp_path / "out"), "--model", "eercf-tiny", "--random-init",
                               "--pretrained", "openai"])
    assert "--random-init conflicts with --pretrained" in err
    err = _main_error(capsys, ["extract", "--input", str(tmp_path / "v"), "--output",
                               str(tmp_path / "out"), "--model", "no-such-arch"])
    assert "unknown model name 'no-such-arch'" in err


def test_same_model_name_same_model_in_extract_and_query():
    import argparse

    def spec_of(job_parser, argv):
        job_parser.add_argument("--device", default="cpu")
        return model_spec(job_parser.parse_known_args(argv)[0])

    from eercf_core.model.spec import load_model_spec

    parsers = []
    for _ in range(2):
        p = argparse.ArgumentParser()
        add_model_flags(p, default="ViT-B-32")
        parsers.append(p)
    query_parser = argparse.ArgumentParser()
    add_model_flags(query_parser)
    argv = ["--model", "eercf-tiny", "--random-init", "--seed", "3"]
    a = load_model_spec(spec_of(parsers[0], argv))
    b = load_model_spec(spec_of(query_parser, argv))
    assert a.mode == b.mode == "eercf" and a.identity == b.identity


@pytest.mark.slow
def test_extract_then_query_by_the_same_model_name(tmp_path):
    """An index built with `--model eercf-tiny --random-init` is queried by that same name."""
    out = tmp_path / "shards"
    assert extract.run(["--input", str(_videos(tmp_path / "v", 4)), "--output", str(out), *TINY,
                        "--seed", "3", "--decode-workers", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_weights"] == {"source": "eercf-tiny", "pretrained": None,
                                        "random_init": True, "head": "eercf", "seed": 3}
    assert build_index.run(["--shards", str(out), "--output", str(tmp_path / "index")]) == 0
    (tmp_path / "q.tsv").write_text("q1\ta red flag\n")
    assert query.run(["--index", str(tmp_path / "index"), "--queries", str(tmp_path / "q.tsv"),
                      "--output", str(tmp_path / "r.tsv"), *TINY, "--seed", "3",
                      "--top-n", "0"]) == 0
    meta = json.loads((tmp_path / "r.tsv.meta.json").read_text())
    assert meta["model_weights"]["random_init"] is True
    with pytest.raises(ValueError, match=r"differ|identity|model"):
        query.run(["--index", str(tmp_path / "index"), "--queries", str(tmp_path / "q.tsv"),
                   "--output", str(tmp_path / "r2.tsv"), *TINY, "--seed", "4"])


@pytest.mark.slow
def test_the_real_command_prints_one_line(tmp_path):
    """`eercf extract` as a process: exit 2 and one stderr line (no Beam import notices)."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "extract", "--input",
                           str(tmp_path / "none.mp4"), "--output", str(tmp_path / "o"), *TINY],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    expected = f"eercf extract: error: input not found: {tmp_path / 'none.mp4'}"
    assert proc.stderr.strip().splitlines() == [expected]


def test_output_checks_leave_nothing_behind(tmp_path):
    from eercf_core.files.output_check import check_writable_dir, check_writable_file

    check_writable_dir(str(tmp_path / "a" / "b"))
    check_writable_file(str(tmp_path / "c" / "r.tsv"))
    (tmp_path / "d").mkdir()
    check_writable_dir(str(tmp_path / "d"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert not any((tmp_path / "d").iterdir())


@pytest.mark.parametrize(("run", "argv"), [
    (query.run, ["--index", "i", "--queries", "q.tsv", "--output", "o.tsv", "--model", "m"]),
    (build_index.run, ["--shards", "s", "--output", "o"]),
])
def test_beam_options_without_a_runner_are_refused_before_any_work(run, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run([*argv, "--dask_client_address=tcp://h:8786"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --dask_client_address=tcp://h:8786" in err
    assert "Beam pipeline options are taken only with --runner" in err
