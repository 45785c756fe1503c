"""The Flask app of the Label Studio ML backend: the routes Label Studio calls (``ml/api_connector.py`` of
Label Studio) onto a :class:`~wssis_d2.serve.backend.Backend`.

=================  ==========================================================================================
``GET /health``    ``{"status": "UP", "model_class", "model_version", "labels"}`` (also ``GET /``)
``POST /setup``    ``{"project", "schema", "hostname", "access_token", "extra_params"}`` -> ``{"model_version"}``
``POST /predict``  ``{"tasks", "project", "label_config", "params": {"context"}}`` -> ``{"results": [...]}``
``GET /versions``  ``{"versions": [...]}``
``POST /webhook``  training events: this backend does not train here (``python -m wssis_d2.pipeline`` does):
                   200 ``{"status": "ignored"}``
``GET /metrics``   ``{}``
=================  ==========================================================================================

Errors are JSON ``{"error": message, ...}``: 400 a malformed request, 422 a task that cannot be predicted
(:mod:`.backend`), 500 an unexpected failure (logged with its traceback; the server keeps running).
"""
import logging

from flask import Flask, jsonify, request

from .backend import Backend, RequestError

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(backend: Backend) -> Flask:
    """A Flask app answering Label Studio's ML backend requests with ``backend``."""
    app = Flask("wssis_d2.serve")

    def body() -> dict:
        data = request.get_json(silent=True)
        if data is None:
            raise RequestError(400, {"error": "the request body is not JSON (Content-Type: application/json)"})
        return data

    @app.get("/")
    @app.get("/health")
    def health():
        return jsonify(backend.health())

    @app.post("/setup")
    def setup():
        return jsonify(backend.setup(body()))

    @app.post("/predict")
    def predict():
        return jsonify(backend.predict(body()))

    @app.get("/versions")
    def versions():
        return jsonify(backend.versions())

    @app.post("/webhook")
    def webhook():
        data = request.get_json(silent=True) or {}
        logger.info(f"webhook {data.get('action')!r} ignored: this backend does not train")
        return jsonify({"status": "ignored"})

    @app.get("/metrics")
    def metrics():
        return jsonify({})

    @app.errorhandler(RequestError)
    def request_error(e: RequestError):
        return jsonify(e.body), e.status

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        code = getattr(e, "code", None)
        if isinstance(code, int) and 400 <= code < 500:  # werkzeug's own (404, 405, ...)
            return jsonify({"error": str(e)}), code
        logger.exception(f"{request.method} {request.path} failed")
        return jsonify({"error": f"{type(e).__name__}: {e}"}), 500

    return app
