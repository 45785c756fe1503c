"""The Label Studio ML backend's work, without the web framework: :class:`Backend` answers the JSON bodies of
``/setup``, ``/predict`` and ``/versions`` (the protocol: docs/PREDICT.md, "Label Studio ML backend").

``/predict`` gets ``{"tasks": [task, ...], "project", "label_config", "params": {"context": ...}}`` and
answers ``{"results": [prediction, ...]}``, one prediction per task in task order, each ``{"result":
[regions], "score", "model_version"}`` (regions of :mod:`wssis_d2.formats.labelstudio`, from_name / to_name
from the request's labeling config):

* **interactive** (``context`` holds the labeler's keypoint(s), one task): one brush region per positive
  keypoint, the keypoint's class, the mask's score; a keypoint the model gives no mask adds nothing.
* **pre-annotation from clicks** (no context; the task's first annotation, else first prediction, holding
  keypoint regions): per keypoint its brush region and the keypoint itself; model_version :attr:`model_version`
  (what ``/setup`` answers: Label Studio then counts the task as predicted by this model).
* **plain pass** (no context, no keypoint in the task): the model's ordinary click-free inference, one brush
  region per detection (the config's score threshold, Matrix NMS, top-k), not refined by a MaskRefineNet
  (it refines clicked masks); model_version :attr:`model_version` + ``"/plain"``: Label Studio predicts such a
  task again on its next request, so clicks added later are used.

Bad input of a task (no image value, an unreadable image, a keypoint label that is not a category of the
model, a click outside the image or keypoints made on an image of another size): with one task (every
interactive request) HTTP 422 ``{"error": message, "task": id}``; in a batch the other tasks are predicted
and the bad one gets an empty prediction whose model_version is ``"error: <message>"`` (shown in Label
Studio's model-version column; not this model's version, so the task is predicted again once fixed). A
malformed request (no task list) is HTTP 400. The model runs under one lock: concurrent requests wait
their turn (the server queues them), none is dropped.
"""
import hashlib
import logging
import os
import threading
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..data.categories import contiguous_category_map
from ..formats.labelstudio import brush_region, object_regions, prediction
from ..predict.predictor import check_clicks
from ..utils.errors import WSSISInputError
from .images import ImageSource
from .tasks import Tags, keypoint_clicks, parse_label_config, task_keypoint_regions

__all__ = ["Backend", "RequestError", "model_version_of", "PLAIN_SUFFIX"]

logger = logging.getLogger(__name__)

PLAIN_SUFFIX = "/plain"  # model_version suffix of a click-free pass


class RequestError(Exception):
    """An HTTP error answer: ``status`` and the JSON ``body``."""

    def __init__(self, status: int, body: dict):
        super().__init__(body.get("error"))
        self.status, self.body = status, body


def model_version_of(weights: str, mrn_weights: Optional[str] = None) -> str:
    """``wssis-d2:<weights file stem>-<first 8 hex of its sha256>`` (+ ``+mrn-<8 hex>``): another checkpoint is
    another version, the same file the same on every start."""
    def digest(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:8]

    version = f"wssis-d2:{os.path.splitext(os.path.basename(weights))[0]}-{digest(weights)}"
    return version + (f"+mrn-{digest(mrn_weights)}" if mrn_weights else "")


class Backend:
    """Predictions of Label Studio tasks with one loaded model (module docstring).

    Args:
        predictor: a :class:`wssis_d2.PointPredictor`.
        categories: COCO categories of the model's classes (names are Label Studio's label values).
        images: the :class:`ImageSource` of the tasks' image URLs.
        model_version: the version ``/setup`` answers and click predictions carry.
    """

    def __init__(self, predictor, categories: Sequence[dict], images: ImageSource, model_version: str):
        self.predictor = predictor
        id_map = contiguous_category_map(categories)
        self.class_of: Dict[str, int] = {str(c["name"]): id_map[int(c["id"])] for c in categories}
        self.names: List[str] = [str(c["name"]) for c in sorted(categories, key=lambda c: int(c["id"]))]
        self.images = images
        self.model_version = model_version
        self.lock = threading.Lock()  # one model pass at a time
        self.counts = Counter()  # tasks predicted and task errors, shown by /health

    # ------------------------------------------------------------------ endpoints
    def health(self) -> dict:
        return {"status": "UP", "model_class": type(self).__name__, "model_version": self.model_version,
                "labels": self.names, "counts": dict(self.counts)}

    def setup(self, body: dict) -> dict:
        """``/setup``: checks the project's labeling config (``schema``), takes Label Studio's address and
        token (``hostname``, ``access_token``) where the environment gives none; answers the model version."""
        body = _json_object(body)
        try:
            tags = parse_label_config(body.get("schema"))
        except WSSISInputError as e:
            raise RequestError(422, {"error": str(e)}) from e
        if tags.labels is not None:
            missing = [n for n in self.names if n not in tags.labels]
            if missing:
                logger.warning(f"the labeling config's <BrushLabels name={tags.brush!r}> lacks {len(missing)} of the "
                               f"model's categories {missing}: Label Studio cannot show masks of those labels")
        self.images.use_setup(body.get("hostname"), body.get("access_token"))
        return {"model_version": self.model_version}

    def versions(self) -> dict:
        return {"versions": [self.model_version, self.model_version + PLAIN_SUFFIX]}

    def predict(self, body: dict) -> dict:
        """``/predict`` (module docstring). Raises :class:`RequestError` (400 / 422)."""
        body = _json_object(body)
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
            raise RequestError(400, {"error": "the request has no 'tasks' list of task objects"})
        try:
            tags = parse_label_config(body.get("label_config"))
        except WSSISInputError as e:
            raise RequestError(422, {"error": str(e)}) from e
        params = body.get("params") if isinstance(body.get("params"), dict) else {}
        context = params.get("context") or body.get("context")
        interactive = isinstance(context, dict) and bool(context.get("result"))
        if interactive and len(tasks) != 1:
            raise RequestError(400, {"error": "an interactive request (with context) holds one task, "
                                              f"not {len(tasks)}"})
        results, errors, t0 = [], [], time.perf_counter()
        for task in tasks:
            try:
                results.append(self._task(task, tags, context["result"] if interactive else None))
            except WSSISInputError as e:
                logger.warning(f"{e}")
                errors.append({"task": task.get("id"), "error": str(e)})
                results.append({"result": [], "score": 0.0, "model_version": f"error: {e}"})
        self.counts["tasks"] += len(tasks)
        self.counts["task errors"] += len(errors)
        logger.info(f"predict{' (interactive)' if interactive else ''}: {len(tasks)} task(s), {len(errors)} error(s), "
                    f"{time.perf_counter() - t0:.3f} s")
        if errors and len(tasks) == 1:
            raise RequestError(422, {"error": errors[0]["error"], "task": errors[0]["task"]})
        return {"results": results}

    # ------------------------------------------------------------------ one task
    def _task(self, task: dict, tags: Tags, context: Optional[list]) -> dict:
        tid = task.get("id")
        data = task.get("data")
        value = data.get(tags.data_key) if isinstance(data, dict) else None
        if not value:
            raise WSSISInputError(f"task {tid}: empty task: no image under data.{tags.data_key} (the labeling "
                                  f"config's <Image name={tags.image!r} value='${tags.data_key}'>)")
        clicks = keypoint_clicks(context if context is not None else task_keypoint_regions(task), tid)
        if clicks.num_negative:
            logger.info(f"task {tid}: {clicks.num_negative} negative keypoint(s) left out (this model takes one "
                        "positive click per object)")
        if context is not None and not len(clicks.ids):
            raise WSSISInputError(f"task {tid}: the interactive request's context holds no positive keypoint")
        unknown = [(i, n) for i, n in zip(clicks.ids, clicks.labels) if n not in self.class_of]
        if unknown:
            rid, name = unknown[0]
            raise WSSISInputError(f"task {tid}: keypoint region {rid!r}: label {name!r} is not a category of the "
                                  f"model {self.names} ({len(unknown)} such keypoint(s))")
        image = self.images(value, tid)
        h, w = image.shape[:2]
        if not len(clicks.ids):
            return self._plain(image, tid, tags)
        if clicks.size != (h, w):
            raise WSSISInputError(f"task {tid}: the keypoints were made on an image of {clicks.size[1]} x "
                                  f"{clicks.size[0]} (original_width x original_height), the image {value!r} "
                                  f"is {w} x {h}")
        classes = np.array([self.class_of[n] for n in clicks.labels], np.int64)
        _check_clicks(clicks, classes, (h, w), self.predictor.num_classes, tid)
        with self.lock:
            out = self.predictor(image, clicks.points, classes)
        masks, scores, no_mask = out.pred_masks.cpu().numpy(), out.scores.tolist(), out.no_mask.tolist()
        if any(no_mask):
            logger.info(f"task {tid}: {sum(no_mask)} of {len(no_mask)} click(s) got no mask from the model")
        regions = []
        for k, (rid, label) in enumerate(zip(clicks.ids, clicks.labels)):
            if context is not None:  # interactive: the mask only, the keypoint is the labeler's
                if not no_mask[k]:
                    regions.append(brush_region(masks[k], label, region_id=f"{rid}_mask", score=scores[k]))
                continue
            regions += object_regions(None if no_mask[k] else masks[k], label, region_id=f"{rid}_mask", height=h,
                                      width=w, click=clicks.points[k], score=scores[k])
        return prediction(_retag(regions, tags), model_version=self.model_version)

    def _plain(self, image: np.ndarray, tid, tags: Tags) -> dict:
        """The click-free pass: the model's ordinary inference on the predictor's test-time input."""
        h, w = image.shape[:2]
        with self.lock:
            inputs = self.predictor.mapper.map_image({"height": h, "width": w}, image)
            with torch.no_grad():
                inst = self.predictor.model([inputs])[0]["instances"].to("cpu")
        masks, scores, classes = inst.pred_masks.numpy(), inst.scores.tolist(), inst.pred_classes.tolist()
        regions = [brush_region(m, self.names[c], region_id=f"{tid}_{k}", score=s)
                   for k, (m, s, c) in enumerate(zip(masks, scores, classes))]
        return prediction(_retag(regions, tags), model_version=self.model_version + PLAIN_SUFFIX)


def _json_object(body) -> dict:
    if not isinstance(body, dict):
        raise RequestError(400, {"error": "the request body is not a JSON object"})
    return body


def _retag(regions: List[dict], tags: Tags) -> List[dict]:
    """Regions with the config's tag names (brush: tags.brush; keypoints: tags.keypoint, or left out when the
    config has no keypoint tag on the image)."""
    out = []
    for r in regions:
        name = tags.brush if r["type"] == "brushlabels" else tags.keypoint
        if name is not None:
            out.append({**r, "from_name": name, "to_name": tags.image})
    return out


def _check_clicks(clicks, classes, image_hw, num_classes: int, tid) -> None:
    """The predictor's click checks, the first bad click named by its keypoint region id."""
    try:
        check_clicks(clicks.points, classes, image_hw, num_classes)
    except WSSISInputError:
        for rid, p, c in zip(clicks.ids, clicks.points, classes):  # error path only: find the region
            try:
                check_clicks(p[None], c[None], image_hw, num_classes)
            except WSSISInputError as e:
                raise WSSISInputError(f"task {tid}: keypoint region {rid!r}: {e}") from e
        raise
