"""A local testbed: sender, proxy and receiver as separate processes on loopback.

Used by `semnet demo` and the integration tests. Ports are ephemeral, configs are written to a
work folder, and every process is stopped (SIGINT, then SIGKILL) when the testbed closes.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from semnet.client import png_bytes, request, send_image
from semnet.errors import SemnetError

START_TIMEOUT = 60.0


def free_ports(n: int) -> list[int]:
    """n distinct free ports (TCP and UDP) on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


class LocalTestbed:
    def __init__(
        self,
        workdir: str | Path,
        impair: str = "",
        seed: int = 1,
        sender: dict | None = None,
        receiver: dict | None = None,
        log_level: str = "warning",
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        p = free_ports(5)
        addr = [f"127.0.0.1:{port}" for port in p]
        self.http = {"sender": addr[0], "proxy": addr[1], "receiver": addr[2]}
        self.udp = {"proxy": addr[3], "receiver": addr[4]}
        self.configs = {
            "receiver": {
                "listen": addr[4],
                "http": addr[2],
                "output": str(self.workdir / "received"),
                **(receiver or {}),
            },
            "proxy": {
                "listen": addr[3],
                "forward": addr[4],
                "http": addr[1],
                "impair": impair,
                "seed": seed,
            },
            "sender": {
                "http": addr[0],
                "data_to": addr[3],
                "receiver_http": addr[2],
                "seed": seed,
                **(sender or {}),
            },
        }
        self.log_level = log_level
        self.procs: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> "LocalTestbed":
        try:
            for name in ("receiver", "proxy", "sender"):
                self.start(name)
            for name in ("receiver", "proxy", "sender"):
                self.wait_ready(name)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, name: str) -> None:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(self.configs[name]))
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 (owned by the process)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "semnet",
                "--log-level",
                self.log_level,
                name,
                "--config",
                str(path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()

    def wait_ready(self, name: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise SemnetError(
                    f"{name} exited with {self.procs[name].returncode}: {self.log(name)[-2000:]}"
                )
            try:
                self.metrics(name)
                return
            except SemnetError:
                time.sleep(0.1)
        raise SemnetError(f"{name} did not start within {START_TIMEOUT:.0f} s")

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, timeout: float = 15.0) -> int:
        proc = self.procs.pop(name, None)
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def close(self) -> None:
        for name in ("sender", "proxy", "receiver"):
            self.stop(name)

    # -- driving it ---------------------------------------------------------------------
    def send(self, image: np.ndarray, name: str = "image.png") -> dict:
        return send_image(self.http["sender"], name, png_bytes(image))

    def set_impairment(self, spec: str) -> dict:
        import json

        return request(
            f"http://{self.http['proxy']}/impairment", json.dumps({"forward": spec}).encode(), "PUT"
        )

    def metrics(self, name: str) -> str:
        return request(f"http://{self.http[name]}/metrics", timeout=5.0)
