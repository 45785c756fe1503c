"""A Label Studio ML backend served from a trained model (``python -m wssis_d2.serve``, docs/PREDICT.md).

:mod:`.backend` answers the protocol's JSON (setup, predict: pre-annotation and interactive), :mod:`.app`
is its Flask app, :mod:`.images` reads a task's image (a folder or Label Studio's URLs), :mod:`.tasks`
reads the labeling config and the keypoints; ``__main__`` loads the model once and serves the app.
Needs the optional extra ``serve`` (Flask, waitress).
"""
from .backend import Backend, RequestError, model_version_of
from .images import ImageSource

__all__ = ["Backend", "ImageSource", "RequestError", "model_version_of"]
