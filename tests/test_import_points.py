"""Point importers: one small export per tool, written by hand after each tool's documented format, with
the awkward cases (percent coordinates, upload prefixes, multi-point elements, images without clicks,
unknown labels, clicks outside the image, duplicate images, malformed files)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from wssis_d2.data.datasets import load_point_json
from wssis_d2.formats.importers import POINT_FORMATS, PointImportError, import_points

from conftest import load_script

CATS = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]
SIZES = {"a.png": (30, 40), "sub/b.png": (20, 50), "c.png": (10, 10)}  # (H, W)


@pytest.fixture
def root(tmp_path):
    images = tmp_path / "images"
    for name, (h, w) in SIZES.items():
        (images / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(images / name)
    cats = tmp_path / "full.json"
    cats.write_text(json.dumps({"images": [{"id": 41, "file_name": "full.png", "height": 5, "width": 5}],
                                "annotations": [], "categories": CATS}))
    return tmp_path


def run(root, fmt, path, **kw):
    out = root / "points.json"
    import_points(fmt, str(path), str(root / "images"), str(root / "full.json"), str(out), **kw)
    return json.loads(out.read_text())


def clicks(data):
    """{file_name: [(x, y, category_id), ...]}"""
    names = {img["id"]: img["file_name"] for img in data["images"]}
    out = {n: [] for n in names.values()}
    for a in data["annotations"]:
        assert a["point_labels"] == [1] and len(a["point_coords"]) == 1
        out[names[a["image_id"]]].append((*a["point_coords"][0], a["category_id"]))
    return out


def labelme(folder, name, image_path, shapes, size=None):
    d = {"version": "5.2.1", "flags": {}, "shapes": shapes, "imagePath": image_path, "imageData": None}
    if size:
        d["imageHeight"], d["imageWidth"] = size
    (folder / name).write_text(json.dumps(d))


def pt(label, x, y):
    return {"label": label, "points": [[x, y]], "group_id": None, "shape_type": "point", "flags": {}}


def test_every_format_is_registered():
    assert set(POINT_FORMATS) == {"labelme", "cvat", "labelstudio", "coco-keypoints", "csv"}


def test_labelme_points_other_shapes_and_image_without_clicks(root):
    lm = root / "labelme"
    lm.mkdir()
    labelme(lm, "a.json", "../images/a.png", [pt("cat", 10.25, 5.5), pt("dog", 39.9, 29.9),
            {"label": "cat", "points": [[1, 1], [5, 5]], "shape_type": "rectangle", "flags": {}}], size=(30, 40))
    # no size in the file: read from the image; a Windows-style imagePath
    labelme(lm, "b.json", "..\\images\\sub\\b.png", [pt("dog", 0.0, 0.0)])
    labelme(lm, "c.json", "../images/c.png", [])
    data = run(root, "labelme", lm)
    assert clicks(data) == {"a.png": [(10.25, 5.5, 3), (39.9, 29.9, 7)], "sub/b.png": [(0.0, 0.0, 7)], "c.png": []}
    sizes = {img["file_name"]: (img["height"], img["width"]) for img in data["images"]}
    assert sizes == SIZES
    assert min(img["id"] for img in data["images"]) == 42  # after the fully-labeled file's ids
    assert data["categories"] == CATS and data["info"]["ignored"] == {"non-point shapes": 1}
    assert data["info"]["num_images_without_clicks"] == 1
    # it loads with the point loader; the image without clicks is there with no annotations
    recs = load_point_json(str(root / "points.json"), str(root / "images"))
    counts = {os.path.relpath(r["file_name"], root / "images"): len(r["annotations"]) for r in recs}
    assert counts == {"a.png": 2, "sub/b.png": 1, "c.png": 0}


def test_labelme_unknown_label_error_and_skip(root):
    lm = root / "labelme"
    lm.mkdir()
    labelme(lm, "a.json", "../images/a.png", [pt("cat", 1, 1), pt("horse", 2, 2)])
    with pytest.raises(PointImportError, match=r"a\.json: shape 1 \(label 'horse'\): unknown label 'horse'; "
                                               r"known: \['cat', 'dog'\]"):
        run(root, "labelme", lm)
    data = run(root, "labelme", lm, skip_unknown=True)
    assert len(data["annotations"]) == 1 and data["info"]["num_unknown_label_skipped"] == 1
    assert data["info"]["unknown_labels"] == {"horse": 1}


@pytest.mark.parametrize("xy", [(40.5, 3.0), (-0.1, 3.0), (5.0, 30.25)])  # 40 x 30: [0, 40] x [0, 30] is inside
def test_click_outside_its_image(root, xy):
    lm = root / "labelme"
    lm.mkdir()
    labelme(lm, "a.json", "../images/a.png", [pt("cat", *xy)])
    with pytest.raises(PointImportError, match=r"a\.json: shape 0 .*outside its image 'a.png' \(40 x 30"):
        run(root, "labelme", lm)


def test_labelme_missing_image_duplicate_and_malformed(root):
    lm = root / "labelme"
    lm.mkdir()
    labelme(lm, "x.json", "../images/nope.png", [])
    with pytest.raises(PointImportError, match=r"x\.json .*image file .*nope\.png does not exist"):
        run(root, "labelme", lm)
    os.remove(lm / "x.json")
    labelme(lm, "a.json", "../images/a.png", [])
    labelme(lm, "a2.json", "../images/a.png", [])
    with pytest.raises(PointImportError, match=r"a2\.json .*image 'a.png' has a second entry \(the first in .*a\.json"):
        run(root, "labelme", lm)
    (lm / "a2.json").write_text("{not json")
    with pytest.raises(PointImportError, match=r"a2\.json: malformed labelme file"):
        run(root, "labelme", lm)


CVAT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><name>clicks</name></task></meta>
  <image id="0" name="a.png" width="40" height="30">
    <points label="cat" source="manual" occluded="0" points="10.50,5.25;20.00,25.75" z_order="0"></points>
    <points label="dog" source="manual" occluded="0" points="1.00,2.00" z_order="0"></points>
    <box label="dog" source="manual" occluded="0" xtl="1" ytl="1" xbr="5" ybr="5" z_order="0"></box>
  </image>
  <image id="1" name="sub/b.png" width="50" height="20"></image>
</annotations>
"""


def test_cvat_multi_point_elements_are_one_instance_per_point(root):
    path = root / "annotations.xml"
    path.write_text(CVAT)
    data = run(root, "cvat", path)
    assert clicks(data) == {"a.png": [(10.5, 5.25, 3), (20.0, 25.75, 3), (1.0, 2.0, 7)], "sub/b.png": []}
    assert data["info"]["ignored"] == {"non-points elements": 1}
    path.write_text(CVAT.replace('points="1.00,2.00"', 'points="1.00;2.00"'))
    with pytest.raises(PointImportError, match=r"<image id='0' name='a.png'> <points> 1 \(label 'dog'\): points must"):
        run(root, "cvat", path)
    path.write_text(CVAT[:200])
    with pytest.raises(PointImportError, match=r"annotations\.xml: malformed CVAT XML"):
        run(root, "cvat", path)
    path.write_text(CVAT.replace('<image id="1" name="sub/b.png"', '<image id="1" name="a.png"'))
    with pytest.raises(PointImportError, match=r"<image id='1' name='a.png'>: image 'a.png' has a second entry"):
        run(root, "cvat", path)


def ls_task(tid, image, results, rotation=0):
    return {"id": tid, "data": {"image": image}, "annotations": [{"id": tid, "was_cancelled": False, "result": [
        {"id": f"r{k}", "type": "keypointlabels", "from_name": "kp", "to_name": "image", "original_width": w,
         "original_height": h, "image_rotation": rotation,
         "value": {"x": x, "y": y, "width": 0.6, "keypointlabels": [label]}}
        for k, (x, y, label, w, h) in enumerate(results)]}]}


def test_labelstudio_percent_coordinates_and_upload_prefix(root):
    tasks = [
        ls_task(1, "/data/upload/3/1a2b3c4d-a.png", [(25.0, 50.0, "cat", 40, 30), (100.0 * 39.5 / 40, 10.0, "dog", 40, 30)]),
        ls_task(2, "/data/local-files/?d=images/sub/b.png", [(10.0, 10.0, "dog", 50, 20)]),
        {"id": 3, "data": {"image": "/data/upload/3/deadbeef-c.png"}, "annotations": []},  # no clicks
    ]
    path = root / "ls.json"
    path.write_text(json.dumps(tasks))
    data = run(root, "labelstudio", path)
    got = clicks(data)
    assert got["a.png"] == [(10.0, 15.0, 3), (39.5, 3.0, 7)]  # x = 25% of 40, y = 50% of 30
    assert got["sub/b.png"] == [(5.0, 2.0, 7)] and got["c.png"] == []
    tasks[0] = ls_task(1, "/data/upload/3/1a2b3c4d-a.png", [(25.0, 50.0, "cat", 40, 30)], rotation=90)
    path.write_text(json.dumps(tasks))
    with pytest.raises(PointImportError, match=r"ls\.json: task 1 result 'r0': image_rotation 90 is not supported"):
        run(root, "labelstudio", path)
    tasks[0] = ls_task(1, "/data/upload/3/1a2b3c4d-zebra.png", [])
    path.write_text(json.dumps(tasks))
    with pytest.raises(PointImportError, match=r"task 1 .*no image file '1a2b3c4d-zebra.png' or 'zebra.png'"):
        run(root, "labelstudio", path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(PointImportError, match="a list of tasks"):
        run(root, "labelstudio", path)


def test_coco_keypoints_first_visible_keypoint_plus_half(root):
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                       {"id": 2, "file_name": "c.png", "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "dog", "keypoints": ["nose", "tail"]}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "keypoints": [0, 0, 0, 12, 7, 2]},
                            {"id": 6, "image_id": 1, "category_id": 1, "keypoints": [3, 4, 1, 9, 9, 2]},
                            {"id": 7, "image_id": 2, "category_id": 1, "keypoints": [0, 0, 0, 0, 0, 0]}]}
    path = root / "kp.json"
    path.write_text(json.dumps(coco))
    data = run(root, "coco-keypoints", path)
    assert clicks(data) == {"a.png": [(12.5, 7.5, 7), (3.5, 4.5, 7)], "c.png": []}
    assert data["info"]["ignored"] == {"annotations without a visible keypoint": 1}
    coco["annotations"][0]["keypoints"] = [1, 2]
    path.write_text(json.dumps(coco))
    with pytest.raises(PointImportError, match=r"kp\.json: annotation id 5 \(image id 1\): keypoints must be"):
        run(root, "coco-keypoints", path)


def test_csv_rows_and_image_without_clicks(root):
    path = root / "clicks.csv"
    path.write_text("file_name,x,y,category\na.png,1.5,2.5,cat\na.png,3,4,dog\nc.png,,,\n")
    data = run(root, "csv", path)
    assert clicks(data) == {"a.png": [(1.5, 2.5, 3), (3.0, 4.0, 7)], "c.png": []}
    path.write_text("name,x,y\na.png,1,2\n")
    with pytest.raises(PointImportError, match=r"clicks\.csv: the first line must be the header file_name,x,y,category"):
        run(root, "csv", path)
    path.write_text("file_name,x,y,category\na.png,one,2,cat\n")
    with pytest.raises(PointImportError, match=r"clicks\.csv: line 2: x, y must be numbers"):
        run(root, "csv", path)


def test_clicked_image_in_the_full_file_is_an_error(root):
    path = root / "clicks.csv"
    path.write_text("file_name,x,y,category\na.png,1,1,cat\n")
    full = json.loads((root / "full.json").read_text())
    full["images"][0]["file_name"] = "a.png"
    (root / "full.json").write_text(json.dumps(full))
    with pytest.raises(PointImportError, match=r"image 'a.png' is also in the fully-labeled file .*full\.json"):
        run(root, "csv", path)


def test_script_one_line_error(root, capsys):
    script = load_script("datasets/import_points.py", "import_points_script")
    path = root / "clicks.csv"
    path.write_text("file_name,x,y,category\na.png,100,1,cat\n")
    args = ["--format", "csv", "--input", str(path), "--image-root", str(root / "images"),
            "--categories", str(root / "full.json"), "--output", str(root / "p.json")]
    with pytest.raises(SystemExit) as e:
        script.main(args)
    assert str(e.value).startswith("error: ") and "outside its image" in str(e.value) and "\n" not in str(e.value)
    assert not (root / "p.json").exists()
    path.write_text("file_name,x,y,category\na.png,10,1,cat\n")
    script.main(args)
    assert "1 clicks" in capsys.readouterr().out and (root / "p.json").exists()
