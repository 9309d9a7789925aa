"""Inputs read inside the pipeline: the launcher streams a manifest (bad lines and repeated ids
refused with file:line before anything runs) and writes a plan; the graph holds only the plan's
URLs, so its size does not grow with the number of inputs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from eercf_core.files.inputs import VideoRef, check_manifest, iter_manifest
from pipelines.beam.read_inputs import MAX_PARTS, ReadPlan, write_plan
from pipelines.beam.resume import plan_chunks

ROOT = Path(__file__).resolve().parents[1]


def _refs(n: int) -> list[VideoRef]:
    return [VideoRef(f"v{i:07d}", f"/corpus/v{i:07d}.mp4") for i in range(n)]


def test_the_plan_is_read_back_as_the_same_chunks_inside_the_pipeline(tmp_path):
    refs = _refs(23)
    plan = write_plan(str(tmp_path), iter(refs), 5)
    assert (plan.videos, plan.chunks, plan.parts) == (23, 5, 5)
    expected = [(name, chunk) for name, chunk in plan_chunks(refs, 5)]  # the old in-memory plan
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        chunks = pipeline | "ReadInputs" >> ReadPlan(plan)
        assert_that(chunks, equal_to(expected))
    plan.remove()
    assert not list(tmp_path.iterdir())


def _graph_bytes(plan) -> int:
    pipeline = beam.Pipeline(runner=FnApiRunner())
    _ = pipeline | "ReadInputs" >> ReadPlan(plan) | "Names" >> beam.Map(lambda chunk: chunk[0])
    size = len(pipeline.to_runner_api().SerializeToString())
    shutil.rmtree(pipeline.local_tempdir)  # a pipeline that never runs keeps its temp dir
    return size


def test_the_graph_does_not_grow_with_the_inputs(tmp_path):
    small = write_plan(str(tmp_path / "a"), iter(_refs(2 * MAX_PARTS)), 1)
    large = write_plan(str(tmp_path / "b"), iter(_refs(20 * MAX_PARTS)), 1)
    assert small.parts == large.parts == MAX_PARTS
    # 10x the inputs, the same graph (to a few bytes: the plans' random names pickle and
    # compress differently); a Create of the inputs grew by ~142 B per video
    assert abs(_graph_bytes(small) - _graph_bytes(large)) < 64


def test_manifest_lines_and_duplicates_are_refused_with_file_and_line(tmp_path):
    good = tmp_path / "m.tsv"
    good.write_text("video_id\turi\na\ta.mp4\nb\t/x/b.mp4\n")
    assert check_manifest(str(good)) == 2
    assert [(line, ref.video_id) for line, ref in iter_manifest(str(good))] == [(2, "a"), (3, "b")]
    dup = tmp_path / "dup.csv"
    dup.write_text("video_id,uri\na,1.mp4\nb,2.mp4\na,3.mp4\n")
    with pytest.raises(ValueError, match=r"dup.csv:4: duplicate video_id 'a' \(first on line 2\)"):
        check_manifest(str(dup))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video_id": "a", "uri": "1.mp4"}\n{"video_id": "", "uri": "2.mp4"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: needs non-empty"):
        check_manifest(str(bad))
    empty = tmp_path / "empty.tsv"
    empty.write_text("video_id\turi\n")
    with pytest.raises(ValueError, match="no videos found in the manifest"):
        check_manifest(str(empty))


def test_extract_dry_run_plans_and_builds_the_graph_but_runs_nothing(tmp_path, capsys,
                                                                     monkeypatch):
    import tempfile

    from eercf_core.files.inputs import write_manifest
    from pipelines.commands import extract

    temp = tmp_path / "temp"  # where Beam makes each pipeline's local temp dir
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    manifest = tmp_path / "m.tsv"
    write_manifest(str(manifest), [(f"v{i}", f"/nowhere/v{i}.mp4") for i in range(5)])
    out = tmp_path / "out"
    assert extract.run(["--input", str(manifest), "--output", str(out), "--model", "eercf-tiny",
                        "--random-init", "--device", "cpu", "--shard-size", "2",
                        "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "5 of 5 videos to do in 3 shards; pipeline graph" in printed
    assert "nothing was run" in printed
    left = {p.name for p in out.iterdir()} - {".eercf.lock"}  # (the lock file may stay)
    assert left == {"model_identity.json"}  # no shard, no plan
    assert not [p.name for p in temp.iterdir() if p.name.startswith("beam-pipeline-temp")]


def test_id_digests_answer_membership_and_count_repeats():
    from eercf_core.files.id_digests import IdDigests, batches, digest

    ids = IdDigests.of([f"v{i}" for i in range(1000)] + ["v3", "v3", "v7"])
    assert (len(ids), ids.total, ids.repeated()) == (1000, 1003, 2)
    assert ids.counts(["v3", "v7", "v8", "nope"]).tolist() == [3, 2, 1, 0]
    assert ids.contains(["v999", "v1000"]).tolist() == [True, False]
    assert sorted(ids.repeated_digests()) == sorted([digest("v3"), digest("v7")])
    # digests ending in zero bytes (numpy's S16 hands them out shortened) still match
    zeros = [s for s in (f"x{i}" for i in range(5000)) if digest(s).endswith(b"\0")]
    assert zeros and IdDigests.of(zeros * 2).repeated_digests() == sorted(
        digest(s) for s in zeros)
    other = IdDigests.of(["v1", "v2", "zz"])
    assert ids.counts_of(other.unique).tolist() == [1, 1, 0]
    assert IdDigests.of([]).contains(["a"]).tolist() == [False]
    assert [len(b) for b in batches(range(5), 2)] == [2, 2, 1]


def test_globs_and_directories_are_streamed_in_sorted_order(tmp_path):
    import fsspec

    from eercf_core.files.inputs import ListedInputs, _glob_files, _walk_files, read_inputs

    root = tmp_path / "c"
    for name in ("a.mp4", "c.mp4", "c/x.mp4", "c-d.mp4", "c/y/z.mp4", "d.mp4", "b/q.mp4",
                 "b/q.txt", "c/y/w.mkv"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    fs = fsspec.filesystem("file")
    for pattern in ("*.mp4", "*/*.mp4", "**/*.mp4", "c/**", "[bc]*/*"):
        full = f"{root}/{pattern}"
        expected = sorted(p for p in fs.glob(full) if not fs.isdir(p))
        assert list(_glob_files(fs, full)) == expected, pattern
    assert list(_walk_files(fs, str(root), None)) == sorted(fs.find(str(root)))
    listed = ListedInputs([f"{root}/*.mp4", str(root / "b")])
    try:
        assert list(listed) == read_inputs([f"{root}/*.mp4", str(root / "b")])
        assert [ref.video_id for ref in listed] == ["a.mp4", "c-d.mp4", "c.mp4", "d.mp4",
                                                   "b/q.mp4"]
        assert listed.count == listed.ids.total == 5
    finally:
        listed.close()
    assert not Path(listed.path).exists()
    with pytest.raises(ValueError, match=r"1 duplicate video_id\(s\) in the inputs \('b/q.mp4'"):
        ListedInputs([str(root), str(root / "b" / "q.mp4")])


def test_building_the_extract_graph_imports_no_torch(tmp_path):
    code = f"""
import shutil
import sys
import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from eercf_core.files.inputs import VideoRef
from eercf_core.model.identity_cache import ModelFacts
from eercf_core.model.spec import ModelSpec
from eercf_core.video.decode import DecodeOptions
from pipelines.beam.extract_pipeline import build_pipeline
from pipelines.beam.read_inputs import ReadPlan, write_plan
from pipelines.commands.extract import build_parser
from schemas import FeatureDims

args = build_parser().parse_args(["--input", "x", "--output", {str(tmp_path)!r}])
plan = write_plan(args.output, [VideoRef("a", "/a.mp4")], 1)
facts = ModelFacts("m", "0" * 64, FeatureDims(4, 4, 8), 4, 32)
pipeline = beam.Pipeline(runner=FnApiRunner())
build_pipeline(pipeline, ReadPlan(plan), DecodeOptions(num_frames=4, image_size=32),
               ModelSpec("eercf-tiny", random_init=True), args, facts.dims, facts, 1)
assert len(pipeline.to_runner_api().SerializeToString()) > 0
shutil.rmtree(pipeline.local_tempdir)
plan.remove()
print(sorted(m for m in ("torch", "open_clip") if m in sys.modules))
"""
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"
