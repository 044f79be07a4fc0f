#!/usr/bin/env python3
"""What hostile connections do to a normal client's latency (loopback only, bounded).

Starts the fake upstream (bench/fake_upstream.py) and one hookproxy (``python -m hookproxy``,
whatever ``hookproxy`` the interpreter imports: set PYTHONPATH to measure another checkout),
then measures a normal client's non-streamed chat latency, one request at a time (p50, p99,
errors), in each scenario:

  none         no flood
  idle         --idle-sockets (default 20,000) idle TCP connections held open by helper
               processes (10,000 each, to stay under a per-process file-descriptor limit),
               measured at once, then again 5 s later (idle+5s)
  header       a helper that sends one --header-mb (default 200) MB header, and, when the proxy
               cuts it off, connects again and starts another, for the whole measurement

Each scenario runs --requests requests (default 400) or --max-seconds (default 60), whichever
comes first. The proxy's peak RSS (VmHWM) is reported after each scenario. Usage:

    .venv/bin/python bench/flood.py [--requests 400] [--idle-sockets 20000] [--header-mb 200]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEY = "sk-bench"
BODY = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


@contextlib.contextmanager
def servers() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    upstream_port, proxy_port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, str(HERE / "fake_upstream.py")],
                                env={**os.environ, "FAKE_PORT": str(upstream_port)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(upstream_port)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.yaml"
        config.write_text(json.dumps({
            "host": "127.0.0.1", "port": proxy_port, "default_backend": "up", "log_level": "WARNING",
            "auth": {"api_keys": [KEY]},
            "backends": {"up": {"connector": "openai-compatible", "api_url": f"http://127.0.0.1:{upstream_port}/v1",
                                "api_key": "sk-up", "models": ["fake"]}}}))
        proxy = subprocess.Popen([sys.executable, "-m", "hookproxy", "--config", str(config)],
                                 env={**os.environ, "HOOKPROXY_DISABLE_PLUGINS": "qwen-oauth,hybrid"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(proxy_port)
            yield proxy_port, proxy
        finally:
            for process in (proxy, upstream):
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
                if process.poll() is None:
                    process.kill()


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(port: int, requests: int, max_seconds: float) -> dict[str, float]:
    """Sequential requests on fresh connections (a real client may need a new one any time)."""
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + max_seconds
    for _ in range(requests):
        if time.monotonic() > end:
            break
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/v1/chat/completions", BODY,
                               {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 200:
                errors += 1
        except OSError:
            errors += 1
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return {"n": len(latencies), "errors": errors, "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


# --- helpers run as separate processes ------------------------------------------------------


def hold_idle(port: int, count: int, seconds: float) -> None:
    """Open ``count`` connections (as many as the kernel lets in) and hold them open."""
    opened: list[socket.socket] = []
    for _ in range(count):
        try:
            opened.append(_connect_from_elsewhere(port))
        except OSError:
            time.sleep(0.01)
    print(f"opened {len(opened)}", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.5)
    for sock in opened:
        sock.close()


def _connect_from_elsewhere(port: int) -> socket.socket:
    """A connection from 127.0.0.2, whose port is picked at connect time: 20,000 sockets from the
    normal client's own address would slow its connect() in the kernel (the port search), which
    measures the machine, not the proxy."""
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    sock.bind(("127.0.0.2", 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def send_headers(port: int, megabytes: int, seconds: float) -> None:
    """Send ``megabytes`` MB headers, one after another, until ``seconds`` passed."""
    piece = b"a" * (1024 * 1024)
    end = time.monotonic() + seconds
    attempts = sent_total = 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _send_headers(port, megabytes, end, piece, counts := [0, 0])
    finally:
        attempts, sent_total = counts
        print(f"header attempts {attempts}, MB sent {sent_total // (1024 * 1024)}", flush=True)


def _send_headers(port: int, megabytes: int, end: float, piece: bytes, counts: list[int]) -> None:
    while time.monotonic() < end:
        counts[0] += 1
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(megabytes):
                    if time.monotonic() > end:
                        break
                    sock.sendall(piece)
                    counts[1] += len(piece)
        except OSError:
            pass


def start_helper(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--helper", *args], stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--max-seconds", type=float, default=60)
    parser.add_argument("--idle-sockets", type=int, default=20_000)
    parser.add_argument("--header-mb", type=int, default=200)
    parser.add_argument("--helper", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.helper:
        kind, port, amount, seconds = args.helper
        (hold_idle if kind == "idle" else send_headers)(int(port), int(amount), float(seconds))
        return
    hold = args.max_seconds + 30
    with servers() as (port, proxy):
        measure(port, 50, 10)  # warm-up
        results = {"none": measure(port, args.requests, args.max_seconds)}
        results["none"]["peak_rss_mib"] = peak_rss_mib(proxy.pid)
        per_helper = 10_000
        helpers = [start_helper("idle", str(port), str(min(per_helper, args.idle_sockets - index)), str(hold))
                   for index in range(0, args.idle_sockets, per_helper)]
        opened = [int((helper.stdout.readline() if helper.stdout else "opened 0").split()[-1]) for helper in helpers]
        results["idle"] = measure(port, args.requests, args.max_seconds)
        results["idle"]["sockets_opened"] = sum(opened)
        results["idle"]["peak_rss_mib"] = peak_rss_mib(proxy.pid)
        time.sleep(5)  # the same flood, once the proxy has worked through its accept queue
        results["idle+5s"] = measure(port, args.requests, args.max_seconds)
        results["idle+5s"]["peak_rss_mib"] = peak_rss_mib(proxy.pid)
        for helper in helpers:
            helper.terminate()
            helper.wait(30)
        time.sleep(2)
        header = start_helper("header", str(port), str(args.header_mb), str(args.max_seconds))
        time.sleep(1)
        results["header"] = measure(port, args.requests, args.max_seconds)
        results["header"]["peak_rss_mib"] = peak_rss_mib(proxy.pid)
        header.terminate()
        out = header.communicate(timeout=30)[0].strip()
        results["header"]["helper"] = out  # type: ignore[assignment]
    print(f"{'scenario':<8} {'n':>5} {'errors':>6} {'p50 ms':>8} {'p99 ms':>9} {'peak RSS MiB':>13}  notes")
    for name, row in results.items():
        notes = f"{row.get('sockets_opened', '')}{row.get('helper', '')}"
        print(f"{name:<8} {row['n']:>5.0f} {row['errors']:>6.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>9.2f} "
              f"{row['peak_rss_mib']:>13.1f}  {notes}")


if __name__ == "__main__":
    main()
