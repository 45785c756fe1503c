#!/usr/bin/env python
"""End-to-end check of the Label Studio ML backend (``python -m wssis_d2.serve``) against a real Label Studio
started here (issue 34; run by scripts/labelstudio_backend_check.sh; result in docs/PREDICT.md).

1. A tiny SOLOv2 (configs/CPU/SOLOv2_tiny.yaml) trained ``--iters`` iterations on generated shapes images
   (``--size`` px), unless ``<work>/train/model_final.pth`` exists.
2. Label Studio (``--label-studio``: its executable, installed in its own environment) on 127.0.0.1 with a
   fresh data folder, local-files serving of ``<work>/shapes``, no outside connections (Sentry DSNs empty,
   analytics and the version check off, feature flags offline), a user with a legacy API token;
   ``ML_BLOCK_LOCAL_IP`` and ``USE_DEFAULT_BANNED_SUBNETS`` off so that it may call the backend on 127.0.0.1.
3. The backend (this interpreter) without --image-root: it fetches the images from Label Studio with the token.
4. Through Label Studio's API: a project with the labeling config (smart keypoints), a local-files storage,
   tasks (images with their clicks as an annotation of keypoints; one without clicks; one with an unknown
   label), the backend connected (interactive on), predictions retrieved (data manager action), then one
   interactive prediction per click (``/api/ml/<id>/interactive-annotating``), each saved as an annotation.
5. Every mask Label Studio stores (predictions, annotations) is decoded with the SDK's RLE decoder and
   compared with PointPredictor's mask for the same click(s) (the plain pass: detectron2's DefaultPredictor).
6. Latency: backend start (model load), the first predict request through Label Studio, then each click.

Prints a summary and writes ``<work>/result.json``; stops both servers at the end. Exit status 1 when a
mask differs.
"""
import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO)

CONFIG = os.path.join(REPO, "configs", "CPU", "SOLOv2_tiny.yaml")


def http(method, url, body=None, token=None, timeout=300):
    """(status, parsed JSON or text) of one request."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Token {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_up(url, what, proc, limit_s=600):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit_s:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode} (see its log)")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise SystemExit(f"{what} not up after {limit_s} s")


def prepare(work, size, iters, threads):
    """Shapes images + a trained tiny SOLOv2 -> (json, image folder, weights)."""
    from wssis_d2.data.synthetic import generate_shapes_dataset

    gt = os.path.join(work, "shapes", "train.json")
    if not os.path.exists(gt):
        generate_shapes_dataset(os.path.join(work, "shapes"), 12, image_size=size, seed=3, max_instances=5)
    weights = os.path.join(work, "train", "model_final.pth")
    if not os.path.exists(weights):
        images = os.path.join(work, "shapes", "images")
        subprocess.run([sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", CONFIG,
                        "OUTPUT_DIR", os.path.join(work, "train"),
                        "DATASETS.WSSIS_REGISTER", f"[['lscheck_train', '{gt}', '{images}']]",
                        "DATASETS.TRAIN", "('lscheck_train',)", "DATASETS.TEST", "()", "INPUT.MASK_FORMAT", "bitmask",
                        "SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", "()", "SOLVER.WARMUP_ITERS", "10", "SEED", "0"],
                       check=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return gt, os.path.join(work, "shapes", "images"), weights


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label-studio", default="/tmp/ls-venv/bin/label-studio", help="Label Studio's executable")
    p.add_argument("--work", default="/tmp/wssis-ls-check", help="work folder (data, model, logs)")
    p.add_argument("--ls-port", type=int, default=8089)
    p.add_argument("--backend-port", type=int, default=9091)
    p.add_argument("--size", type=int, default=256, help="image side (px)")
    p.add_argument("--iters", type=int, default=150, help="training iterations of the tiny model")
    p.add_argument("--tasks", type=int, default=4, help="tasks with clicks")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the backend")
    args = p.parse_args()
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    gt, images, weights = prepare(work, args.size, args.iters, args.threads)

    import torch
    from detectron2.engine import DefaultPredictor

    from wssis_d2 import PointPredictor
    from wssis_d2.data.categories import contiguous_category_map
    from wssis_d2.data.coco_masks import decode_segmentation
    from wssis_d2.data.images import read_image
    from wssis_d2.data.point_rules import centroid_point
    from wssis_d2.formats.labelstudio import keypoint_region, labeling_config, rle_to_mask
    from wssis_d2.predict.config import model_config

    torch.set_num_threads(args.threads)
    coco = json.load(open(gt))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    id_map = contiguous_category_map(coco["categories"])
    cfg = model_config(CONFIG, weights)
    predictor = PointPredictor(cfg)

    token = secrets.token_hex(20)
    ls_url, backend_url = f"http://127.0.0.1:{args.ls_port}", f"http://127.0.0.1:{args.backend_port}"
    quiet = {"SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
             "LATEST_VERSION_CHECK": "false", "FEATURE_FLAGS_OFFLINE": "true"}
    ls_env = {**os.environ, **quiet, "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
              "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": os.path.join(work, "shapes"),
              "ML_BLOCK_LOCAL_IP": "false", "USE_DEFAULT_BANNED_SUBNETS": "false", "DJANGO_DB": "sqlite",
              "LABEL_STUDIO_BASE_DATA_DIR": os.path.join(work, "ls-data")}
    for port in (args.ls_port, args.backend_port):  # another server there would answer in place of ours
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(f"port {port} is in use: stop what listens there or choose another port")
    shutil.rmtree(os.path.join(work, "ls-data"), ignore_errors=True)  # a fresh Label Studio every run
    procs, result = [], {"label_studio": None, "checks": {}, "latency_s": {}, "load_avg_start": os.getloadavg()}
    try:
        ls = subprocess.Popen([args.label_studio, "start", "--no-browser", "--internal-host", "127.0.0.1", "-p",
                               str(args.ls_port), "--data-dir", os.path.join(work, "ls-data"), "--username",
                               "check@wssis.local", "--password", secrets.token_hex(8), "--user-token", token,
                               "--enable-legacy-api-token"],
                              env=ls_env, stdout=open(os.path.join(work, "ls.log"), "w"), stderr=subprocess.STDOUT)
        procs.append(ls)
        backend = subprocess.Popen([sys.executable, "-m", "wssis_d2.serve", "--config-file", CONFIG, "--weights",
                                    weights, "--categories", gt, "--port", str(args.backend_port)],
                                   cwd=REPO, env={**os.environ, "LABEL_STUDIO_URL": ls_url,
                                                  "LABEL_STUDIO_API_KEY": token, "OMP_NUM_THREADS": str(args.threads)},
                                   stdout=open(os.path.join(work, "backend.log"), "w"), stderr=subprocess.STDOUT)
        procs.append(backend)
        result["latency_s"]["backend_start"] = round(wait_up(backend_url + "/health", "the backend", backend), 2)
        wait_up(ls_url + "/health", "Label Studio", ls)
        _, version = http("GET", ls_url + "/api/version", token=token)
        result["label_studio"] = version.get("release") if isinstance(version, dict) else str(version)[:80]

        label_names = [names[c] for c in sorted(names)]
        config = labeling_config(label_names, smart=True)
        st, project = http("POST", ls_url + "/api/projects", {"title": "wssis-d2 check", "label_config": config},
                           token)
        assert st == 201, (st, project)
        pid = project["id"]
        st, storage = http("POST", ls_url + "/api/storages/localfiles", {
            "project": pid, "path": images, "use_blob_urls": True, "title": "shapes"}, token)
        assert st == 201, (st, storage)

        tasks, clicks = [], {}  # clicks[file_name] = (points, classes)
        for img in coco["images"][:args.tasks]:
            anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
            pts = [centroid_point(decode_segmentation(a["segmentation"], img["height"], img["width"])) for a in anns]
            clicks[img["file_name"]] = (pts, [id_map[a["category_id"]] for a in anns])
            regions = [{**keypoint_region(x, y, names[a["category_id"]], img["height"], img["width"],
                                          region_id=f"kp{a['id']}"), "from_name": "kp"} for (x, y), a in zip(pts, anns)]
            tasks.append({"data": {"image": f"/data/local-files/?d=images/{img['file_name']}"},
                          "annotations": [{"result": regions}]})
        plain_img, bad_img = coco["images"][args.tasks], coco["images"][args.tasks + 1]
        tasks.append({"data": {"image": f"/data/local-files/?d=images/{plain_img['file_name']}"}})
        bad_kp = keypoint_region(10.5, 10.5, "zebra", bad_img["height"], bad_img["width"], region_id="bad")
        tasks.append({"data": {"image": f"/data/local-files/?d=images/{bad_img['file_name']}"},
                      "annotations": [{"result": [{**bad_kp, "from_name": "kp"}]}]})
        st, imported = http("POST", ls_url + f"/api/projects/{pid}/import", tasks, token)
        assert st == 201, (st, imported)
        st, listing = http("GET", ls_url + f"/api/tasks?project={pid}&page_size=100", token=token)
        task_list = listing["tasks"] if isinstance(listing, dict) else listing
        by_file = {t["data"]["image"].split("images/", 1)[1]: t for t in task_list}

        st, ml = http("POST", ls_url + "/api/ml", {"url": backend_url, "project": pid, "is_interactive": True,
                                                   "title": "wssis-d2"}, token)
        assert st == 201, (st, ml)
        mid = ml["id"]
        result["model_version"] = ml.get("model_version")

        t0 = time.perf_counter()
        st, action = http("POST", ls_url + f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
                          {"selectedItems": {"all": True, "excluded": []}}, token)
        result["latency_s"]["first_predict_request"] = round(time.perf_counter() - t0, 2)
        result["latency_s"]["first_predict_tasks"] = len(task_list)
        assert st == 200, (st, action)

        def predictions(task_id):
            _, preds = http("GET", ls_url + f"/api/predictions?task={task_id}", token=token)
            return preds

        def brush(regions):
            return [(r, rle_to_mask(r["value"]["rle"], r["original_height"], r["original_width"]))
                    for r in regions if r["type"] == "brushlabels"]

        checks = result["checks"]
        compared = equal = 0
        for img in coco["images"][:args.tasks]:
            preds = predictions(by_file[img["file_name"]]["id"])
            assert len(preds) == 1 and preds[0]["model_version"] == ml["model_version"], preds
            image = read_image(os.path.join(images, img["file_name"]), "BGR")
            pts, classes = clicks[img["file_name"]]
            out = predictor(image, pts, classes)
            stored = {r["id"]: m for r, m in brush(preds[0]["result"])}
            anns = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
            for k, a in enumerate(anns):
                m = stored.get(f"kp{a['id']}_mask")
                if out.no_mask[k]:
                    equal += m is None
                else:
                    equal += m is not None and np.array_equal(m, out.pred_masks[k].numpy())
                compared += 1
        checks["preannotation_masks_equal"] = f"{equal}/{compared}"

        plain = predictions(by_file[plain_img["file_name"]]["id"])
        d2 = DefaultPredictor(cfg)(read_image(os.path.join(images, plain_img["file_name"]), "BGR"))["instances"]
        got = brush(plain[0]["result"]) if plain else []
        checks["plain_model_version"] = plain[0]["model_version"] if plain else None
        checks["plain_masks_equal"] = (f"{sum(np.array_equal(m, w) for (_, m), w in zip(got, d2.pred_masks.numpy()))}"
                                       f"/{len(d2)} (stored {len(got)})")
        bad = predictions(by_file[bad_img["file_name"]]["id"])
        checks["bad_task_prediction"] = bad[0]["model_version"] if bad else None

        # interactive: one request per click through Label Studio, each result saved as an annotation
        times, direct, i_compared, i_equal = [], [], 0, 0
        for img in coco["images"][:args.tasks]:
            task = by_file[img["file_name"]]
            image = read_image(os.path.join(images, img["file_name"]), "BGR")
            pts, classes = clicks[img["file_name"]]
            for (x, y), c in zip(pts, classes):
                kp = {**keypoint_region(x, y, label_names[c],
                                        img["height"], img["width"], region_id=secrets.token_hex(5)),
                      "from_name": "kp", "is_positive": True, "origin": "manual"}
                t0 = time.perf_counter()
                st, res = http("POST", ls_url + f"/api/ml/{mid}/interactive-annotating",
                               {"task": task["id"], "context": {"result": [kp]}}, token)
                times.append(time.perf_counter() - t0)
                assert st == 200 and "data" in res, (st, res)
                t0 = time.perf_counter()  # the same request straight to the backend: its own share
                http("POST", backend_url + "/predict", {"tasks": [task], "label_config": project["label_config"],
                                                         "params": {"context": {"result": [kp]}}})
                direct.append(time.perf_counter() - t0)
                single = predictor(image, [[x, y]], [c])
                regions = res["data"]["result"]
                if single.no_mask[0]:
                    i_equal += not regions
                    i_compared += 1
                    continue
                st, ann = http("POST", ls_url + f"/api/tasks/{task['id']}/annotations", {"result": regions}, token)
                assert st == 201, (st, ann)
                _, back = http("GET", ls_url + f"/api/annotations/{ann['id']}", token=token)
                masks = brush(back["result"])
                i_equal += len(masks) == 1 and np.array_equal(masks[0][1], single.pred_masks[0].numpy())
                i_compared += 1
        checks["interactive_masks_equal"] = f"{i_equal}/{i_compared}"
        result["latency_s"]["first_click"] = round(times[0], 3)
        result["latency_s"]["click_median"] = round(statistics.median(times[1:]), 3)
        result["latency_s"]["click_max"] = round(max(times[1:]), 3)
        result["latency_s"]["clicks"] = len(times)
        result["latency_s"]["click_backend_alone_median"] = round(statistics.median(direct[1:]), 3)

        # a second retrieval: tasks predicted from clicks are not asked again; the plain one is
        http("POST", ls_url + f"/api/dm/actions?id=retrieve_tasks_predictions&project={pid}",
             {"selectedItems": {"all": True, "excluded": []}}, token)
        checks["after_second_retrieval"] = {
            "clicked task predictions": len(predictions(by_file[coco["images"][0]["file_name"]]["id"])),
            "plain task predictions": len(predictions(by_file[plain_img["file_name"]]["id"]))}
        ok = (equal == compared and i_equal == i_compared and len(got) == len(d2)
              and all(np.array_equal(m, w) for (_, m), w in zip(got, d2.pred_masks.numpy())))
        result["ok"] = bool(ok)
        result["load_avg_end"] = os.getloadavg()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    with open(os.path.join(work, "result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
