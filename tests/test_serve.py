"""The Label Studio ML backend (issue 34) in-process, through Flask's test client, with the tiny SOLOv2 trained
by test_predict's fixture: health / setup / versions / webhook; pre-annotation from a task's keypoints and
interactive prediction whose brush masks (decoded with Label Studio's own RLE decoder) equal
PointPredictor's for the same clicks; the click-free pass equal to detectron2's DefaultPredictor; every bad
input a 4xx JSON naming the task (or, in a batch, an error prediction); concurrent requests all answered;
images fetched over HTTP with Label Studio's token (legacy, or a personal access token's JWT refresh flow).
"""
import base64
import http.server
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("flask")
pytest.importorskip("label_studio_sdk")

from detectron2.engine import DefaultPredictor  # noqa: E402

from test_predict import SOLO_CFG, _clicks, trained  # noqa: E402,F401  (trained: the module's fixture)
from wssis_d2 import PointPredictor  # noqa: E402
from wssis_d2.data.categories import contiguous_category_map  # noqa: E402
from wssis_d2.data.images import read_image  # noqa: E402
from wssis_d2.formats.labelstudio import keypoint_region, labeling_config, rle_to_mask  # noqa: E402
from wssis_d2.serve import Backend, ImageSource  # noqa: E402
from wssis_d2.predict.config import model_config  # noqa: E402
from wssis_d2.serve.__main__ import (build_backend, get_parser, main as serve_main,  # noqa: E402
                                     registered_categories_json)
from wssis_d2.serve.app import create_app  # noqa: E402
from wssis_d2.serve.backend import PLAIN_SUFFIX  # noqa: E402
from wssis_d2.utils.errors import WSSISInputError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread_module")

NUM_TASKS = 3  # images of the shapes set used as tasks


@pytest.fixture(scope="module")
def served(trained):
    """The backend app of the trained model over the shapes images (--image-root), its predictor and names."""
    categories_json = trained["gt"]
    args = get_parser().parse_args(["--config-file", SOLO_CFG, "--weights", trained["weights"], "--categories",
                                    categories_json, "--image-root", trained["images"]])
    backend = build_backend(args)
    coco = trained["coco"]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    config = labeling_config(backend.names, smart=True)
    return {"backend": backend, "client": create_app(backend).test_client(), "config": config, "names": names,
            "predictor": backend.predictor, "coco": coco, "images": trained["images"]}


def _task(served, img, task_id, with_clicks=True, key="annotations"):
    """A Label Studio task of image ``img`` (local-files URL) whose annotation holds its clicks as keypoints."""
    pts, _, ids = _clicks(served["coco"], img["id"])
    anns = {a["id"]: a for a in served["coco"]["annotations"]}
    regions = [keypoint_region(x, y, served["names"][anns[i]["category_id"]], img["height"], img["width"],
                               region_id=f"kp{i}") for (x, y), i in zip(pts, ids)]
    task = {"id": task_id, "data": {"image": f"/data/local-files/?d={img['file_name']}"}, "annotations": [],
            "predictions": []}
    if with_clicks:
        task[key] = [{"id": 1, "result": regions}]
    return task


def _predict(served, tasks, context=None):
    body = {"tasks": tasks, "project": "1.1700000000", "label_config": served["config"],
            "params": {"login": None, "password": None, "context": context}}
    return served["client"].post("/predict", json=body)


def _brush_masks(prediction):
    return [(r, rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"]))
            for r in prediction["result"] if r["type"] == "brushlabels"]


def _image(served, img):
    return read_image(os.path.join(served["images"], img["file_name"]), "BGR")


def test_health_setup_versions_webhook(served):
    c, backend = served["client"], served["backend"]
    health = c.get("/health").get_json()
    assert health["status"] == "UP" and health["labels"] == [served["names"][k] for k in sorted(served["names"])]
    setup = c.post("/setup", json={"project": "1.1700000000", "schema": served["config"],
                                   "hostname": "http://localhost:8080", "access_token": "abc"})
    assert setup.status_code == 200 and setup.get_json() == {"model_version": backend.model_version}
    assert backend.model_version.startswith("wssis-d2:model_final-")
    assert c.get("/versions").get_json()["versions"][0] == backend.model_version
    assert c.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": 1}}).status_code == 200
    bad = c.post("/setup", json={"project": "1.1", "schema": "<View><Image name='image' value='$image'/></View>"})
    assert bad.status_code == 422 and "BrushLabels" in bad.get_json()["error"]


def test_preannotation_from_keypoints_equals_predictor(served):
    images = served["coco"]["images"][:NUM_TASKS]
    tasks = [_task(served, img, 10 + k, key="annotations" if k else "predictions") for k, img in enumerate(images)]
    res = _predict(served, tasks)
    assert res.status_code == 200, res.get_json()
    results = res.get_json()["results"]
    assert len(results) == len(tasks)
    id_map = contiguous_category_map(served["coco"]["categories"])
    num_masks = 0
    for img, pred in zip(images, results):
        assert pred["model_version"] == served["backend"].model_version  # from clicks
        pts, classes, ids = _clicks(served["coco"], img["id"])
        out = served["predictor"](_image(served, img), pts, classes)
        brushes = {r["id"]: (r, m) for r, m in _brush_masks(pred)}
        keypoints = [r for r in pred["result"] if r["type"] == "keypointlabels"]
        assert len(keypoints) == len(pts)  # every click comes back as a keypoint
        for k, i in enumerate(ids):
            if out.no_mask[k]:
                assert f"kp{i}_mask" not in brushes
                continue
            region, mask = brushes[f"kp{i}_mask"]
            assert np.array_equal(mask, out.pred_masks[k].numpy())
            assert region["score"] == pytest.approx(float(out.scores[k]))
            label = region["value"]["brushlabels"][0]
            assert id_map[[c["id"] for c in served["coco"]["categories"] if c["name"] == label][0]] == classes[k]
            assert (region["from_name"], region["to_name"]) == ("tag", "image")
            num_masks += 1
    assert num_masks > 0


def test_plain_pass_without_keypoints_equals_default_predictor(served, trained):
    images = served["coco"]["images"][:2]
    res = _predict(served, [_task(served, img, 20 + k, with_clicks=False) for k, img in enumerate(images)])
    assert res.status_code == 200, res.get_json()
    cfg = model_config(SOLO_CFG, trained["weights"])
    d2 = DefaultPredictor(cfg)
    total = 0
    for img, pred in zip(images, res.get_json()["results"]):
        assert pred["model_version"] == served["backend"].model_version + PLAIN_SUFFIX
        want = d2(_image(served, img))["instances"].to("cpu")
        got = _brush_masks(pred)
        assert len(got) == len(want)
        for (region, mask), m, s, c in zip(got, want.pred_masks.numpy(), want.scores.tolist(),
                                           want.pred_classes.tolist()):
            assert np.array_equal(mask, m) and region["score"] == pytest.approx(s)
            assert region["value"]["brushlabels"] == [served["backend"].names[c]]
        total += len(got)
    assert total > 0


def test_interactive_context_gives_one_brush_region(served):
    img = served["coco"]["images"][1]
    pts, classes, ids = _clicks(served["coco"], img["id"])
    out = served["predictor"](_image(served, img), pts, classes)
    k = int(np.flatnonzero(~out.no_mask.numpy())[0])
    label = served["backend"].names[classes[k]]
    kp = {**keypoint_region(pts[k][0], pts[k][1], label, img["height"], img["width"], region_id="abc"),
          "from_name": "kp", "is_positive": True, "origin": "manual"}
    task = _task(served, img, 30, with_clicks=False)
    res = _predict(served, [task], context={"result": [kp]})
    assert res.status_code == 200, res.get_json()
    (pred,) = res.get_json()["results"]
    assert [r["type"] for r in pred["result"]] == ["brushlabels"]
    ((region, mask),) = _brush_masks(pred)
    single = served["predictor"](_image(served, img), [pts[k]], [classes[k]])  # the click alone
    assert np.array_equal(mask, single.pred_masks[0].numpy())
    assert region["score"] == pytest.approx(float(single.scores[0])) and region["value"]["brushlabels"] == [label]
    # a negative keypoint beside it is left out
    neg = {**kp, "id": "neg", "is_positive": False}
    again = _predict(served, [task], context={"result": [kp, neg]}).get_json()["results"][0]
    assert len(_brush_masks(again)) == 1


def test_bad_input_is_a_clear_error(served, tmp_path):
    img = served["coco"]["images"][0]
    good = _task(served, img, 40)

    def error(task, status=422, context=None):
        res = _predict(served, [task], context=context)
        assert res.status_code == status, res.get_json()
        body = res.get_json()
        assert body["task"] == task["id"]
        return body["error"]

    unknown = json.loads(json.dumps(good))
    unknown["id"] = 41
    unknown["annotations"][0]["result"][0]["value"]["keypointlabels"] = ["zebra"]
    assert "'zebra' is not a category" in error(unknown) and "task 41" in error(unknown)
    outside = json.loads(json.dumps(good))
    outside["id"] = 42
    outside["annotations"][0]["result"][0]["value"]["x"] = 100.5
    msg = error(outside)
    assert "task 42" in msg and "outside the image" in msg and "kp" in msg
    (tmp_path / "broken.png").write_bytes(b"not an image")
    unreadable = {"id": 43, "data": {"image": "/data/local-files/?d=broken.png"}}
    served["backend"].images.image_root, root = str(tmp_path), served["backend"].images.image_root
    try:
        assert "task 43" in error(unreadable) and "broken.png" in error(unreadable)
    finally:
        served["backend"].images.image_root = root
    assert "empty task" in error({"id": 44, "data": {}})
    assert "not found" in error({"id": 45, "data": {"image": "/data/upload/1/missing.png"}})
    assert "outside --image-root" in error({"id": 46, "data": {"image": "/data/local-files/?d=../../etc/passwd"}})
    assert "no positive keypoint" in error(_task(served, img, 47, with_clicks=False),
                                           context={"result": [{"type": "brushlabels", "value": {}}]})
    # a batch: the bad task gets an error prediction, the others theirs
    res = _predict(served, [good, {"id": 48, "data": {}}])
    assert res.status_code == 200
    ok, bad = res.get_json()["results"]
    assert ok["model_version"] == served["backend"].model_version and ok["result"]
    assert bad["result"] == [] and bad["model_version"].startswith("error: task 48: empty task")
    # malformed requests
    assert served["client"].post("/predict", json={"tasks": []}).status_code == 400
    assert served["client"].post("/predict", data="{", content_type="application/json").status_code == 400
    two = _predict(served, [good, good], context={"result": good["annotations"][0]["result"][:1]})
    assert two.status_code == 400 and "one task" in two.get_json()["error"]
    assert served["client"].get("/nothing").status_code == 404
    health = served["client"].get("/health")
    assert health.status_code == 200 and health.get_json()["counts"]["task errors"] >= 10  # still serving, counted


def test_concurrent_requests_are_all_answered(served):
    tasks = [_task(served, img, 50 + k) for k, img in enumerate(served["coco"]["images"][:2])]
    want = _predict(served, tasks).get_json()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _predict(served, tasks), range(4)))
    assert all(a.status_code == 200 and a.get_json() == want for a in answers)


JWT = (base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
       + ".eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2ln")  # a personal access token's shape (a refresh JWT)


class _FakeLabelStudio(http.server.BaseHTTPRequestHandler):
    """Serves one PNG at /data/upload/1/a.png to ``Authorization: Token secret`` or ``Bearer access-1`` only;
    ``POST /api/token/refresh`` with the refresh token :data:`JWT` gives ``access-1`` (Label Studio's JWT flow)."""

    png = b""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/api/token/refresh" or body.get("refresh") != JWT:
            self.send_error(401)
            return
        out = json.dumps({"access": "access-1"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):  # noqa: N802
        if self.path != "/data/upload/1/a.png":
            self.send_error(404)
        elif self.headers.get("Authorization") not in ("Token secret", "Bearer access-1"):
            self.send_error(401)
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.png)))
            self.end_headers()
            self.wfile.write(self.png)

    def log_message(self, *args):
        pass


def test_images_fetched_from_label_studio_with_its_token(served):
    img = served["coco"]["images"][0]
    path = os.path.join(served["images"], img["file_name"])
    _FakeLabelStudio.png = open(path, "rb").read()
    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeLabelStudio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        fetched = ImageSource(None, "BGR", url=url, api_key="secret")("/data/upload/1/a.png", 7)
        assert np.array_equal(fetched, read_image(path, "BGR"))
        assert np.array_equal(ImageSource(None, "BGR", url=url, api_key=JWT)("/data/upload/1/a.png", 7), fetched)
        with pytest.raises(WSSISInputError, match="task 7: image .*HTTP 401"):
            ImageSource(None, "BGR", url=url, api_key="wrong")("/data/upload/1/a.png", 7)
        setup_only = ImageSource(None, "BGR", url="", api_key="")
        setup_only.use_setup(url, "secret")  # what /setup sends when the environment has nothing
        assert np.array_equal(setup_only(f"{url}/data/upload/1/a.png", 7), fetched)
        with pytest.raises(WSSISInputError, match="LABEL_STUDIO_URL"):
            ImageSource(None, "BGR", url="", api_key="")("/data/upload/1/a.png", 7)
    finally:
        server.shutdown()


def test_print_config(trained, capsys):
    backend = serve_main(["--config-file", SOLO_CFG, "--weights", trained["weights"], "--categories", trained["gt"],
                          "--print-config"])
    out = capsys.readouterr().out
    assert out.startswith("<View>") and 'smart="true"' in out
    assert all(f'<Label value="{n}"/>' in out for n in backend.names)
    assert isinstance(backend, Backend) and isinstance(backend.predictor, PointPredictor)


def test_tag_names_and_data_key_come_from_the_projects_config(served):
    """A config with its own tag names and data key: the regions carry them, the image is read from that key."""
    labels = "".join(f'<Label value="{n}"/>' for n in served["backend"].names)
    config = (f'<View><Image name="img" value="$picture"/><BrushLabels name="masks" toName="img">{labels}'
              f'</BrushLabels><KeyPointLabels name="clicks" toName="img" smart="true">{labels}</KeyPointLabels></View>')
    img = served["coco"]["images"][2]
    task = _task(served, img, 60)
    task["data"] = {"picture": task["data"]["image"]}
    res = served["client"].post("/predict", json={"tasks": [task], "label_config": config})
    assert res.status_code == 200, res.get_json()
    regions = res.get_json()["results"][0]["result"]
    assert regions and {(r["type"], r["from_name"], r["to_name"]) for r in regions} <= {
        ("brushlabels", "masks", "img"), ("keypointlabels", "clicks", "img")}
    wrong_key = served["client"].post("/predict", json={"tasks": [_task(served, img, 61)], "label_config": config})
    assert wrong_key.status_code == 422 and "data.picture" in wrong_key.get_json()["error"]


def test_categories_from_the_configs_registered_training_json():
    cfg = model_config(SOLO_CFG, "", ["DATASETS.WSSIS_REGISTER", "[['mine', 'labels.json', 'images'], ['other', "
                                          "'o.json', 'o']]", "DATASETS.TRAIN", "('mine',)"])
    assert registered_categories_json(cfg) == "labels.json"
    assert registered_categories_json(model_config(SOLO_CFG, "")) is None  # names registered elsewhere
