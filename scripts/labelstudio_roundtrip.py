#!/usr/bin/env python
"""Round trip through a running Label Studio (started by scripts/labelstudio_roundtrip.sh): masks -> our task
file (wssis_d2.formats.labelstudio) -> Label Studio's API (project with our labeling config, tasks imported
with their predictions, each prediction copied into an annotation as a user accepting it would) -> Label
Studio's JSON export -> masks, compared with the masks that went out. Brush and polygon projects.

Prints one line per check and writes ``<output>/roundtrip.json``; exit status 1 if a mask differs.
Only the standard library talks to Label Studio (urllib), on the URL given (127.0.0.1).
"""
import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from wssis_d2.data.coco_masks import mask_annotation  # noqa: E402
from wssis_d2.formats.labelstudio import export_labelstudio, task_objects  # noqa: E402

H, W = 48, 64


def hard_case():
    """(masks (N, H, W) bool, COCO dict): a hole, two parts, parts touching at a corner, touching and
    overlapping objects, a 1-px object, objects on the image border."""
    masks = np.zeros((9, H, W), bool)
    masks[0, 2:14, 2:14] = True
    masks[0, 5:10, 5:10] = False                               # a hole
    masks[1, 2:6, 20:24] = masks[1, 10:14, 20:24] = True       # two parts
    masks[2, [20, 21, 22], [40, 41, 42]] = True                # touching at corners
    masks[3, 20:28, 2:10] = True                               # touching objects
    masks[4, 20:28, 10:18] = True
    masks[5, 30:40, 24:36] = True                              # overlapping objects
    masks[6, 34:44, 30:42] = True
    masks[7, 0, W - 1] = True                                  # 1 px on the border
    masks[8, 40:H, 0:6] = True                                 # on the border
    anns = []
    for k, m in enumerate(masks):
        a = mask_annotation(m, k + 1, 1, 1 + k % 2)
        r, c = np.argwhere(m)[0]
        a.update(score=round(0.5 + 0.05 * k, 2), point=[c + 0.5, r + 0.5])
        anns.append(a)
    coco = {"images": [{"id": 1, "file_name": "roundtrip.png", "height": H, "width": W}],
            "categories": [{"id": 1, "name": "nucleus"}, {"id": 2, "name": "cell"}], "annotations": anns}
    return masks, coco


class Client:
    """Label Studio's REST API with a legacy token (urllib only)."""

    def __init__(self, url, token):
        self.url, self.headers = url.rstrip("/"), {"Authorization": f"Token {token}",
                                                   "Content-Type": "application/json"}

    def __call__(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def wait(self, timeout=900):
        """The server's version, once it has answered 3 times in a row (it answers once while still starting)."""
        t0, streak = time.time(), 0
        while time.time() - t0 < timeout:
            try:
                version = self("GET", "/api/version")
                streak += 1
                if streak == 3:
                    return version
            except (urllib.error.URLError, OSError):
                streak = 0
            time.sleep(5)
        raise SystemExit(f"Label Studio did not answer at {self.url} within {timeout} s")


def compare(name, objs, masks, expected_ids):
    got = {o["id"]: o["mask"] for o in objs}
    ok = sorted(got) == sorted(expected_ids) and all(np.array_equal(got[i], masks[int(i) - 1]) for i in expected_ids)
    n_px = sum(int((got[i] != masks[int(i) - 1]).sum()) for i in expected_ids if i in got)
    print(f"{name}: {len(got)} objects back, {'identical' if ok else 'DIFFERENT'} masks ({n_px} pixels differ)")
    return {"check": name, "objects": len(got), "identical": bool(ok), "pixels_differing": n_px}


def filled(mask):
    pad = np.pad(mask, 1).astype(np.uint8)
    cv2.floodFill(pad, None, (0, 0), 2)
    return (pad != 2)[1:-1, 1:-1]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--ls-version", default="?")
    args = p.parse_args()
    ls = Client(args.url, args.token)
    version = ls.wait()
    masks, coco = hard_case()
    cv2.imwrite(os.path.join(args.output, "roundtrip.png"), np.full((H, W, 3), 90, np.uint8))
    ids = [str(a["id"]) for a in coco["annotations"]]
    results = []
    for polygons in (False, True):
        kind = "polygons" if polygons else "brush"
        folder = os.path.join(args.output, kind)
        counts = export_labelstudio(coco, folder, polygons=polygons)
        config = open(os.path.join(folder, "labeling_config.xml")).read()
        tasks = json.load(open(os.path.join(folder, "tasks.json")))
        project = ls("POST", "/api/projects", {"title": f"wssis-d2 round trip ({kind})", "label_config": config})
        imported = ls("POST", f"/api/projects/{project['id']}/import", tasks)
        print(f"{kind}: project {project['id']}, import {imported.get('task_count')} tasks, "
              f"{imported.get('prediction_count')} predictions; export counts {dict(counts)}")
        task_list = ls("GET", f"/api/tasks?project={project['id']}")
        task_list = task_list["tasks"] if isinstance(task_list, dict) else task_list
        for t in task_list:
            preds = ls("GET", f"/api/predictions?task={t['id']}")
            preds = preds["results"] if isinstance(preds, dict) else preds
            want = masks if not polygons else np.stack([filled(m) for m in masks])
            results.append(compare(f"{kind}: predictions as Label Studio stores them", task_objects(
                {"predictions": preds}), want, ids))
            ls("POST", f"/api/tasks/{t['id']}/annotations", {"result": preds[0]["result"]})
        export = ls("GET", f"/api/projects/{project['id']}/export?exportType=JSON&download_all_tasks=true")
        with open(os.path.join(folder, "label_studio_export.json"), "w") as f:
            json.dump(export, f)
        want = masks if not polygons else np.stack([filled(m) for m in masks])
        results.append(compare(f"{kind}: annotations in Label Studio's JSON export",
                               task_objects(export[0], "annotations"), want, ids))
        kinds = sorted({r["type"] for r in export[0]["annotations"][0]["result"]})
        print(f"{kind}: exported region types {kinds}")
    summary = {"label_studio": args.ls_version, "api_version": version, "image": [H, W],
               "objects": len(masks), "results": results, "all_identical": all(r["identical"] for r in results)}
    with open(os.path.join(args.output, "roundtrip.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"Label Studio {args.ls_version}: {'all masks identical' if summary['all_identical'] else 'MASKS DIFFER'}")
    return 0 if summary["all_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
