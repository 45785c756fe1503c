"""Cell Tracking Challenge RES folder: written, validated and scored by the challenge's own code
(py-ctcmetrics), read back with tifffile."""
import os
import shutil

import numpy as np
import pytest
import tifffile

from formats_cases import hard_masks, to_coco
from wssis_d2.formats.ctc import export_ctc, frame_name
from wssis_d2.formats.flatten import flatten_masks

ctc_metrics = pytest.importorskip("ctc_metrics")


def _sequence():
    """Frames: the hard masks, the same masks shifted down by one row (touching the bottom border), none."""
    masks, clicks, scores, cats = hard_masks()
    second = np.roll(masks, 1, axis=1)
    second[:, 0] = False
    frames = [to_coco(masks, clicks, scores, cats, "t000.tif"), to_coco(second, clicks + [0, 1], scores, cats, "t001.tif"),
              to_coco(masks[:0], clicks[:0], scores[:0], cats[:0], "t002.tif")]
    coco = {"images": [], "annotations": [], "categories": frames[0]["categories"]}
    for t, f in enumerate(frames):
        coco["images"].append(dict(f["images"][0], id=t + 1))
        coco["annotations"] += [dict(a, image_id=t + 1, id=100 * t + a["id"]) for a in f["annotations"]]
    return coco, [(masks, clicks, scores), (second, clicks + [0, 1], scores)]


def test_res_folder_round_trip(tmp_path):
    coco, frames = _sequence()
    res = tmp_path / "01_RES"
    counts = export_ctc(coco, str(res))
    assert sorted(f for f in os.listdir(res) if f.endswith(".tif")) == ["mask000.tif", "mask001.tif", "mask002.tif"]
    tracks = np.loadtxt(res / "res_track.txt", dtype=int, ndmin=2)
    n0 = 11  # frame 0 keeps 11 of its 12 objects (one lost to an overlap, counted)
    assert counts["objects lost to overlaps"] == 2 and counts["tracks"] == len(tracks) == 2 * n0
    np.testing.assert_array_equal(tracks[:, 0], np.arange(1, 2 * n0 + 1))  # ids unique over the sequence
    np.testing.assert_array_equal(tracks[:, 1], tracks[:, 2])  # one-frame tracks, no parent
    assert (tracks[:, 3] == 0).all() and (tracks[:n0, 1] == 0).all() and (tracks[n0:, 1] == 1).all()
    offset = 0
    for t, (masks, clicks, scores) in enumerate(frames):
        lab = tifffile.imread(res / frame_name(t, 3))
        assert lab.dtype == np.uint16
        flat = flatten_masks(masks, scores=scores, clicks=clicks)
        expect = np.where(flat["labels"] > 0, flat["labels"].astype(np.int64) + offset, 0)
        np.testing.assert_array_equal(lab, expect)
        offset += int(flat["ids"].max())
    assert not tifffile.imread(res / "mask002.tif").any()
    # the challenge's own checker
    assert ctc_metrics.validate_sequence(str(res), threads=1)["Valid"] == 1
    # and its SEG / DET against the same folder laid out as ground truth: perfect scores
    gt = tmp_path / "01_GT"
    for sub, prefix in (("SEG", "man_seg"), ("TRA", "man_track")):
        os.makedirs(gt / sub)
        for t in range(3):
            shutil.copy(res / frame_name(t, 3), gt / sub / f"{prefix}{t:03d}.tif")
    shutil.copy(res / "res_track.txt", gt / "TRA" / "man_track.txt")
    scores = ctc_metrics.evaluate_sequence(str(res), str(gt), metrics=["SEG", "DET"], threads=1)
    assert scores["SEG"] == pytest.approx(1.0) and scores["DET"] == pytest.approx(1.0)


def test_broken_folder_fails_the_checker(tmp_path):
    """The checker is not a rubber stamp: a track label missing from its frame makes the folder invalid."""
    coco, _ = _sequence()
    res = tmp_path / "01_RES"
    export_ctc(coco, str(res))
    with open(res / "res_track.txt", "a") as f:
        f.write("999 0 0 0\n")
    assert ctc_metrics.validate_sequence(str(res), threads=1)["Valid"] == 0


def test_frame_names():
    assert frame_name(7, 50) == "mask007.tif" and frame_name(7, 1001) == "mask0007.tif"
