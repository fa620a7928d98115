"""Real `diffutron serve` processes on a free loopback port, for the server tests."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

API_KEY = "test-key"
MODEL = "diffutron-embedded"
REPOSITORY = Path(__file__).resolve().parents[2]
# How a server is started: the `serve` command, its options after it
SERVE_COMMAND = [sys.executable, "-m", "diffutron", "serve"]
READY = re.compile(r"Serving \S+ at (http://\S+)/v1")
START_TIMEOUT_S = 180


class ServerProcess:
    """A server started with `options` on port 0; `url` is where it listens."""

    def __init__(self, *options: str, env: dict[str, str] | None = None) -> None:
        environment = {name: value for name, value in os.environ.items() if name != "DIFFUTRON_API_KEY"}
        environment.update(
            {
                "OMP_NUM_THREADS": "1",
                "HF_HUB_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(REPOSITORY / "src"), os.environ.get("PYTHONPATH", "")]),
                **(env or {}),
            }
        )
        self.process = subprocess.Popen(
            [*SERVE_COMMAND, "--host", "127.0.0.1", "--port", "0", *options],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url()

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, **options) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=options.pop("timeout", 120), **options)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 if absent)."""
        selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
        sample = re.escape(name + (f"{{{selector}}}" if labels else ""))
        match = re.search(rf"^{sample} (\S+)$", httpx.get(self.url + "/metrics").text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit status (the process is killed if it does not end in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the server did not stop within {timeout} s after SIGTERM") from None

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if match := READY.search(line):
                return match.group(1)
        self.process.kill()
        raise AssertionError("the server did not start:\n" + "".join(self.output))
