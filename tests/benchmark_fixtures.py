"""Small annotation files in each benchmark's exact distributed format, and a videos folder of
symlinks to the shared captioned clips under the names each dataset expects.

Every dataset gets a few ids, at least one annotated video without a file, and Unicode captions.
`EXPECTED[dataset][split]` = (annotated videos, videos found, queries written).
"""
from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

# Short clips from ../shared/videos/captioned.
CLIPS = ["msrvtt__video9770.mp4", "msrvtt__video9771.mp4", "mmaction2__demo.mp4",
         "languagebind__0.mp4", "languagebind__1.mp4", "internvid__example1.mp4"]

EXPECTED = {
    "msrvtt": {"train_9k": (3, 2, 5), "test_1k": (3, 2, 2)},
    "msvd": {"train": (1, 1, 2), "test": (4, 3, 7)},
    "vatex": {"train": (1, 1, 2), "val": (4, 3, 12)},
    "activitynet": {"train": (1, 1, 1), "val_1": (3, 2, 2)},
}
EVAL_SPLIT = {"msrvtt": "test_1k", "msvd": "test", "vatex": "val", "activitynet": "val_1"}


def _link(videos: Path, shared: Path, pairs: dict[str, str]) -> None:
    videos.mkdir(parents=True, exist_ok=True)
    for name, clip in pairs.items():
        (videos / name).symlink_to(shared / "captioned" / clip)


def write_msrvtt(ann: Path, videos: Path, shared: Path) -> None:
    ann.mkdir(parents=True, exist_ok=True)
    sentences = [("video1", "a man plays a guitar"), ("video1", "un homme joue de la guitare — ♪"),
                 ("video1", "someone\tstrums  chords\n"), ("video2", "a parakeet climbs a ladder"),
                 ("video2", "鹦鹉爬梯子"), ("video3", "this video has no file"),
                 ("video9770", "a person is connecting something to system")]
    (ann / "MSRVTT_data.json").write_text(json.dumps({
        "info": {"year": 2016}, "videos": [{"video_id": v, "split": "train"} for v in
                                           ("video1", "video2", "video3")],
        "sentences": [{"caption": c, "video_id": v, "sen_id": i}
                      for i, (v, c) in enumerate(sentences)]}, ensure_ascii=False),
        encoding="utf-8")
    (ann / "MSRVTT_train.9k.csv").write_text("video_id\nvideo1\nvideo2\nvideo3\n")
    with (ann / "MSRVTT_JSFUSION_test.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["key", "vid_key", "video_id", "sentence"])
        writer.writerow(["ret0", "msr9770", "video9770",
                         "a person is connecting something to system"])
        writer.writerow(["ret1", "msr9771", "video9771",
                         "a little girl does gymnastics, très bien"])
        writer.writerow(["ret2", "msr7", "video7", "a clip nobody downloaded"])
    _link(videos, shared, {"video9770.mp4": CLIPS[0], "video9771.mp4": CLIPS[1],
                           "video1.mp4": CLIPS[2], "video2.mp4": CLIPS[3]})


MSVD_CAPTIONS = {
    "-4wsuPCjDBc_5_15": [["a", "man", "arm", "wrestles"], ["two", "men", "wrestle"]],
    "abc_1_2": [["a", "bird", "climbs"], ["un", "oiseau", "grimpe", "à", "l'échelle"],
                ["a", "parakeet", "on", "a", "ladder"]],
    "def_3_4": [["a", "lion", "climbs", "a", "tree"], ["狮子", "爬树"]],
    "ghi_5_6": [["a", "dog", "in", "the", "snow"], ["a", "dog", "plays"]],
    "missing_7_8": [["never", "downloaded"]],
}


def write_msvd(ann: Path, videos: Path, shared: Path) -> None:
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "raw-captions.pkl").write_bytes(pickle.dumps(MSVD_CAPTIONS, protocol=2))
    (ann / "train_list.txt").write_text("-4wsuPCjDBc_5_15\n")
    (ann / "test_list.txt").write_text("abc_1_2\ndef_3_4\nghi_5_6\nmissing_7_8\n")
    _link(videos, shared, {"-4wsuPCjDBc_5_15.avi": CLIPS[2], "abc_1_2.avi": CLIPS[3],
                           "def_3_4.avi": CLIPS[4], "ghi_5_6.avi": CLIPS[5]})


def write_vatex(ann: Path, videos: Path, shared: Path) -> None:
    ann.mkdir(parents=True, exist_ok=True)

    def record(video_id: str, english: list[str]) -> dict:
        return {"videoID": video_id, "enCap": english, "chCap": ["一个中文描述"] * len(english)}

    train = [record("Ptf_2VRj-V0_000122_000132", ["a man arm wrestles", "two people wrestle"])]
    val = [record("aaa_000010_000020", ["a person plugs a cable", "connecting a computer",
                                        "a hand and a PC", "café wiring"]),
           record("bbb_000001_000011", ["a girl does gymnastics", "a child on a mat",
                                        "gymnastique", "a small gymnast"]),
           record("ccc_000005_000015", ["a parakeet climbs", "a bird on a ladder",
                                        "a budgie", "鹦鹉"]),
           record("ddd_000000_000010", ["missing one", "missing two", "missing three",
                                        "missing four"])]
    (ann / "vatex_training_v1.0.json").write_text(json.dumps(train), encoding="utf-8")
    (ann / "vatex_validation_v1.0.json").write_text(json.dumps(val, ensure_ascii=False),
                                                    encoding="utf-8")
    _link(videos, shared, {"Ptf_2VRj-V0_000122_000132.mp4": CLIPS[2],
                           "aaa_000010_000020.mp4": CLIPS[0], "bbb_000001_000011.mkv": CLIPS[1],
                           "ccc_000005_000015.mp4": CLIPS[3]})


ANET_VAL = {
    # sentences out of time order on purpose: the paragraph must follow the timestamps
    "v_AAAAAAAAAAA": {"duration": 10.0, "timestamps": [[5.0, 9.0], [0.0, 4.5], [5.0, 7.0]],
                      "sentences": ["Then he pulls the arm down.", "Two men grip hands.",
                                    " Both strain.  "]},
    "v_BBBBBBBBBBB": {"duration": 8.2, "timestamps": [[0.0, 3.0], [3.0, 8.0]],
                      "sentences": ["A lion runs to a tree.", "Il grimpe après un singe — 猴子."]},
    "v_CCCCCCCCCCC": {"duration": 20.0, "timestamps": [[0.0, 20.0]],
                      "sentences": ["Nobody downloaded this one."]},
}


def write_activitynet(ann: Path, videos: Path, shared: Path) -> None:
    ann.mkdir(parents=True, exist_ok=True)
    train = {"v_TTTTTTTTTTT": {"duration": 8.0, "timestamps": [[0.0, 8.0]],
                               "sentences": ["A bird climbs a ladder."]}}
    (ann / "train.json").write_text(json.dumps(train), encoding="utf-8")
    (ann / "val_1.json").write_text(json.dumps(ANET_VAL, ensure_ascii=False), encoding="utf-8")
    # one file with the v_ prefix, one without: both are found
    _link(videos, shared, {"v_TTTTTTTTTTT.mp4": CLIPS[3], "v_AAAAAAAAAAA.mp4": CLIPS[2],
                           "BBBBBBBBBBB.mp4": CLIPS[4]})


WRITERS = {"msrvtt": write_msrvtt, "msvd": write_msvd, "vatex": write_vatex,
           "activitynet": write_activitynet}


def write_dataset(name: str, root: Path, shared: Path) -> tuple[Path, Path]:
    """(annotations folder, videos folder) for `name` under `root`."""
    ann, videos = root / f"{name}_annotations", root / f"{name}_videos"
    WRITERS[name](ann, videos, shared)
    return ann, videos
