"""A synthetic fine-grained video-caption benchmark, deterministic from a seed, any size.

Why it exists: without pretrained CLIP weights the method's claim (coarse recall + text-gated rerank
is nearly as accurate as fine scoring everything, and clearly better than coarse alone) must be
shown
on data where fine-grained evidence matters and a tiny model can learn it from scratch.

Design (see README "synthetic-train-demo"):
- A video is a *scene* (a background tone + texture pattern, present in every frame) plus E brief
  *events*: an object (a colour and a shape, drawn over the scene; by default 48 px of the 64 px
  frame, `object_cells=1` makes it one 16 px patch) visible for one or two seconds, i.e. in one or
  two of the T frames that 1 fps sampling keeps. Content is held constant within each second, so
  any 1 fps sampling offset sees the same images.
- A caption names the scene and ONE event: "a red circle flashes on a striped olive background".
- Videos come in *sibling groups* of E videos that share the scene and whose events form a Latin
  square over E colours x E shapes: sibling j shows (colour_i, shape_{(i+j) mod E}) for every i. All
  siblings therefore contain exactly the same bag of colours and shapes; they differ only in which
  colour is bound to which shape within a single brief event. A text-agnostic average over frames
  (the coarse vector) sees the same bag for every sibling and can at best guess among them, while a
  text-gated max over frames/patches (S_Fw, S_Pw, the TIB) finds the one frame where the caption's
  colour and shape occur together. The scene words narrow recall to the right group, so the coarse
  top-k keeps the right video and two-stage ranking approaches exhaustive fine scoring.
- Test queries are unique: every test video gets one query caption whose (scene, colour, shape)
  triple appears in no other test video, so each query has exactly one relevant video.
- Train videos also get event-only captions (see SHORT_TEMPLATES) so a from-scratch model learns
  the events, not only the scenes.

Files written by `generate_corpus(out_dir, config)`:
  videos/<split>/<video_id>.mp4     real encoded videos (H.264 via `video_writer.write_video`)
  <split>_manifest.tsv              video_id<TAB>uri (header), for `eercf extract --input`
  captions.jsonl                    {"caption_id","video_id","split","text","event"} one per event
  test_queries.tsv                  query_id<TAB>text   (one per test video)
  test_ground_truth.tsv             query_id<TAB>video_id
  videos.jsonl                      per-video facts: scene, events (colour, shape, cell, seconds)
  corpus.json                       the config and vocabulary (written last: marks completion)
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from eercf_core.config import NUM_FRAMES
from eercf_core.files.atomic import local_temp_path, write_text
from eercf_core.files.inputs import write_manifest
from eercf_core.files.text_formats import FormatError, read_jsonl, write_ground_truth, write_queries
from eercf_core.progress import Progress

log = logging.getLogger(__name__)

# Scene vocabulary: muted background tones (RGB) x texture patterns.
TONES: dict[str, tuple[int, int, int]] = {
    "gray": (105, 105, 105),
    "brown": (105, 72, 45),
    "olive": (90, 96, 38),
    "navy": (32, 40, 92),
    "maroon": (88, 28, 40),
    "teal": (28, 84, 84),
}
PATTERNS = ("plain", "striped", "dotted", "checkered")
# Event vocabulary: bright saturated colours x small shapes (drawn inside one 16x16 cell).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 30, 30),
    "yellow": (245, 225, 30),
    "green": (40, 215, 60),
    "blue": (40, 100, 255),
    "white": (250, 250, 250),
    "purple": (175, 50, 230),
    "orange": (255, 140, 20),
    "pink": (255, 120, 195),
}
SHAPES = ("square", "circle", "triangle", "cross", "diamond", "ring")
TEMPLATES = (
    "a {event} flashes on a {pattern} {tone} background",
    "a {pattern} {tone} background where a {event} appears briefly",
    "briefly a {event} over a {pattern} {tone} background",
)
# Event-only captions (training split only): every other video with a different event is a
# negative for them, which is what teaches a from-scratch model the small vocabulary of events
# quickly; full captions alone are mostly separated by the scene words.
SHORT_TEMPLATES = (
    "a {event} flashes",
    "briefly a {event} appears",
)
CELL = 16  # event cell size in pixels (= the tiny models' patch size)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Sizes are numbers of videos; times are seconds."""

    num_train: int = 1200
    num_test: int = 300
    seed: int = 0
    events_per_video: int = 2  # E; also the sibling-group size (Latin square E x E)
    seconds: int = NUM_FRAMES  # video length: T frames at 1 fps; 1 fps sampling keeps every second
    fps: float = 2.0  # frames written per second (content constant within a second)
    image_size: int = 64  # frame width and height, a multiple of CELL
    max_event_seconds: int = 2  # an event lasts 1..max_event_seconds seconds
    templates: int = len(TEMPLATES)  # how many caption templates to draw from
    short_captions: bool = True  # also an event-only caption per train event (not for queries)
    object_cells: int = 4  # event object box in 16x16 cells: 4 = the frame (a 48 px object);
    # 1 = one patch (a small object; not learnt from scratch in the demo's budget, see README)
    object_size: int | None = None  # shape size in px (default 12 * object_cells), <= its box
    binding: str = "pair"  # what siblings differ in: "pair" = which two colours share one frame
    # (a two-colour flag; E = 2, groups of 3); "shape" = which shape a colour has (E x E Latin
    # square)
    suffix: str = ".mp4"

    def validate(self) -> None:
        e = self.events_per_video
        if self.binding not in ("pair", "shape"):
            raise ValueError(f"binding must be 'pair' or 'shape', got {self.binding!r}")
        if self.binding == "pair" and e != 2:
            raise ValueError(f"binding='pair' needs events_per_video=2, got {e}")
        if not 1 <= e <= min(len(COLOURS), len(SHAPES)):
            raise ValueError(f"events_per_video must be in 1..{min(len(COLOURS), len(SHAPES))}, "
                             f"got {e}")
        if self.image_size % CELL or self.image_size < 2 * CELL:
            raise ValueError(f"image_size must be a multiple of {CELL} and >= {2 * CELL}, got "
                             f"{self.image_size}")
        if e * self.max_event_seconds > self.seconds:
            raise ValueError(f"{e} events of up to {self.max_event_seconds}s do not fit in "
                             f"{self.seconds}s")
        if self.object_cells < 1 or self.image_size % (CELL * self.object_cells):
            raise ValueError(f"object_cells={self.object_cells} does not tile "
                             f"image_size={self.image_size}")
        if self.object_size is not None and not 4 <= self.object_size <= CELL * self.object_cells:
            raise ValueError(f"object_size must be in 4..{CELL * self.object_cells} px, got "
                             f"{self.object_size}")
        if not 1 <= self.templates <= len(TEMPLATES):
            raise ValueError(f"templates must be in 1..{len(TEMPLATES)}, got {self.templates}")
        if self.num_train < 0 or self.num_test < 0 or self.fps <= 0:
            raise ValueError(f"bad sizes or fps in {self}")


@dataclass(frozen=True)
class Event:
    colour: str
    shape: str
    cell: tuple[int, int]  # (row, col) of the object's cell (CELL * object_cells pixels square)
    start: int  # first second shown
    duration: int  # seconds shown
    colour2: str | None = None  # binding="pair": the flag's second colour (shape is "flag")

    def words(self) -> str:
        """The event as caption words: "red circle" or "red and blue flag"."""
        if self.colour2 is None:
            return f"{self.colour} {self.shape}"
        return f"{self.colour} and {self.colour2} {self.shape}"


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video and caption it (pure data, JSON-able)."""

    video_id: str
    split: str
    group: int
    tone: str
    pattern: str
    pattern_phase: int  # texture offset in pixels (varies between siblings)
    tone_jitter: tuple[int, ...]  # RGB offset, 3 values
    events: tuple[Event, ...]
    query_event: int  # index into events of the test query (test split), else -1
    render_seed: int

    def caption(self, event_index: int, template_index: int) -> str:
        return TEMPLATES[template_index].format(
            event=self.events[event_index].words(), pattern=self.pattern, tone=self.tone)


def _shape_mask(shape: str, size: int = 12) -> np.ndarray:
    """bool [size,size] mask of a small shape centred in its box."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    dy, dx = yy - c, xx - c
    r = np.hypot(dy, dx)
    if shape == "square":
        return (np.abs(dy) <= c - 1) & (np.abs(dx) <= c - 1)
    if shape == "circle":
        return r <= c - 0.5
    if shape == "triangle":
        return (yy >= 1) & (yy <= size - 1) & (np.abs(dx) <= (yy - 1) / (size - 2) * c)
    if shape == "cross":
        return (np.abs(dy) <= 1.6 * size / 12) | (np.abs(dx) <= 1.6 * size / 12)
    if shape == "diamond":
        return np.abs(dy) + np.abs(dx) <= c - 0.5
    if shape == "ring":
        return (r <= c - 0.5) & (r >= c - 3.2 * size / 12)
    raise ValueError(f"unknown shape {shape!r}")


def _background(spec: VideoSpec, size: int) -> np.ndarray:
    """uint8 [size,size,3] scene image: the tone, textured by the pattern."""
    tone = np.clip(np.array(TONES[spec.tone]) + np.array(spec.tone_jitter), 0, 255)
    tone = tone.astype(np.float32)
    light = np.clip(tone + 45, 0, 255)
    yy, xx = np.mgrid[0:size, 0:size]
    yy, xx = yy + spec.pattern_phase, xx + spec.pattern_phase
    if spec.pattern == "plain":
        mark = np.zeros((size, size), bool)
    elif spec.pattern == "striped":
        mark = (yy // 4) % 2 == 0
    elif spec.pattern == "dotted":
        mark = ((yy % 8) < 2) & ((xx % 8) < 2)
    elif spec.pattern == "checkered":
        mark = ((yy // 8) + (xx // 8)) % 2 == 0
    else:
        raise ValueError(f"unknown pattern {spec.pattern!r}")
    image = np.where(mark[..., None], light, tone)
    return image.astype(np.uint8)


def render_frames(spec: VideoSpec, config: SynthConfig) -> np.ndarray:
    """The video's frames, uint8 [seconds*fps, S, S, 3]; frame i shows second floor(i / fps)."""
    size = config.image_size
    rng = np.random.default_rng(spec.render_seed)
    background = _background(spec, size)
    per_second = np.repeat(background[None], config.seconds, axis=0)
    cell = CELL * config.object_cells
    for event in spec.events:
        size = config.object_size or 12 * config.object_cells
        if event.colour2 is None:
            mask, paint = _shape_mask(event.shape, size=size), np.array(COLOURS[event.colour])
        else:  # a flag: two equal stripes, horizontal or vertical, colours in either order
            mask = np.ones((size, size), bool)
            paint = np.empty((size, size, 3), np.int64)
            half = np.arange(size) < size // 2
            first = half[:, None] if rng.integers(2) else half[None, :]
            a, b = (event.colour, event.colour2)[::1 if rng.integers(2) else -1]
            paint[:] = np.where(first[..., None], COLOURS[a], COLOURS[b])
        oy, ox = rng.integers(0, cell - mask.shape[0] + 1, size=2)  # jitter inside the cell
        y0, x0 = event.cell[0] * cell + oy, event.cell[1] * cell + ox
        for second in range(event.start, event.start + event.duration):
            region = per_second[second, y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
            region[mask] = paint if paint.ndim == 1 else paint[mask]
    # sensor noise, so no two videos are pixel-identical
    noise = rng.integers(-4, 5, size=per_second.shape)
    per_second = np.clip(per_second.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    n_frames = round(config.seconds * config.fps)
    seconds_of_frame = np.minimum((np.arange(n_frames) / config.fps).astype(int),
                                  config.seconds - 1)
    return per_second[seconds_of_frame]


def sample_frames_1fps(spec: VideoSpec, config: SynthConfig, num_frames: int = NUM_FRAMES
                      ) -> tuple[np.ndarray, np.ndarray]:
    """What method §2.1 sampling keeps (1 fps, then linspace to T; mask padded slots), rendered in
    memory without encoding: uint8 [T,S,S,3] and bool [T]. Used by quick experiments and tests."""
    per_second = render_frames(spec, dataclasses.replace(config, fps=1.0))
    n = per_second.shape[0]
    frames = np.zeros((num_frames,) + per_second.shape[1:], np.uint8)
    mask = np.zeros(num_frames, bool)
    if n <= num_frames:
        frames[:n], mask[:n] = per_second, True
    else:
        frames[:], mask[:] = per_second[np.linspace(0, n - 1, num_frames, dtype=int)], True
    return frames, mask


# binding="pair": the 3 ways to split 4 colours into 2 pairs; sibling j shows matching j.
PAIR_MATCHINGS = (((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2)))


def _sample_events(rng: np.random.Generator, colours: list[str], shapes: list[str], sibling: int,
                   config: SynthConfig) -> tuple[Event, ...]:
    e = config.events_per_video
    grid = config.image_size // (CELL * config.object_cells)
    durations = rng.integers(1, config.max_event_seconds + 1, size=e)
    # non-overlapping time slots: random gaps distributed around the events
    slack = config.seconds - int(durations.sum())
    gaps = rng.multinomial(slack, np.ones(e + 1) / (e + 1))
    order = rng.permutation(e)
    starts, t = np.zeros(e, int), 0
    for k, i in enumerate(order):
        t += gaps[k]
        starts[i] = t
        t += durations[i]
    cells = rng.choice(grid * grid, size=e, replace=grid * grid < e)
    where = [((int(cells[i] // grid), int(cells[i] % grid)), int(starts[i]), int(durations[i]))
             for i in range(e)]
    if config.binding == "pair":
        pairs = [tuple(colours[k] for k in rng.permutation(pair))
                 for pair in PAIR_MATCHINGS[sibling]]
        return tuple(Event(a, "flag", *where[i], colour2=b) for i, (a, b) in enumerate(pairs))
    return tuple(Event(colours[i], shapes[(i + sibling) % e], *where[i]) for i in range(e))


def group_size(config: SynthConfig) -> int:
    """Videos per sibling group: 3 pair matchings, or E for the E x E Latin square."""
    return len(PAIR_MATCHINGS) if config.binding == "pair" else config.events_per_video


def _event_key(event: Event) -> tuple[str, ...]:
    """What a caption names of an event, order-free: (colour, shape) or the sorted colour pair."""
    if event.colour2 is None:
        return (event.colour, event.shape)
    return tuple(sorted((event.colour, event.colour2)))


def plan_corpus(config: SynthConfig) -> list[VideoSpec]:
    """All video specs of both splits, deterministic from `config.seed` (no rendering).

    Raises ValueError when the test split is too large for unique queries with this vocabulary.
    """
    config.validate()
    rng = np.random.default_rng(config.seed)
    e = config.events_per_video
    specs: list[VideoSpec] = []
    group = 0
    for split, count in (("train", config.num_train), ("test", config.num_test)):
        present: set[tuple[str, ...]] = set()  # (tone, pattern, colour, shape) in split
        queried: set[tuple[str, ...]] = set()
        made = 0
        while made < count:
            for _attempt in range(1000):
                tone = str(rng.choice(list(TONES)))
                pattern = str(rng.choice(PATTERNS))
                n_colours = 4 if config.binding == "pair" else e
                colours = [str(c) for c in rng.choice(list(COLOURS), size=n_colours, replace=False)]
                shapes = [str(s) for s in rng.choice(SHAPES, size=e, replace=False)]
                siblings = [_sample_events(rng, colours, shapes, j, config)
                            for j in range(group_size(config))]
                triples = [[(tone, pattern, *_event_key(ev)) for ev in evs] for evs in siblings]
                if split == "train":
                    queries = [-1] * len(siblings)
                    break
                if any(t in queried for ts in triples for t in ts):
                    continue
                fresh = [[i for i, t in enumerate(ts) if t not in present] for ts in triples]
                if all(fresh):
                    queries = [int(rng.choice(f)) for f in fresh]
                    break
            else:
                raise ValueError(
                    f"cannot make {count} {split} videos with unique queries from this vocabulary "
                    f"(made {made}); lower num_test or events_per_video")
            for j in range(min(len(siblings), count - made)):
                specs.append(VideoSpec(
                    video_id=f"{split}_{made:06d}", split=split, group=group, tone=tone,
                    pattern=pattern, pattern_phase=int(rng.integers(0, 8)),
                    tone_jitter=tuple(int(x) for x in rng.integers(-10, 11, size=3)),
                    events=siblings[j], query_event=queries[j],
                    render_seed=int(rng.integers(0, 2**31 - 1))))
                present.update(triples[j])
                if queries[j] >= 0:
                    queried.add(triples[j][queries[j]])
                made += 1
            group += 1
    return specs


def captions_for(spec: VideoSpec, config: SynthConfig) -> list[dict]:
    """One caption per event of the video (template chosen from the render seed), JSON-able; train
    videos also get one event-only caption per event when `config.short_captions`."""
    rng = np.random.default_rng(spec.render_seed + 1)
    out = []
    for i, event in enumerate(spec.events):
        template = int(rng.integers(0, config.templates))
        out.append({"caption_id": f"{spec.video_id}#{i}", "video_id": spec.video_id,
                    "split": spec.split, "text": spec.caption(i, template),
                    "event": dataclasses.asdict(event)})
    if config.short_captions and spec.split == "train":
        for i, event in enumerate(spec.events):
            short = SHORT_TEMPLATES[int(rng.integers(0, len(SHORT_TEMPLATES)))]
            out.append({"caption_id": f"{spec.video_id}#short{i}", "video_id": spec.video_id,
                        "split": spec.split, "text": short.format(event=event.words()),
                        "event": dataclasses.asdict(event)})
    return out


def _write_one(args: tuple[VideoSpec, SynthConfig, str]) -> str:
    spec, config, path = args
    final = Path(path)
    if final.exists():  # deterministic content: a finished file from an earlier run is kept
        return path
    from eercf_core.video.writer import write_video

    with local_temp_path(final) as temp:
        write_video(temp, render_frames(spec, config), fps=config.fps)
    return path


def generate_corpus(out_dir: str | Path, config: SynthConfig, workers: int = 1,
                    uri_root: str | None = None) -> dict:
    """Render and encode every video, write captions, manifests, queries and ground truth.

    Rerunning into the same directory keeps finished videos (content is deterministic). Returns a
    summary dict with counts and paths. `corpus.json` is written last and marks completion.
    `uri_root`: where the folder will be read from (a URL it is uploaded to), for the manifests'
    video URIs; default the absolute local paths.
    """
    out = Path(out_dir)
    specs = plan_corpus(config)
    for split in SPLITS:
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
    paths = [str((out / "videos" / s.split / f"{s.video_id}{config.suffix}").resolve())
             for s in specs]
    jobs = [(s, config, p) for s, p in zip(specs, paths)]
    uris = paths if uri_root is None else [
        f"{uri_root.rstrip('/')}/videos/{s.split}/{s.video_id}{config.suffix}" for s in specs]
    start = time.perf_counter()
    progress = Progress("synth", len(jobs), "videos", show_failed=False, logger=log)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for _ in pool.map(_write_one, jobs, chunksize=16):
                progress.add()
    else:
        for job in jobs:
            _write_one(job)
            progress.add()

    captions = [c for s in specs for c in captions_for(s, config)]
    for split in SPLITS:
        write_manifest(str(out / f"{split}_manifest.tsv"),
                       [(s.video_id, u) for s, u in zip(specs, uris) if s.split == split])
    write_text(out / "captions.jsonl", "".join(json.dumps(c) + "\n" for c in captions))
    write_text(out / "videos.jsonl",
               "".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in specs))
    test = [s for s in specs if s.split == "test"]
    by_id = {c["caption_id"]: c for c in captions}
    queries = [(f"q{i:06d}", by_id[f"{s.video_id}#{s.query_event}"]["text"], s.video_id)
               for i, s in enumerate(test)]
    write_queries(str(out / "test_queries.tsv"), [(q, t) for q, t, _ in queries])
    write_ground_truth(str(out / "test_ground_truth.tsv"), [(q, v) for q, _, v in queries])
    summary = {"config": dataclasses.asdict(config), "num_videos": len(specs),
               "num_train": config.num_train, "num_test": config.num_test,
               "num_captions": len(captions), "num_queries": len(queries),
               "vocabulary": {"tones": list(TONES), "patterns": list(PATTERNS),
                              "colours": list(COLOURS), "shapes": list(SHAPES)},
               "templates": list(TEMPLATES[:config.templates])}
    write_text(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    log.info("synth: wrote %d videos, %d captions, %d test queries to %s in %.1f s", len(specs),
             len(captions), len(queries), out, time.perf_counter() - start)
    return summary


def load_specs(corpus_dir: str | Path) -> list[VideoSpec]:
    """Read `videos.jsonl` back into specs (for experiments and tests)."""
    specs = []
    path = str(Path(corpus_dir) / "videos.jsonl")
    for line_no, raw in read_jsonl(path):
        try:
            raw["events"] = tuple(Event(**{**ev, "cell": tuple(ev["cell"])})
                                  for ev in raw["events"])
            raw["tone_jitter"] = tuple(raw["tone_jitter"])
            specs.append(VideoSpec(**raw))
        except (ValueError, TypeError, KeyError) as exc:
            raise FormatError(path, line_no, f"bad video spec: {exc}") from exc
    return specs
