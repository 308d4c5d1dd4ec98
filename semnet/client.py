"""Talking to running daemons over their HTTP ports (for `semnet send`, `ctl`, the testbed)."""

import io
import json
import urllib.error
import urllib.request
from typing import Any

import msgpack
import numpy as np
from PIL import Image

from semnet.errors import SemnetError


def request(
    url: str,
    body: bytes | None = None,
    method: str = "GET",
    content_type: str = "application/json",
    timeout: float = 60.0,
) -> Any:
    """One HTTP call; JSON answers are decoded, errors become one-line SemnetErrors."""
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            kind = r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raise SemnetError(f"{url}: {exc.code} {exc.read().decode(errors='replace')}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SemnetError(f"{url}: daemon unreachable ({reason})") from None
    return json.loads(data) if kind.startswith("application/json") else data.decode()


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def send_image(sender: str, name: str, image_file: bytes, timeout: float = 120.0) -> dict:
    """Hand one encoded image file to the sender at ``host:port``; returns the frame report."""
    body = msgpack.packb({"name": name, "image": image_file})
    return request(f"http://{sender}/send", body, "POST", "application/msgpack", timeout)
