"""Talking to running daemons over their HTTP ports (for `semnet send`, `ctl`, the testbed)."""

import contextlib
import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import msgpack
import numpy as np
from PIL import Image

from semnet.core.auth import HEADER, sign_request
from semnet.errors import SemnetError


def request(
    url: str,
    body: bytes | None = None,
    method: str = "GET",
    content_type: str = "application/json",
    timeout: float = 60.0,
    key: bytes | None = None,
) -> Any:
    """One HTTP call, signed when a key is given (daemons with a key refuse unsigned control
    requests); JSON answers are decoded, errors become one-line SemnetErrors."""
    headers = {"Content-Type": content_type}
    if key is not None:
        parts = urllib.parse.urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers[HEADER] = sign_request(key, method, path or "/", body or b"", time.time())
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            kind = r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raise SemnetError(f"{url}: {exc.code} {error_text(exc)}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SemnetError(f"{url}: daemon unreachable ({reason})") from None
    return json.loads(data) if kind.startswith("application/json") else data.decode()


def error_text(exc: urllib.error.HTTPError) -> str:
    """The reason in an error answer: a JSON ``{"error": ...}`` body's, or the body's text."""
    text = exc.read().decode(errors="replace")
    if exc.headers.get("Content-Type", "").startswith("application/json"):
        with contextlib.suppress(ValueError, LookupError, TypeError):
            return str(json.loads(text)["error"])
    return text


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def send_image(
    sender: str,
    name: str,
    image_file: bytes,
    timeout: float = 120.0,
    key: bytes | None = None,
    quality: int | None = None,
    bpp: float | None = None,
) -> dict:
    """Hand one encoded image file to the sender at ``host:port``; returns the frame report.
    ``quality`` or ``bpp`` asks for another rate point of the sender's codec family."""
    msg: dict = {"name": name, "image": image_file}
    msg.update({k: v for k, v in (("quality", quality), ("bpp", bpp)) if v is not None})
    body = msgpack.packb(msg)
    return request(f"http://{sender}/send", body, "POST", "application/msgpack", timeout, key)
