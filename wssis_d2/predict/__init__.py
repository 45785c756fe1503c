"""Click-to-mask with a trained model: :class:`PointPredictor` (Python) and the folder run of
``tools/predict.py`` (:func:`predict_points`). See docs/PREDICT.md."""
from .clicks import CLICK_FORMATS, export_points, load_categories, single_image_points
from .predictor import CLICK_MODES, PointPredictor
from .run import PREDICTIONS, predict_points

__all__ = ["CLICK_FORMATS", "CLICK_MODES", "PREDICTIONS", "PointPredictor", "export_points", "load_categories",
           "predict_points", "single_image_points"]
