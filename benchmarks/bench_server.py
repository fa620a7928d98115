"""`diffutron serve` under 1, 4 and 16 concurrent clients vs the same questions answered by sequential `lm.chat`.

One run, one process, one loaded model; the server is uvicorn in a thread of this process,
listening on 127.0.0.1, and its clients are closed-loop (each sends its next question as soon as
its answer arrives). The sequential baseline and the single client are measured interleaved,
question by question (an `lm.chat` call, then the same question over HTTP), once before and
once after the concurrent runs, so that a shared machine's changing load hits both alike.
Reports answers per second and p50/p95 latency, their ratios to the baseline, and how many
answers equal the baseline's (temperature 0: batching may only change float rounding).

Then continuous batching against batch-at-a-time: the same questions sent open-loop, at random
(Poisson) times at `--load` times the answers per second of the busiest concurrent run, to a
server that lets them join the running batch and to one where they wait for it to end; latency
counts from the moment a request was due to be sent.

    python benchmarks/bench_server.py [--model embedded|mmbert] [--threads 2] [--clients 1 4 16]
                                      [--questions 32] [--max-tokens 32] [--speed exact] [--load 0.7]
                                      [--compile]

`--speed` picks the sampler preset of both paths (the weights stay float32: same model for both);
`--compile` compiles the model's encoder first (`Diffutron.compile`), for both paths.

`--model mmbert` is a randomly initialised model of mmBERT-base's shape (307M parameters, the
released Diffutron's cost) with the embedded model's tokenizer (its special ids are mmBERT's).
"""

from __future__ import annotations

import argparse
import queue
import random
import statistics
import threading
import time
from collections.abc import Callable

import httpx
import torch
import uvicorn

from diffutron import GenerationConfig
from diffutron.lm import Diffutron
from diffutron.sampling.presets import SPEEDS, speed_config
from diffutron.serve.app import ServeOptions, create_app
from diffutron.serve.server import bind
from workloads import TURKISH_WORDS, mmbert_shaped_model

MODEL_ID = "bench"


def questions(count: int) -> list[str]:
    """Distinct Turkish questions of a few lengths (prompts of different lengths share batches)."""
    return [f"{' '.join(TURKISH_WORDS[index % 40 : index % 40 + 1 + index % 4])} ne demek?" for index in range(count)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def paired(
    lm: Diffutron, url: str, asked: list[str], config: GenerationConfig, settings: dict
) -> tuple[list[str], list[float], list[float]]:
    """Question by question, `lm.chat` then one HTTP request: baseline answers and both latencies."""
    answers, direct, over_http = [], [], []
    with httpx.Client(base_url=url, timeout=3600) as http:
        for question in asked:
            began = time.perf_counter()
            answers.append(lm.chat(question, config))
            direct.append(time.perf_counter() - began)
            began = time.perf_counter()
            response = http.post("/v1/chat/completions", json=request(question, settings))
            over_http.append(time.perf_counter() - began)
            response.raise_for_status()
    return answers, direct, over_http


def request(question: str, settings: dict) -> dict:
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": question}], **settings}


def served(url: str, asked: list[str], clients: int, settings: dict) -> tuple[list[str], list[float], float]:
    """The same questions from `clients` closed-loop HTTP clients: answers in question order, latencies, total."""
    work: queue.Queue[int] = queue.Queue()
    for index in range(len(asked)):
        work.put(index)
    answers: list[str] = [""] * len(asked)
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=3600) as http:
            while True:
                try:
                    index = work.get_nowait()
                except queue.Empty:
                    return
                began = time.perf_counter()
                response = http.post("/v1/chat/completions", json=request(asked[index], settings))
                elapsed = time.perf_counter() - began
                response.raise_for_status()
                answers[index] = response.json()["choices"][0]["message"]["content"]
                with lock:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, latencies, time.perf_counter() - start


def open_loop(url: str, asked: list[str], rate: float, settings: dict) -> tuple[list[float], float]:
    """Each question sent at its own time, Poisson at `rate` per second: latencies from the due time, total."""
    due, moment = [], 0.0
    arrivals = random.Random(0)
    for _ in asked:
        moment += arrivals.expovariate(rate)
        due.append(moment)
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter()

    def send(index: int) -> None:
        time.sleep(max(0.0, start + due[index] - time.perf_counter()))
        with httpx.Client(base_url=url, timeout=3600) as http:
            http.post("/v1/chat/completions", json=request(asked[index], settings)).raise_for_status()
        with lock:
            latencies.append(time.perf_counter() - start - due[index])

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(asked))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start


def start_server(lm: Diffutron, max_batch_size: int, continuous: bool = True) -> tuple[str, Callable[[], None]]:
    """The server in a thread of this process; returns its URL and a function that stops it."""
    options = ServeOptions(
        model_id=MODEL_ID,
        max_batch_size=max_batch_size,
        max_queue=1024,
        request_timeout=3600,
        continuous_batching=continuous,
    )
    listener = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(lm, options), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join()

    return f"http://127.0.0.1:{listener.getsockname()[1]}", stop


def row(path: str, latencies: list[float], seconds: float, baseline: tuple[float, float], same: str) -> str:
    rate, p50 = len(latencies) / seconds, statistics.median(latencies)
    return (
        f"{path:<22}{rate:>10.2f}{rate / baseline[0]:>8.2f}{p50:>9.2f}{percentile(latencies, 0.95):>9.2f}"
        f"{p50 / baseline[1]:>11.2f}{same:>8}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["embedded", "mmbert"], default="embedded")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--questions", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--speed", choices=SPEEDS, default="exact")
    parser.add_argument("--load", type=float, default=0.7, help="open-loop rate, times the busiest closed-loop rate")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder (both paths)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    embedded = Diffutron.from_pretrained(None, device="cpu", dtype="float32")
    lm = embedded if args.model == "embedded" else Diffutron(mmbert_shaped_model(), embedded.tokenizer)
    if args.compile:
        lm.compile()
    settings = {"max_tokens": args.max_tokens, "steps": args.max_tokens, "temperature": 0, "speed": args.speed}
    config = speed_config(args.speed, max_new_tokens=args.max_tokens, steps=args.max_tokens, temperature=0)
    asked = questions(args.questions)
    concurrent = [clients for clients in args.clients if clients > 1]

    url, stop = start_server(lm, max_batch_size=max(args.clients))
    try:
        paired(lm, url, asked[:1], config, settings)  # warm-up of both paths
        expected, direct, single = paired(lm, url, asked, config, settings)
        runs = {clients: served(url, asked, clients, settings) for clients in concurrent}
        _, direct_after, single_after = paired(lm, url, asked, config, settings)
    finally:
        stop()
    direct, single = direct + direct_after, single + single_after
    baseline = (len(direct) / sum(direct), statistics.median(direct))
    print(
        f"model={args.model} threads={args.threads} speed={args.speed} questions={len(asked)} "
        f"max_tokens={args.max_tokens} compile={args.compile}"
    )
    print(f"{'path':<22}{'answers/s':>10}{'x seq':>8}{'p50 s':>9}{'p95 s':>9}{'p50 x seq':>11}{'same':>8}")
    print(row("sequential lm.chat", direct, sum(direct), baseline, "-"))
    print(row("server, 1 client", single, sum(single), baseline, "-"))
    for clients, (answers, latencies, seconds) in runs.items():
        same = sum(answer == reference for answer, reference in zip(answers, expected))
        print(row(f"server, {clients} clients", latencies, seconds, baseline, f"{same}/{len(asked)}"))

    busiest = max(len(latencies) / seconds for _, latencies, seconds in runs.values()) if runs else baseline[0]
    rate = args.load * busiest
    print(f"\nopen loop: {len(asked)} questions at random times, {rate:.2f}/s ({args.load} x {busiest:.2f} answers/s)")
    print(f"{'server':<22}{'answers/s':>10}{'p50 s':>9}{'p95 s':>9}")
    for name, continuous in (("batch at a time", False), ("continuous batching", True)):
        url, stop = start_server(lm, max_batch_size=max(args.clients), continuous=continuous)
        try:
            paired(lm, url, asked[:1], config, settings)  # warm-up
            latencies, seconds = open_loop(url, asked, rate, settings)
        finally:
            stop()
        p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
        print(f"{name:<22}{len(latencies) / seconds:>10.2f}{p50:>9.2f}{p95:>9.2f}")


if __name__ == "__main__":
    main()
