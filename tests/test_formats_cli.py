"""tools/export_labels.py: every format of the shared table from one labels.json; options checked per format."""
import json
import os

import cv2
import numpy as np
import pytest

from conftest import load_script
from formats_cases import hard_masks, to_coco
from wssis_d2.formats.exports import EXPORT_FORMATS

EXPECTED = {"labelme": "a/img 1.json", "cvat": "annotations.xml", "label-images": "a/img 1_masks.tif",
            "ctc": "mask000.tif", "qupath": "a/img 1.geojson", "labelstudio": "tasks.json"}


@pytest.fixture(scope="module")
def labels_json(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    masks, clicks, scores, cats = hard_masks()
    coco = to_coco(masks, clicks, scores, cats)
    os.makedirs(root / "images" / "a")
    cv2.imwrite(str(root / "images" / "a" / "img 1.png"), np.zeros(masks.shape[1:] + (3,), np.uint8))
    coco["info"] = {"image_root": str(root / "images")}
    json.dump(coco, open(root / "labels.json", "w"))
    return root


@pytest.mark.parametrize("fmt", sorted(EXPORT_FORMATS))
def test_every_format(labels_json, fmt, capsys):
    out = labels_json / fmt
    extra = {"label-images": ["--overlap", "area"], "qupath": ["--object-type", "annotation"],
             "labelstudio": ["--polygons"]}.get(fmt, [])
    counts = load_script("tools/export_labels.py").main(["--json", str(labels_json / "labels.json"), "--format", fmt,
                                                          "--output", str(out), *extra])
    assert os.path.isfile(out / EXPECTED[fmt]) and counts
    printed = capsys.readouterr().out
    if fmt == "labelstudio":
        assert "<PolygonLabels" in printed and "Settings > Labeling Interface" in printed
    if fmt == "label-images":
        assert counts["objects lost to overlaps"] == 0  # rule "area": the small hidden object stays on top


def test_option_for_another_format(labels_json):
    with pytest.raises(SystemExit, match="--polygons does not apply to --format/--export qupath"):
        load_script("tools/export_labels.py").main(["--json", str(labels_json / "labels.json"), "--format", "qupath",
                                                    "--output", str(labels_json / "x"), "--polygons"])
