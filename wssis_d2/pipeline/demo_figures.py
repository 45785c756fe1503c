"""What ``tools/demo.py`` shows a person: the model rows beside the paper's, one picture comparing the
pseudo-labels of a few point images, and a bar plot of the model rows.

- :func:`paper_table`: markdown, per model row our segm AP and its ratio to our 100% model beside the
  published COCO 5% AP and its ratio to the published 100% model (the datasets differ: compare ratios).
- :func:`draw_comparison`: one PNG, a row per point image, a column per kind (points, threshold masks,
  adaptive pseudo-labels, refined ones, true masks), each drawn with detectron2's ``Visualizer``
  (:func:`wssis_d2.utils.visualize.draw_instances`).
- :func:`plot_model_rows`: one PNG, bars of the model rows' AP / 100% model (ours and the paper's).

Figures use matplotlib's object API with the Agg canvas (no global backend change) and are written
atomically (tmp file, then rename).
"""
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..data.images import read_image
from ..data.json_io import load_json
from ..utils.visualize import draw_instances, instances_of_annotations
from .config import MODEL_ROWS
from .results import MODEL_LABELS, model_ratios

__all__ = ["PAPER_5P", "paper_table", "draw_comparison", "plot_model_rows"]

# Published mask AP at 5% full labels (METHOD.md section 7: COCO test-dev, ResNet-101); full_100 = 100%.
PAPER_5P = {"teacher": 20.1, "student_threshold": 22.8, "student_points": 29.0, "student_points_mrn": 33.7,
            "full_100": 39.7}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def paper_table(models: Mapping[str, Optional[float]], percent: float) -> str:
    """Markdown table: model row, our segm AP (``results.json["models"]``) and its ratio to our 100%
    model, the paper's 5% AP and its ratio to the paper's 100% model. AP on generated shapes and on COCO
    are not one scale; the ratios are the comparable part."""
    ours, paper = model_ratios(models), model_ratios(PAPER_5P)
    lines = [f"| model | ours ({percent:g}% shapes) | / 100% | paper (COCO 5%, R-101) | / 100% |",
             "|---|---|---|---|---|"]
    for row in MODEL_ROWS:
        ratio = "-" if ours[row] is None else f"{ours[row]:.2f}"
        lines.append(f"| {MODEL_LABELS[row]} | {_fmt(models.get(row))} | {ratio} | {PAPER_5P[row]:.1f} | "
                     f"{paper[row]:.2f} |")
    return "\n".join(lines)


def _by_image(coco: dict) -> Dict[int, List[dict]]:
    out: Dict[int, List[dict]] = {}
    for ann in coco.get("annotations", []):
        out.setdefault(ann["image_id"], []).append(ann)
    return out


def _save_figure(fig, path: str) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    return path


def draw_comparison(images_json: str, columns: Sequence[Tuple[str, str]], output_path: str,
                    num_images: int = 4, cell_px: int = 256) -> str:
    """Draw ``num_images`` images of ``images_json`` (the first ones with annotations, by image id) as
    rows, with the annotations of each json of ``columns`` ((title, json path), by image id) as columns.

    Args:
        images_json: COCO json whose ``images`` (and ``info["image_root"]``) give the pictures, e.g. the
            points file.
        columns: e.g. [("points", points.json), ("threshold", ...), ..., ("true masks", points_gt.json)].
        cell_px: side of one drawn cell in pixels.

    Returns:
        output_path (a PNG).
    """
    from matplotlib.figure import Figure

    base = load_json(images_json)
    root = (base.get("info") or {}).get("image_root") or ""
    loaded = [(title, load_json(path)) for title, path in columns]
    anns = [_by_image(coco) for _, coco in loaded]
    names = [{c["id"]: c.get("name", str(c["id"])) for c in coco.get("categories", [])} for _, coco in loaded]
    have = _by_image(base)
    images = [im for im in sorted(base["images"], key=lambda im: im["id"]) if have.get(im["id"])][:num_images]
    if not images:
        raise ValueError(f"{images_json}: no image with annotations to draw")
    rows, cols = len(images), len(columns)
    inch = cell_px / 100.0
    fig = Figure(figsize=(inch * cols, inch * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, im in enumerate(images):
        image = read_image(os.path.join(root, im["file_name"]), "RGB", im["id"])
        h, w = image.shape[:2]
        for c, (title, _) in enumerate(loaded):
            insts = instances_of_annotations(anns[c].get(im["id"], []), h, w,
                                             lambda k, n=names[c]: n.get(k, str(k)))
            ax = axes[r][c]
            ax.imshow(draw_instances(image, insts, scale=max(1.0, cell_px / max(h, w))))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"image {im['id']}", fontsize=8)
    fig.subplots_adjust(left=0.03, right=0.995, top=1 - 0.3 / (inch * rows + 0.4), bottom=0.005,
                        wspace=0.02, hspace=0.02)
    return _save_figure(fig, output_path)


def plot_model_rows(models: Mapping[str, Optional[float]], output_path: str, percent: float,
                    title: str = "PointWSSIS: each model's mask AP / the 100% model's") -> str:
    """Bar plot of the model rows' AP / the 100% model's AP (ours: rows with a value, needs full_100),
    each beside the paper's 5% ratio: AP on shapes and on COCO are not one scale, ratios compare."""
    from matplotlib.figure import Figure

    ours, paper = model_ratios(models), model_ratios(PAPER_5P)
    rows = [r for r in MODEL_ROWS if ours[r] is not None]
    ylabel = "mask AP / AP of the 100% model"
    if not rows:  # no 100% model (or its AP is 0): our AP alone, nothing to set beside the paper's
        rows = [r for r in MODEL_ROWS if models.get(r) is not None]
        if not rows:
            raise ValueError("no model row has a value to plot")
        ours, paper, ylabel = dict(models), None, "mask AP (no 100% model to compare with: no ratios)"
    x = np.arange(len(rows))
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    bars = ax.bar(x - 0.2, [ours[r] for r in rows], 0.4, label=f"ours ({percent:g}% shapes)")
    if paper is not None:
        ax.bar(x + 0.2, [paper[r] for r in rows], 0.4, label="paper (COCO 5%, R-101)", color="0.75")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(x, [MODEL_LABELS[r].replace(": ", ":\n").replace(" (", "\n(") for r in rows], fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save_figure(fig, output_path)
