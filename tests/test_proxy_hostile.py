"""The proxy under a hostile or careless controller: a real `semnet proxy` on loopback fed
floods of held datagrams across resets, numbers that overflow, bodies too big or too deep, and
wrong methods; every answer stays bounded, and every error is JSON. Bounded in count, no timing.
"""

import http.client
import json
import socket
import struct
import time

import pytest
from test_proxy import ProxyProcess, metric

from semnet import __version__
from semnet.core.auth import HEADER, sign_request

KEY = b"semnet-test-key-0123456789abcdef"


def call(proxy: ProxyProcess, method: str, path: str, body=None, key: bytes | None = None):
    """One HTTP request -> (status, Content-Type, decoded JSON or text)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[HEADER] = sign_request(key, method, path, data or b"", time.time())
    host, port = proxy.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, data, headers)
        answer = conn.getresponse()
        kind, text = answer.getheader("Content-Type", ""), answer.read().decode()
    finally:
        conn.close()
    return answer.status, kind, json.loads(text) if kind.startswith("application/json") else text


def assert_json_error(answer, status: int, *fragments: str) -> None:
    code, kind, body = answer
    assert (code, kind.split(";")[0]) == (status, "application/json"), answer
    assert body["status"] == status and all(f in body["error"] for f in fragments), body


def flood(proxy: ProxyProcess, first: int, count: int) -> str:
    """Send numbered datagrams and wait until the proxy has taken them all; /metrics."""
    for i in range(first, first + count):
        proxy.client.sendto(struct.pack("!I", i).ljust(100, b"."), proxy.listen)
        if i % 20 == 19:
            time.sleep(0.001)
    deadline = time.monotonic() + 10
    while True:
        text = proxy.metrics()
        if metric(text, "semnet_proxy_datagrams_in_total", direction="forward") >= first + count:
            return text
        assert time.monotonic() < deadline, "the proxy did not take every datagram"
        time.sleep(0.02)


# -- issue: limit must bound what the proxy holds, across resets and seed changes --------------


def test_limit_bounds_the_held_copies_across_resets_and_seed_changes(tmp_path):
    limit, sent = 40, 0
    with ProxyProcess(tmp_path) as proxy:
        for round_ in range(3):
            for seed in ("", f" seed {round_}"):  # set_spec, then a fresh model
                spec = f"delay 1000s limit {limit}{seed}"
                assert call(proxy, "PUT", "/impairment", {"forward": spec})[0] == 200
                text = flood(proxy, sent, 60)
                sent += 60
                held = metric(text, "semnet_proxy_pending_datagrams")
                queued = metric(text, "semnet_proxy_queue_datagrams", direction="forward")
                assert held == queued == limit  # the gauge is what is held, and no more
                assert call(proxy, "POST", "/impairment/reset")[0] == 200
        text = flood(proxy, sent, 10)  # the configured (empty) spec sends at once
        deadline = time.monotonic() + 10
        while len(proxy.sink.numbers) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proxy.sink.numbers == list(range(sent, sent + 10))  # nothing held got out
        dropped = metric(text, "semnet_proxy_datagrams_dropped_total", reason="limit")
        assert dropped == sent - limit


# -- issue: numbers that overflow, bodies too big or too deep, errors as text ------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A proxy that needs signed control requests."""
    workdir = tmp_path_factory.mktemp("keyed")
    (workdir / "key").write_bytes(KEY)
    with ProxyProcess(workdir, "--auth-key-file", str(workdir / "key")) as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("delay 1e400s", "forward: delay: '1e400s' is too large"),
        ("rate 1e400bit", "forward: rate: '1e400bit' is too large"),
        ("slot 1e400s", "forward: slot min_delay: '1e400s' is too large"),
        ("delay 10ms 1e400s", "forward: delay jitter: '1e400s' is too large"),
        ("delay 1e290s", "forward: delay: '1e290s' is above 3600s"),
        ("limit 0", "forward: limit: 0 is not in 1.."),
        ({"delay": {"time": "1e400s"}}, "forward: delay.time: '1e400s' is too large"),
    ],
)
def test_overflowing_numbers_are_a_400_naming_the_token(keyed, spec, named):
    answer = call(keyed, "PUT", "/impairment", {"forward": spec}, KEY)
    assert_json_error(answer, 400, named)
    assert metric(keyed.metrics(), "semnet_proxy_impairment_changes_total") == 0  # unchanged


def test_bodies_too_deep_or_too_big_are_refused(keyed):
    deep = call(keyed, "PUT", "/impairment", b"[" * 60_000, KEY)  # under the size bound
    assert_json_error(deep, 400, "body is not JSON", "recursion")
    nested = {"forward": {"limit": json.loads("[" * 500 + "]" * 500)}}
    assert_json_error(call(keyed, "PATCH", "/impairment", nested, KEY), 400, "forward: limit")
    big = call(keyed, "PUT", "/impairment", b"[" * 200_000, KEY)
    assert_json_error(big, 413, "65536")
    host, port = keyed.http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"PUT /impairment HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
        head = conn.recv(4096).decode()  # answered at once, from the header: nothing was read
    assert head.startswith("HTTP/1.1 413") and "application/json" in head
    assert call(keyed, "GET", "/health")[0] == 200  # still serving


def test_every_error_is_json_and_health_and_version_are_open(keyed):
    assert_json_error(call(keyed, "PUT", "/impairment", {"forward": ""}), 401, "authentication")
    assert_json_error(call(keyed, "GET", "/nowhere", key=KEY), 404, "Not Found")
    code, kind, body = call(keyed, "DELETE", "/impairment", key=KEY)
    assert (code, body["status"], kind.split(";")[0]) == (405, 405, "application/json")
    assert_json_error(call(keyed, "PUT", "/impairment", {"sideways": ""}, KEY), 400, "must map")
    code, _, body = call(keyed, "GET", "/health")
    assert (code, body) == (200, {"status": "ok"})
    code, _, body = call(keyed, "GET", "/version")
    assert (code, body) == (200, {"name": "semnet", "version": __version__})


# -- PUT replaces a direction's spec, PATCH merges into it -------------------------------------


def test_put_replaces_and_patch_merges(tmp_path):
    with ProxyProcess(tmp_path, "--reverse", "loss 1%") as proxy:

        def shown(direction: str = "forward") -> str:
            return call(proxy, "GET", "/impairment")[2][direction]["spec"]

        call(proxy, "PUT", "/impairment", {"forward": "delay 10ms loss 5% seed 4"})
        assert call(proxy, "PATCH", "/impairment", {"forward": "loss 20%"})[0] == 200
        assert shown() == "delay 10ms loss random 20%"  # a seed restarts once, it is not kept
        call(proxy, "PATCH", "/impairment", {"forward": {"loss": None, "limit": 50}})
        assert shown() == "limit 50 delay 10ms"
        refused = call(proxy, "PATCH", "/impairment", {"forward": "rate 1e400bit", "reverse": ""})
        assert_json_error(refused, 400, "'1e400bit'")
        assert (shown(), shown("reverse")) == ("limit 50 delay 10ms", "loss random 1%")

        result = proxy.ctl("set", "--merge", "duplicate 1%")
        assert result.returncode == 0 and "limit 50 delay 10ms duplicate 1%" in result.stdout
        assert proxy.ctl("set", "loss 3%").returncode == 0  # set without --merge: PUT
        assert shown() == "loss random 3%" and shown("reverse") == "loss random 1%"


def test_patch_of_a_replay_asks_for_a_whole_spec(tmp_path):
    (tmp_path / "t").write_text("0\n1\n")
    with ProxyProcess(tmp_path, "--replay", "t") as proxy:
        refused = call(proxy, "PATCH", "/impairment", {"forward": "loss 5%"})
        assert_json_error(refused, 400, "forward: a replay has no spec to patch")
        assert call(proxy, "GET", "/impairment")[2]["forward"]["replay"] == "t"
