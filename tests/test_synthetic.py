"""The synthetic benchmark: determinism, the sibling designs, unique queries, real video files."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from eercf_core.datasets import synthetic as syn
from eercf_core.video.decode import DecodeOptions, decode_video


def _triple(spec, event):
    return (spec.tone, spec.pattern, *syn._event_key(event))


def test_plan_is_deterministic_from_the_seed():
    config = syn.SynthConfig(num_train=20, num_test=10, seed=5)
    assert syn.plan_corpus(config) == syn.plan_corpus(config)
    other = syn.SynthConfig(num_train=20, num_test=10, seed=6)
    assert syn.plan_corpus(config) != syn.plan_corpus(other)


@pytest.mark.parametrize(("binding", "events", "size"),
                         [("pair", 2, 3), ("shape", 2, 2), ("shape", 3, 3)])
def test_sibling_groups_share_the_bag_but_not_the_bindings(binding, events, size):
    config = syn.SynthConfig(num_train=60, num_test=30, events_per_video=events, seed=1,
                             binding=binding)
    assert syn.group_size(config) == size
    groups = defaultdict(list)
    for spec in syn.plan_corpus(config):
        groups[spec.group].append(spec)
    full = [g for g in groups.values() if len(g) == size]
    assert len(full) >= (90 // size) - 2
    for siblings in full:
        assert len({(s.tone, s.pattern) for s in siblings}) == 1  # same scene
        bags = {(tuple(sorted(c for e in s.events for c in (e.colour, e.colour2) if c)),
                 tuple(sorted(e.shape for e in s.events))) for s in siblings}
        assert len(bags) == 1  # same colours and shapes: a bag-of-attributes cannot tell them apart
        bindings = [syn._event_key(e) for s in siblings for e in s.events]
        assert len(bindings) == len(set(bindings))  # every binding belongs to one sibling
        assert all(len(set(b)) == len(b) for b in bindings)
        for s in siblings:
            seconds = [t for e in s.events for t in range(e.start, e.start + e.duration)]
            assert len(seconds) == len(set(seconds)) and max(seconds) < config.seconds
            assert all(1 <= e.duration <= config.max_event_seconds for e in s.events)


def test_each_test_query_has_exactly_one_relevant_video():
    config = syn.SynthConfig(num_train=10, num_test=200, seed=2)
    test = [s for s in syn.plan_corpus(config) if s.split == "test"]
    present = Counter(t for s in test for t in {_triple(s, e) for e in s.events})
    for spec in test:
        assert present[_triple(spec, spec.events[spec.query_event])] == 1


def test_too_many_unique_queries_is_a_clear_error():
    with pytest.raises(ValueError, match="unique queries"):
        syn.plan_corpus(syn.SynthConfig(num_train=0, num_test=5000))


@pytest.mark.parametrize("object_cells", [1, 2, 4])
def test_event_is_visible_only_in_its_frames(object_cells):
    config = syn.SynthConfig(num_train=4, num_test=0, seed=3, object_cells=object_cells)
    spec = syn.plan_corpus(config)[0]
    frames, mask = syn.sample_frames_1fps(spec, config)
    assert frames.shape == (12, 64, 64, 3) and mask.all()
    size = syn.CELL * config.object_cells
    for event in spec.events:
        colour = np.array(syn.COLOURS[event.colour])
        y, x = event.cell[0] * size, event.cell[1] * size
        for t in range(12):
            cell = frames[t, y:y + size, x:x + size].astype(int)
            hits = (np.abs(cell - colour).max(-1) <= 12).sum()
            shown = event.start <= t < event.start + event.duration
            assert (hits >= 15) == shown, (event, t, hits)


def test_captions_name_the_scene_and_one_event():
    config = syn.SynthConfig(num_train=2, num_test=2, seed=4)
    train, test = syn.plan_corpus(config)[0], syn.plan_corpus(config)[-1]
    captions = syn.captions_for(test, config)
    assert len(captions) == len(test.events)  # test videos: full captions only (queries)
    for caption, event in zip(captions, test.events):
        words = caption["text"].split()
        assert {event.colour, event.colour2, event.shape, test.tone, test.pattern} <= set(words)
        assert caption["video_id"] == test.video_id
    # train videos also get an event-only caption per event
    captions = syn.captions_for(train, config)
    assert len(captions) == 2 * len(train.events)
    for caption, event in zip(captions[len(train.events):], train.events):
        words = set(caption["text"].split())
        assert {event.colour, event.colour2, event.shape} <= words
        assert not {train.tone, train.pattern} & words
    no_short = syn.SynthConfig(num_train=2, num_test=2, seed=4, short_captions=False)
    assert len(syn.captions_for(train, no_short)) == len(train.events)


def test_generate_corpus_writes_decodable_videos_and_contract_files(tmp_path):
    config = syn.SynthConfig(num_train=4, num_test=4, seed=7)
    summary = syn.generate_corpus(tmp_path, config, workers=1)
    assert summary["num_videos"] == 8 and summary["num_queries"] == 4
    manifest = (tmp_path / "test_manifest.tsv").read_text().splitlines()
    assert manifest[0] == "video_id\turi" and len(manifest) == 5
    queries = [line.split("\t")
               for line in (tmp_path / "test_queries.tsv").read_text().splitlines()[1:]]
    truth_lines = (tmp_path / "test_ground_truth.tsv").read_text().splitlines()[1:]
    truth = dict(line.split("\t") for line in truth_lines)
    assert [q for q, _ in queries] == sorted(truth) and len(set(truth.values())) == 4
    captions = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert len(captions) == (2 * 4 + 4) * config.events_per_video  # train: full + event-only
    specs = {s.video_id: s for s in syn.load_specs(tmp_path)}
    # the real file, decoded with the extraction sampling, shows each event in its second
    video_id, uri = manifest[1].split("\t")
    decoded = decode_video(uri, DecodeOptions(num_frames=12, image_size=64))
    assert decoded.frames.shape == (12, 64, 64, 3) and decoded.mask.all()
    expected, _ = syn.sample_frames_1fps(specs[video_id], config)
    assert np.abs(decoded.frames.astype(int) - expected.astype(int)).mean() < 6  # codec error only
    # a rerun keeps finished videos
    path = tmp_path / "videos" / "test" / f"{video_id}.mp4"
    before = path.stat().st_mtime_ns
    syn.generate_corpus(tmp_path, config, workers=1)
    assert path.stat().st_mtime_ns == before
    assert not list(tmp_path.rglob(".*tmp*"))
