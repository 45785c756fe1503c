"""DATA.KIND custom: the input scale and tiles chosen from DATA.CUSTOM.FULL_JSON
(``wssis_d2.data.scale_choice``), as model-config OPTS of the stages.

The data stage calls :func:`run_scale_choice`: it reads FULL_JSON, chooses for the model config of each
SOLOv2 node (TEACHER, whose choice its exports use too; STUDENT; FULL_100), logs one block and returns
what the data marker and ``results.json["scale_choice"]`` hold. Each model stage gets its node's OPTS
through :func:`auto_opts` (``spec["auto_opts"]``); ``stage_cfg`` merges them before the node's OPTS, or
leaves all of them out when those OPTS (or PSEUDO.OPTS, for the exports) set a key that
:func:`explicit_input_keys` names: the user's sizes win, as a whole.

The choice is made once, by the data stage, and kept in its marker: a resumed run keeps it (delete
``OUTPUT_DIR/data`` to choose again). ``DATA.CUSTOM.AUTO_SCALE False`` turns it off, also on resume.
"""
import dataclasses
import logging
import os
from collections import Counter
from typing import List, Mapping, Sequence

from detectron2.config import get_cfg

from ..config import add_wssis_config
from ..data.json_io import load_json
from ..data.scale_choice import (ModelFacts, choose_scale, click_stats, coco_size_stats, detection_cap_opts,
                                 format_choice)
from .config import REPO_ROOT, node_values

__all__ = ["INPUT_SIZE_KEYS", "NODES", "auto_opts", "explicit_input_keys", "run_scale_choice"]

logger = logging.getLogger(__name__)

# Model-config keys the choice sets (with every INPUT.TILE.* key); one of them in a node's OPTS keeps the
# whole choice off that node.
INPUT_SIZE_KEYS = ("INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST")
# SOLOv2 nodes that get a choice -> what runs with it.
NODES = {"TEACHER": "teacher and its exports", "STUDENT": "students", "FULL_100": "100% model"}


def explicit_input_keys(opts: Sequence) -> List[str]:
    """The INPUT size / tile keys among the KEY VALUE pairs ``opts``."""
    keys = [str(k) for k in list(opts)[0::2]]
    return [k for k in keys if k in INPUT_SIZE_KEYS or k.startswith("INPUT.TILE")]


def auto_opts(pcfg, records: Mapping[str, dict], node: str) -> list:
    """The chosen OPTS of ``node`` from the data stage's marker (``records["data"]``): input scale / tiles,
    then the detection cap for dense images (``detection_opts``); [] unless DATA.KIND is custom with
    DATA.CUSTOM.AUTO_SCALE on. Exports use node TEACHER."""
    if pcfg.DATA.KIND != "custom" or not pcfg.DATA.CUSTOM.AUTO_SCALE:
        return []
    choice = ((records.get("data") or {}).get("metrics") or {}).get("scale_choice") or {}
    entry = (choice.get("nodes") or {}).get(node) or {}
    return list(entry.get("opts") or []) + list(entry.get("detection_opts") or [])


def _short(path: str) -> str:
    return os.path.relpath(path, REPO_ROOT) if path.startswith(REPO_ROOT + os.sep) else path


def _verdict(choice, explicit: List[str], where: str) -> str:
    if not choice.opts:
        return "nothing applied"
    if explicit:
        return (f"NOT applied: {where} set {', '.join(explicit)} (explicit OPTS win; the model config's other input "
                "sizes stay)")
    return "applied: " + " ".join(str(v) for v in choice.opts)


def run_scale_choice(pcfg) -> dict:
    """Choose for every node of ``NODES`` from FULL_JSON, log it, and return ``{"enabled": bool, "full_json":
    path, "nodes": {node: ScaleChoice fields + "config", "applied", "explicit_keys" (INPUT keys of the node's
    OPTS)}}``, TEACHER with "exports_applied" and "exports_explicit_keys" (PSEUDO.OPTS) too
    (``{"enabled": False}`` with AUTO_SCALE off)."""
    if not pcfg.DATA.CUSTOM.AUTO_SCALE:
        logger.info("Input scale: DATA.CUSTOM.AUTO_SCALE is False: every stage uses its model config's input sizes "
                    "and its OPTS")
        return {"enabled": False}
    full_json = pcfg.DATA.CUSTOM.FULL_JSON
    image_hw, sizes, counts = coco_size_stats(load_json(full_json))
    points = load_json(pcfg.DATA.CUSTOM.POINTS_JSON)
    clicks = Counter(a.get("image_id") for a in points.get("annotations") or [])
    densest = max(list(counts) + list(clicks.values()) + [0])
    spacing = click_stats(points)  # density and spacing from the clicks when FULL_JSON has few instances
    nodes, lines, warnings, seen, detection_lines = {}, [], [], {}, []
    for node, what in NODES.items():
        config_file, _, _, node_opts = node_values(pcfg, node)
        cfg = get_cfg()
        add_wssis_config(cfg)
        cfg.merge_from_file(config_file)
        # the node's other OPTS may change grids or ranges; its INPUT keys (if any) win over the choice anyway
        cfg.merge_from_list([x for k, v in zip(node_opts[0::2], node_opts[1::2]) if not explicit_input_keys([k])
                             for x in (k, v)])
        facts = ModelFacts.from_cfg(cfg)
        choice = choose_scale(image_hw, sizes, counts, facts, clicks=spacing)
        explicit = explicit_input_keys(node_opts)
        entry = dict(dataclasses.asdict(choice), config=config_file, applied=bool(choice.opts) and not explicit,
                     explicit_keys=explicit, densest_image=densest,
                     detection_opts=detection_cap_opts(densest, cfg.MODEL.SOLOV2.MAX_PER_IMG, cfg.MODEL.SOLOV2.NMS_PRE))
        if entry["detection_opts"]:
            detection_lines.append(f"  {node}: MODEL.SOLOV2.MAX_PER_IMG {cfg.MODEL.SOLOV2.MAX_PER_IMG} -> "
                                   f"{entry['detection_opts'][1]}, NMS_PRE {cfg.MODEL.SOLOV2.NMS_PRE} -> "
                                   f"{entry['detection_opts'][3]}")
        verdict = _verdict(choice, explicit, "its OPTS")
        if node == "TEACHER":  # the exports add PSEUDO.OPTS
            exports = explicit or explicit_input_keys(list(pcfg.PSEUDO.OPTS))
            entry.update(exports_applied=bool(choice.opts) and not exports, exports_explicit_keys=exports)
            if exports != explicit:
                verdict += "; exports: " + _verdict(choice, exports, "PSEUDO.OPTS")
        nodes[node] = entry
        if not lines:
            lines.append(f"  {format_choice(choice)[0]}")
        same = seen.get((config_file, facts, choice.opts))
        if same or explicit:
            lines.append(f"  {node} ({what}): " + (f"same model config and choice as {same}; " if same else "")
                         + verdict)
            continue
        seen[(config_file, facts, choice.opts)] = node
        lines.append(f"  {node} ({what}), {_short(config_file)}: {facts.design_side}-px design input, grids "
                     f"{list(facts.num_grids)}, scale ranges {[[int(lo), int(hi)] for lo, hi in facts.scale_ranges]}")
        lines.append(f"    {format_choice(choice)[1]}")
        lines += [f"    why: {r}" for r in choice.reasons]
        lines.append(f"    -> {verdict}")
        warnings += [w for w in choice.warnings if w not in warnings]
    logger.info(f"Input scale from {full_json} (DATA.CUSTOM.AUTO_SCALE; rule: wssis_d2/data/scale_choice.py):\n"
                + "\n".join(lines))
    for w in warnings:
        logger.warning(f"Input scale: {w}")
    if detection_lines:
        logger.info(f"Detections per image: the densest image has {densest} objects (FULL_JSON instances, "
                    f"POINTS_JSON clicks); so that every one can be kept and scored "
                    f"(wssis_d2/data/scale_choice.py detection_cap_opts, applied even with explicit input sizes; "
                    f"a node's OPTS win):\n" + "\n".join(detection_lines))
    return {"enabled": True, "full_json": full_json, "nodes": nodes}
