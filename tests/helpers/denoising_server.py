"""A stand-in for `diffutron serve` in the browser tests of the chat page.

It serves the package's static page at `/`, `GET /v1/models` and a streamed
`POST /v1/chat/completions` whose chunks carry denoising frames in the server's format,
answered by the embedded model through `diffutron.sampling.frames`. Only the HTTP layer is
stand-in: once the real server lands, the browser tests should start it instead.
Everything is also served under `/locked/`, where the API endpoints want `Authorization: Bearer KEY`.
`GET /test/state` reports the requests and answers seen and how many streams the client cancelled.

Run: python denoising_server.py [--api-key KEY (default sesame)] [--frame-delay SECONDS]; prints its URL once listening.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

import diffutron
from diffutron import Diffutron
from diffutron.sampling.frames import FrameBuilder, frame_text
from diffutron.sampling.presets import speed_config

STATIC = Path(diffutron.__file__).parent / "serve" / "static"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8"}
MODEL_ID = "diffutron-embedded"
SETTINGS = {"max_tokens": "max_new_tokens", "steps": "steps", "block_length": "block_length",
            "temperature": "temperature", "repetition_penalty": "repetition_penalty", "remasking": "remasking",
            "seed": "seed"}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api_key: str, frame_delay: float) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.api_key = api_key
        self.frame_delay = frame_delay
        self.lm = Diffutron.from_pretrained(None)
        self.model_lock = threading.Lock()
        self.state: dict[str, object] = {"requests": [], "answers": [], "completed": 0, "cancelled": 0}


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads stdout
        pass

    def do_GET(self) -> None:
        self.locked = self.path.startswith("/locked/")
        self.path = self.path.removeprefix("/locked")
        if self.path == "/":
            self._file(STATIC / "index.html")
        elif self.path.startswith("/static/") and self.path[8:] in {p.name for p in STATIC.iterdir()}:
            self._file(STATIC / self.path[8:])
        elif self.path == "/test/state":
            self._json(200, self.server.state)
        elif self.path == "/v1/models":
            if self._authorized():
                self._json(200, {"object": "list", "data": [
                    {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "diffutron"}]})
        else:
            self._error(404, "not found", "not_found")

    def do_POST(self) -> None:
        self.locked = self.path.startswith("/locked/")
        self.path = self.path.removeprefix("/locked")
        if self.path != "/v1/chat/completions":
            self._error(404, "not found", "not_found")
            return
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.state["requests"].append(body)
        lm = self.server.lm
        config = speed_config(body.get("speed", "exact"),
                              **{SETTINGS[name]: value for name, value in body.items() if name in SETTINGS})
        builder = FrameBuilder(lm.tokenizer)
        frames = []
        with self.server.model_lock, torch.no_grad():
            answer = lm.chat(body["messages"], config, callback=lambda event: frames.append(builder.frame(event, 0)))
        self.server.state["answers"].append(answer)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            self._stream(frames, answer)
            self.server.state["completed"] += 1
        except (BrokenPipeError, ConnectionResetError):
            self.server.state["cancelled"] += 1

    def _stream(self, frames: list, answer: str) -> None:
        """Frames, text deltas whenever the decided answer grows, the finish, usage, [DONE]."""
        sent = ""
        self._event(self._chunk({"role": "assistant", "content": ""}))
        for frame in frames:
            time.sleep(self.server.frame_delay)
            self._event({**self._chunk({}), "denoising": frame})
            decided = frame_text(frame["tokens"])
            if len(decided) > len(sent) and decided.startswith(sent) and answer.startswith(decided):
                self._event(self._chunk({"content": decided[len(sent):]}))
                sent = decided
        if sent != answer:
            self._event(self._chunk({"content": answer[len(sent):]}))
        self._event(self._chunk({}, finish_reason="stop"))
        tokens = len(self.server.lm.encode(answer))
        self._event({**self._chunk({}), "choices": [],
                     "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
                     "diffutron": {"calls": frames[-1]["call"]}})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> dict:
        return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": MODEL_ID, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}

    def _event(self, data: dict) -> None:
        self.wfile.write(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())
        self.wfile.flush()

    def _authorized(self) -> bool:
        if not self.locked or self.headers.get("Authorization") == f"Bearer {self.server.api_key}":
            return True
        self._error(401, "missing or wrong API key", "invalid_api_key")
        return False

    def _file(self, path: Path) -> None:
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPES[path.suffix])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "param": None,
                                      "code": code}})

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", default="sesame")
    parser.add_argument("--frame-delay", type=float, default=0.0)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    server = Server(arguments.api_key, arguments.frame_delay)
    print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
