"""The image of a Label Studio task: from a folder (``--image-root``) or fetched from Label Studio.

A task's image value (``task["data"][<Image tag's value key>]``) is a URL as Label Studio writes it:

* ``/data/local-files/?d=<path>``: a file of Label Studio's local-files storage, ``<path>`` relative to
  its document root (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``);
* ``/data/upload/<project>/<name>``: a file uploaded into Label Studio;
* ``http(s)://...``: any URL (Label Studio's own, with its host, or another server's);
* a plain path (``sub/a.png``).

With an image root the image is read from that folder: the ``d`` path of a local-files URL, a relative
path, or the file name (last path part) under the root, the first that exists; a path that leaves the
root (``..``, absolute) is refused. Without one, a URL relative to Label Studio (``/data/...``) is fetched
from ``LABEL_STUDIO_URL`` with the API key ``LABEL_STUDIO_API_KEY`` (environment; else the host name and
token Label Studio sends to ``/setup``), as is an absolute URL on that host; an absolute URL of another
host is fetched without the key. The key is sent as ``Authorization: Token <key>``, or, when it is a
personal access token (a JWT), exchanged once at ``/api/token/refresh`` for an access token sent as
``Bearer``. Every failure is a :class:`WSSISInputError` naming the URL.
"""
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

import numpy as np

from ..data.images import decode_image
from ..utils.errors import WSSISInputError

__all__ = ["ImageSource", "LOCAL_FILES_PATH", "local_relative_path"]

logger = logging.getLogger(__name__)

LOCAL_FILES_PATH = "/data/local-files/"  # Label Studio's local-files view
TIMEOUT_S = 30.0  # one image download


def local_relative_path(url: str) -> Optional[str]:
    """The ``d`` path of a local-files URL (``/data/local-files/?d=sub/a.png`` -> ``sub/a.png``), else None."""
    parsed = urllib.parse.urlparse(url)
    if not parsed.path.endswith(LOCAL_FILES_PATH):
        return None
    values = urllib.parse.parse_qs(parsed.query, keep_blank_values=True).get("d")
    return values[-1] if values else ""


def _is_jwt(token: str) -> bool:
    """Whether ``token`` looks like a JSON Web Token (three base64url parts, the first a JSON header)."""
    import base64

    parts = token.split(".")
    if len(parts) != 3:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except ValueError:
        return False
    return isinstance(header, dict) and "alg" in header


class ImageSource:
    """Reads the image of a task's URL (module docstring) as an (H, W, 3) uint8 array in ``image_format``.

    Args:
        image_root: read images from this folder instead of fetching them.
        image_format: ``INPUT.FORMAT`` of the model ("BGR", "RGB").
        url, api_key: Label Studio's address and API key; default: the environment's
            ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY``.
    """

    def __init__(self, image_root: Optional[str] = None, image_format: str = "BGR", *, url: Optional[str] = None,
                 api_key: Optional[str] = None):
        self.image_root = os.path.realpath(image_root) if image_root else None
        if self.image_root and not os.path.isdir(self.image_root):
            raise WSSISInputError(f"--image-root {image_root}: no such folder")
        self.image_format = image_format
        self.url = (url or os.environ.get("LABEL_STUDIO_URL") or "").rstrip("/")
        self.api_key = api_key or os.environ.get("LABEL_STUDIO_API_KEY") or ""
        self._access: Optional[str] = None  # access token of a personal access token

    def use_setup(self, hostname: Optional[str], access_token: Optional[str]) -> None:
        """Label Studio's own address and token as sent to ``/setup``: used where the environment gives none."""
        if hostname and not self.url:
            self.url = str(hostname).rstrip("/")
        if access_token and not self.api_key:
            self.api_key = str(access_token)

    def __call__(self, value: str, task_id=None) -> np.ndarray:
        """The image of the task's image value ``value`` (a URL or path); ``task_id`` for the messages."""
        if not isinstance(value, str) or not value.strip():
            raise WSSISInputError(f"task {task_id}: no image URL in the task's data ({value!r})")
        if self.image_root:
            path = self._under_root(value, task_id)
            with open(path, "rb") as f:
                data = f.read()
            return decode_image(data, self.image_format, f"task {task_id}: image {path}")
        return decode_image(self._fetch(value, task_id), self.image_format, f"task {task_id}: image {value}")

    # ------------------------------------------------------------------ folder
    def _under_root(self, value: str, task_id) -> str:
        parsed = urllib.parse.urlparse(value)
        relative = local_relative_path(value)
        candidates = [relative] if relative is not None else []
        if not parsed.scheme and relative is None:
            candidates.append(urllib.parse.unquote(parsed.path))
        candidates.append(os.path.basename(urllib.parse.unquote(parsed.path if relative is None else relative)))
        for rel in candidates:
            if not rel:
                continue
            path = os.path.realpath(os.path.join(self.image_root, rel.lstrip("/")))
            if os.path.commonpath([path, self.image_root]) != self.image_root:
                raise WSSISInputError(f"task {task_id}: image {value!r} is outside --image-root {self.image_root}")
            if os.path.isfile(path):
                return path
        raise WSSISInputError(f"task {task_id}: image {value!r} not found under --image-root {self.image_root} "
                              f"(tried {[c for c in candidates if c]})")

    # ------------------------------------------------------------------ Label Studio
    def _absolute(self, value: str, task_id) -> str:
        if urllib.parse.urlparse(value).scheme in ("http", "https"):
            return value
        if not value.startswith("/"):
            raise WSSISInputError(f"task {task_id}: image {value!r} is a path, not a URL: start the backend "
                                  "with --image-root DIR to read such images from DIR")
        if not self.url:
            raise WSSISInputError(f"task {task_id}: image {value!r} is on Label Studio, whose address is unknown: "
                                  "set LABEL_STUDIO_URL (and LABEL_STUDIO_API_KEY), or use --image-root DIR")
        return self.url + value

    def _on_label_studio(self, url: str) -> bool:
        return bool(self.url) and urllib.parse.urlparse(url).netloc == urllib.parse.urlparse(self.url).netloc

    def _authorization(self, refresh: bool = False) -> str:
        if not _is_jwt(self.api_key):
            return f"Token {self.api_key}"
        if self._access is None or refresh:
            body = json.dumps({"refresh": self.api_key}).encode()
            req = urllib.request.Request(self.url + "/api/token/refresh", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
                self._access = json.loads(r.read())["access"]
        return f"Bearer {self._access}"

    def _fetch(self, value: str, task_id) -> bytes:
        url = self._absolute(value, task_id)
        authorized = self._on_label_studio(url) and bool(self.api_key)
        for attempt in range(2):  # a second try with a fresh access token when the first was refused
            try:
                headers = {"Authorization": self._authorization(refresh=attempt > 0)} if authorized else {}
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S) as r:
                    return r.read()
            except urllib.error.HTTPError as e:
                if e.code == 401 and authorized and _is_jwt(self.api_key) and attempt == 0:
                    continue
                hint = (" (set LABEL_STUDIO_API_KEY to a Label Studio API token)" if e.code in (401, 403) else "")
                raise WSSISInputError(f"task {task_id}: image {url}: HTTP {e.code} {e.reason}{hint}") from e
            except (urllib.error.URLError, OSError, ValueError) as e:
                raise WSSISInputError(f"task {task_id}: image {url}: cannot fetch ({e})") from e
        raise AssertionError("unreachable")
