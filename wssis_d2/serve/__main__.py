"""``python -m wssis_d2.serve``: the Label Studio ML backend of a trained model (docs/PREDICT.md).

    python -m wssis_d2.serve --config-file configs/CPU/SOLOv2_tiny.yaml --weights student.pth \\
        --categories labels.json [--image-root DIR] [--host 127.0.0.1] [--port 9090] \\
        [--mrn-config configs/MRN/MRN_R18_cpu.yaml --mrn-weights mrn.pth] [KEY VALUE ...]
    python -m wssis_d2.serve ... --print-config   # the labeling config to paste into Label Studio

Then in Label Studio: project Settings > Model > Connect Model, URL ``http://<host>:<port>``, "Interactive
preannotations" on. Label names are the categories' names: ``--categories`` (a COCO json, normally the
training labels), else the json registered for the config's first ``DATASETS.TRAIN`` name in
``DATASETS.WSSIS_REGISTER``, else the class indices "0".."N-1". Images: ``--image-root``, else fetched from
``LABEL_STUDIO_URL`` with ``LABEL_STUDIO_API_KEY`` (environment). Trailing ``KEY VALUE`` pairs override
the model config (e.g. ``MODEL.DEVICE cuda``). The model is loaded once; requests are served by waitress
(``--threads`` connections at once, more wait in its queue) and run the model one at a time.
"""
import argparse
import logging
from typing import Optional

from detectron2.utils.logger import setup_logger

from ..formats.labelstudio import labeling_config
from ..predict import PointPredictor, load_categories
from ..predict.config import add_model_arguments, model_configs
from ..utils.errors import WSSISInputError, run_cli
from .app import create_app
from .backend import Backend, model_version_of
from .images import ImageSource


def get_parser():
    p = argparse.ArgumentParser(prog="python -m wssis_d2.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--categories", default=None, help="COCO json whose categories the model was trained on")
    p.add_argument("--image-root", default=None, help="read the tasks' images from this folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=9090, help="port to listen on")
    p.add_argument("--threads", type=int, default=4, help="connections served at once (the model runs one at a time)")
    p.add_argument("--print-config", action="store_true", help="print the labeling config and exit")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="model config overrides KEY VALUE ...")
    return p


def registered_categories_json(cfg) -> Optional[str]:
    """The json ``DATASETS.WSSIS_REGISTER`` registers for the first ``DATASETS.TRAIN`` name, or None."""
    train = list(cfg.DATASETS.TRAIN)
    for entry in cfg.DATASETS.WSSIS_REGISTER:
        if train and len(entry) >= 2 and entry[0] == train[0]:
            return entry[1]
    return None


def build_backend(args) -> Backend:
    """The model (loaded once), its categories and the image source of the parsed ``args``."""
    cfg, mrn_cfg = model_configs(args)
    categories = load_categories(args.categories or registered_categories_json(cfg), cfg.MODEL.SOLOV2.NUM_CLASSES)
    predictor = PointPredictor(cfg, mrn_cfg)
    images = ImageSource(args.image_root, predictor.input_format)
    return Backend(predictor, categories, images, model_version_of(args.weights, args.mrn_weights))


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="wssis_d2", abbrev_name="wssis")
    logger = logging.getLogger("wssis_d2.serve")
    backend = build_backend(args)
    if args.print_config:
        print(labeling_config(backend.names, smart=True), end="")
        return backend
    try:
        import waitress
    except ImportError as e:
        raise WSSISInputError("serving needs waitress (and Flask): pip install 'wssis-d2[serve]'") from e
    logger.info(f"Label Studio ML backend {backend.model_version} on http://{args.host}:{args.port} "
                f"(labels {backend.names}; images from "
                f"{args.image_root or backend.images.url or 'LABEL_STUDIO_URL (not set yet)'})")
    waitress.serve(create_app(backend), host=args.host, port=args.port, threads=args.threads)
    return backend


if __name__ == "__main__":
    run_cli(main)
