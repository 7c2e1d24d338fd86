#!/usr/bin/env python3
"""LLMProxy benchmark harness (issue 6). Started by bench/run.sh; see docs/bench.md.

Runs every scenario against three targets side by side in one run:
  direct  the upstream itself (nginx `return 200` for plain load, llmproxy-mockllm for streams)
  nginx   nginx-light as a plain keep-alive reverse proxy to the same upstream
  worker  llmproxy-worker -c <generated.yaml> --threads 1
and prints a table (and, unless --smoke, writes bench/RESULTS.md).

Scenarios: 1 small POST, 64 conns; 2 100 KiB bodies; 3 bursts of concurrent SSE streams;
4 no keep-alive; 5 least-busy vs random with one of two backends slow; 6 latency at
concurrency 1 (passthrough and Messages translated); 7 the throughput frontier; 8 streams
sustained; 9 memory over a soak.
Only loopback traffic; every load is bounded in time; every process we start is ours
and is stopped on exit.
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")

STATIC_REPLY = (
    '{"id":"chatcmpl-static","object":"chat.completion","created":1700000000,'
    '"model":"bench-static","choices":[{"index":0,"message":{"role":"assistant",'
    '"content":"Hello from the static upstream."},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
)
SMALL_BODY = (
    '{"model":"bench-static","messages":[{"role":"system","content":"You are terse."},'
    '{"role":"user","content":"Say hello in one word."}],"max_tokens":16}'
)
# SMALL_BODY as an Anthropic Messages request (scenario 6 sends it to /v1/messages).
SMALL_MESSAGES_BODY = (
    '{"model":"bench-static","system":"You are terse.","messages":[{"role":"user",'
    '"content":"Say hello in one word."}],"max_tokens":16}'
)


class BenchError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile(want=65536):
    """Soft descriptor limit up to the hard one, and both to `want` where allowed (root):
    10,000 streams through a proxy take 20,000 sockets in it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            pass
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchError(f"timed out waiting for {what}")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http(method, port, path, body=None, headers=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=body.encode() if body is not None else None,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace"), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), dict(e.headers)


class Proc:
    """A child process we own, with its log file and /proc accounting."""

    def __init__(self, name, argv, tmp, cpu=None):
        self.name = name
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.logf = open(self.log_path, "wb")
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        self.argv = argv
        self.p = subprocess.Popen(argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, preexec_fn=raise_nofile)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def pids(self):
        """The process and its children (nginx: master + workers)."""
        out = [self.pid]
        try:
            for t in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{t}/children") as f:
                    out += [int(x) for x in f.read().split()]
        except OSError:
            pass
        return out

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
            except OSError:
                pass
        return total / CLK_TCK

    def rss_mib(self):
        """Resident memory now (VmRSS), summed over the process and its children."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def peak_rss_mib(self):
        """Largest VmHWM among the process and its children."""
        best = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            best = max(best, int(line.split()[1]))
            except OSError:
                pass
        return best / 1024

    def tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.logf.close()


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin_dir)
        self.smoke = args.smoke
        self.tmp = tempfile.mkdtemp(prefix="llmproxy-bench-")
        self.procs = []
        self.results = {}  # scenario -> target -> dict
        self.failures = []
        self.notes = []
        ncpu = os.cpu_count() or 1
        pin = not args.no_pin and shutil.which("taskset") and ncpu >= 2
        # The proxy under test gets a core to itself; load and upstreams share the other.
        self.cpu_proxy = 0 if pin else None
        self.cpu_load = 1 if pin else None
        self.nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.wrk = shutil.which("wrk")
        if self.smoke:
            self.duration, self.conns, self.chunks, self.gap = 1, 4, 5, 5
            self.burst_counts = [20]
            self.s5_duration, self.s5_conns = 1, 4
            self.ladder, self.rung_s = [1, 4], 1
            self.sustain_counts, self.c1_streams = [20, 40], 2
            self.soak_s, self.soak_sample_s, self.soak_streams = 3, 0.5, 5
        else:
            self.duration, self.conns, self.chunks, self.gap = args.duration, 64, 50, 20
            self.burst_counts = parse_counts(args.streams)
            self.s5_duration, self.s5_conns = args.duration, 16
            self.ladder, self.rung_s = [1, 2, 4, 8, 16, 32, 64, 128, 256], 3
            self.sustain_counts, self.c1_streams = parse_counts(args.sustain), 10
            self.soak_s, self.soak_sample_s, self.soak_streams = args.soak, 5, 100
        self.streams = max(self.burst_counts)  # scenario 6's streams

    # ----- processes -------------------------------------------------------------------

    def start(self, name, argv, cpu=None):
        p = Proc(name, argv, self.tmp, cpu)
        self.procs.append(p)
        return p

    def stop(self, p):
        p.stop()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs = []

    def wait_port(self, p, port, timeout=10):
        def ready():
            if not p.alive():
                raise BenchError(f"{p.name} exited:\n{p.tail()}")
            return port_open(port)
        wait_until(ready, timeout, f"{p.name} on port {port}")

    def start_nginx(self, name, http_block, cpu):
        prefix = os.path.join(self.tmp, name)
        os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
        temp = "".join(f"  {d}_temp_path {prefix}/{d}_temp;\n"
                       for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = f"""worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 32768; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 65s;
  client_max_body_size 10m;
  client_body_buffer_size 256k;
{temp}{http_block}
}}
"""
        path = os.path.join(prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        return self.start(name, [self.nginx, "-p", prefix, "-c", path, "-e",
                                 f"{prefix}/logs/error.log"], cpu)

    def start_mock(self, name, port, extra=()):
        p = self.start(name, [os.path.join(self.bin, "llmproxy-mockllm"), "--port", str(port),
                              "--name", name, "--threads", "1", *extra], self.cpu_load)
        self.wait_port(p, port)
        return p

    def worker_config(self, path, port, metrics_port, backends, mode="random"):
        lines = ["server:", f"  port: {port}", "  host: 127.0.0.1",
                 f"  metrics_port: {metrics_port}", "  max_body_bytes: 10MiB",
                 "timeout: 60s", "stream_idle_timeout: 60s", "connect_timeout: 5s",
                 "retry: 1", f"mode: {mode}", "backends:"]
        for name, url, model in backends:
            lines += [f"  - name: {name}", f"    url: {url}", "    api_key: bench-key",
                      f"    default_model: {model}", f"    models: [{model}]"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start_worker(self, name, config, port, metrics_port):
        exe = os.path.join(self.bin, "llmproxy-worker")
        if not os.access(exe, os.X_OK):
            raise BenchError(f"{exe} not found: build it first")
        p = self.start(name, [exe, "-c", config, "--threads", "1"], self.cpu_proxy)

        def healthy():
            if not p.alive():
                raise BenchError(f"{name} exited:\n{p.tail()}")
            return http("GET", port, "/health", timeout=1)[0] == 200
        wait_until(healthy, 15, f"{name} /health")
        return p

    # ----- load generators ------------------------------------------------------------

    def wrk_script(self, name, body, close=False, model_header=None):
        path = os.path.join(self.tmp, f"{name}.lua")
        with open(path, "w") as f:
            f.write('wrk.method = "POST"\n')
            f.write('wrk.headers["Content-Type"] = "application/json"\n')
            f.write('wrk.headers["Authorization"] = "Bearer bench-client"\n')
            if close:
                f.write('wrk.headers["Connection"] = "close"\n')
            f.write(f"wrk.body = {body}\n")
        return path

    def run_wrk(self, port, script, conns, duration, path="/v1/chat/completions"):
        if not self.wrk:
            raise BenchError("wrk not installed (scripts/install-deps.sh installs it)")
        argv = [self.wrk, "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
                "--latency", "-s", script, f"http://127.0.0.1:{port}{path}"]
        if self.cpu_load is not None:
            argv = ["taskset", "-c", str(self.cpu_load)] + argv
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=duration + 30).stdout
        return parse_wrk(out)

    def run_streamload(self, port, model, chunks=None, gap=None, protocol="chat", streams=None):
        exe = os.path.join(self.bin, "llmproxy-streamload")
        chunks = self.chunks if chunks is None else chunks
        gap = self.gap if gap is None else gap
        streams = self.streams if streams is None else streams
        argv = [exe, "--port", str(port), "--model", model, "--streams", str(streams),
                "--chunks", str(chunks), "--gap-ms", str(gap), "--timeout-s", "60",
                "--protocol", protocol]
        if self.cpu_load is not None:
            argv = ["taskset", "-c", str(self.cpu_load)] + argv
        r = subprocess.run(argv, capture_output=True, text=True, timeout=90,
                           preexec_fn=raise_nofile)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise BenchError(f"streamload gave no result: {r.stderr.strip()}")

    # ----- scenarios ------------------------------------------------------------------

    def setup_baselines(self):
        self.up_port = free_port()
        self.ngx_plain = free_port()
        self.ngx_stream = free_port()
        self.mock_port = free_port()
        reply = STATIC_REPLY.replace("'", "\\'")
        self.upstream = self.start_nginx("upstream-nginx", f"""
  server {{
    listen 127.0.0.1:{self.up_port} backlog=4096;
    location / {{
      default_type application/json;
      add_header x-request-id static-1;
      return 200 '{reply}';
    }}
  }}""", self.cpu_load)
        self.wait_port(self.upstream, self.up_port)
        self.mock = self.start_mock("mock-stream", self.mock_port)
        self.proxy = self.start_nginx("proxy-nginx", f"""
  upstream static_up {{ server 127.0.0.1:{self.up_port}; keepalive 256; }}
  upstream mock_up {{ server 127.0.0.1:{self.mock_port}; keepalive 1024; }}
  server {{
    listen 127.0.0.1:{self.ngx_plain} backlog=4096;
    location / {{
      proxy_pass http://static_up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
  server {{
    listen 127.0.0.1:{self.ngx_stream} backlog=4096;
    location / {{
      proxy_pass http://mock_up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 120s;
    }}
  }}""", self.cpu_proxy)
        self.wait_port(self.proxy, self.ngx_plain)
        self.wait_port(self.proxy, self.ngx_stream)
        # Sanity: both paths really answer before anything is measured.
        for port, what in ((self.up_port, "upstream nginx"), (self.ngx_plain, "nginx proxy")):
            st, body, _ = http("POST", port, "/v1/chat/completions", SMALL_BODY,
                               {"Content-Type": "application/json"})
            if st != 200 or "chatcmpl-static" not in body:
                raise BenchError(f"{what} answered {st}: {body[:200]}")

        self.worker_port = free_port()
        self.worker_metrics = free_port()
        self.worker_yaml = os.path.join(self.tmp, "generated.yaml")
        self.worker_config(self.worker_yaml, self.worker_port, self.worker_metrics, [
            ("static", f"http://127.0.0.1:{self.up_port}/v1", "bench-static"),
            ("mock", f"http://127.0.0.1:{self.mock_port}/v1", "bench-stream"),
        ])

    def targets(self, kind):
        """(name, port, proc) for each target of a scenario kind: plain or stream."""
        if kind == "plain":
            t = [("direct", self.up_port, self.upstream), ("nginx", self.ngx_plain, self.proxy)]
        else:
            t = [("direct", self.mock_port, self.mock), ("nginx", self.ngx_stream, self.proxy)]
        if not self.args.no_worker:
            t.append(("worker", self.worker_port, None))
        return t

    def measured(self, scenario, name, proc, fn, warmup=None):
        """Runs fn() while accounting the CPU of the process that serves `name`.
        warmup(), when given, runs first and is not measured."""
        worker = None
        try:
            if proc is None:
                worker = self.start_worker(f"worker-s{scenario}", self.worker_yaml,
                                           self.worker_port, self.worker_metrics)
                proc = worker
                if scenario == 1:
                    # The bytes really went through: status, upstream body, added header.
                    st, body, hdrs = http("POST", self.worker_port, "/v1/chat/completions",
                                          SMALL_BODY, {"Content-Type": "application/json"})
                    if st != 200 or "chatcmpl-static" not in body:
                        raise BenchError(f"worker answered {st}: {body[:200]}")
            if warmup is not None:
                warmup()
            cpu0 = proc.cpu_seconds()
            r = fn()
            r["cpu_s"] = proc.cpu_seconds() - cpu0
            r["rss_mib"] = proc.peak_rss_mib()
            if worker is not None and scenario == 1:
                r["overhead_p99_us"] = self.overhead_p99_us()
            return r
        finally:
            if worker is not None:
                if not worker.alive():
                    self.failures.append(f"s{scenario} worker died:\n{worker.tail()}")
                self.stop(worker)

    def overhead_p99_us(self):
        try:
            st, text, _ = http("GET", self.worker_metrics, "/metrics", timeout=3)
        except OSError:
            return None
        if st != 200:
            return None
        return histogram_quantile(text, "llmproxy_overhead_seconds", 0.99, 1e6)

    def plain_scenario(self, sid, title, body_lua, close=False):
        script = self.wrk_script(f"s{sid}", body_lua, close=close)
        rows = {}
        for name, port, proc in self.targets("plain"):
            log(f"scenario {sid} ({title}) -> {name}")
            try:
                r = self.measured(sid, name, proc,
                                  lambda: self.run_wrk(port, script, self.conns, self.duration))
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                self.failures.append(f"s{sid} {name}: {e}")
                continue
            if r["requests"] == 0 or r["non2xx"] or (r["errors"] and not close):
                self.failures.append(
                    f"s{sid} {name}: {r['requests']} requests, {r['non2xx']} non-2xx, "
                    f"{r['errors']} socket errors")
            r["cpu_us_per_req"] = r["cpu_s"] / r["requests"] * 1e6 if r["requests"] else None
            rows[name] = r
        self.results[sid] = {"title": title, "kind": "plain", "rows": rows}

    def stream_scenario(self, sid=3):
        counts = "/".join(str(n) for n in self.burst_counts)
        title = f"bursts of {counts} streams x {self.chunks} chunks, {self.gap} ms apart"
        bursts = {}
        for n in self.burst_counts:
            rows = {}
            for name, port, proc in self.targets("stream"):
                log(f"scenario {sid} ({n} streams) -> {name}")
                model = "bench-stream"
                try:
                    # Warm-up: the same number of short streams first, so every target runs
                    # the measured burst with its upstream keep-alive pool filled, as a
                    # gateway under steady traffic does (nginx keeps `keepalive 1024`).
                    r = self.measured(
                        sid, name, proc, lambda: self.run_streamload(port, model, streams=n),
                        warmup=lambda: self.run_streamload(port, model, 1, 1, streams=n))
                except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                    self.failures.append(f"s{sid} {n} streams {name}: {e}")
                    continue
                if r["damaged"]:
                    self.failures.append(
                        f"s{sid} {n} streams {name}: {r['damaged']} damaged {r['errors']}")
                r["cpu_us_per_req"] = r["cpu_s"] / r["streams"] * 1e6
                rows[name] = r
            bursts[n] = rows
        self.results[sid] = {"title": title, "kind": "stream", "bursts": bursts}

    def balance_scenario(self, sid=5):
        title = "one of two backends slow (+20 ms): share of requests"
        if self.args.no_worker:
            return
        fast_port, slow_port = free_port(), free_port()
        fast = self.start_mock("mock-fast", fast_port, ["--chunks", "1"])
        slow = self.start_mock("mock-slow", slow_port, ["--chunks", "1", "--delay-ms", "20"])
        body = json.dumps(json.dumps({"model": "bench-two", "messages": [
            {"role": "user", "content": "hi"}]}))
        script = self.wrk_script("s5", body)
        rows = {}
        try:
            for mode in ("random", "least-busy"):
                log(f"scenario {sid} ({title}) -> worker mode {mode}")
                cfg = os.path.join(self.tmp, f"s5-{mode}.yaml")
                port, mport = free_port(), free_port()
                self.worker_config(cfg, port, mport, [
                    ("fast", f"http://127.0.0.1:{fast_port}/v1", "bench-two"),
                    ("slow", f"http://127.0.0.1:{slow_port}/v1", "bench-two")], mode=mode)
                before = {n: mock_requests(p) for n, p in (("fast", fast_port), ("slow", slow_port))}
                try:
                    w = self.start_worker(f"worker-s5-{mode}", cfg, port, mport)
                except BenchError as e:
                    self.failures.append(f"s5 {mode}: {e}")
                    continue
                try:
                    r = self.run_wrk(port, script, self.s5_conns, self.s5_duration)
                finally:
                    self.stop(w)
                got = {n: mock_requests(p) - before[n]
                       for n, p in (("fast", fast_port), ("slow", slow_port))}
                total = sum(got.values())
                r["fast"], r["slow"] = got["fast"], got["slow"]
                r["slow_share"] = got["slow"] / total if total else None
                if r["requests"] == 0 or r["non2xx"] or total == 0:
                    self.failures.append(f"s5 {mode}: {r['requests']} requests, "
                                         f"{r['non2xx']} non-2xx, upstream saw {got}")
                rows[mode] = r
        finally:
            self.stop(fast)
            self.stop(slow)
        self.results[sid] = {"title": title, "kind": "balance", "rows": rows}

    def protocol_scenario(self, sid=6):
        """Anthropic Messages clients in front of an OpenAI-compatible backend: the worker
        translates each request to chat completions and the answer (or stream) back. Added
        p99 at concurrency 1, against the chat passthrough through the same worker, both
        over the direct path; then S3's streams sent as Messages."""
        title = ("latency at concurrency 1: chat passthrough, and Messages ingress translated "
                 "to an OpenAI backend")
        if self.args.no_worker:
            return
        chat = self.wrk_script(f"s{sid}-chat", json.dumps(SMALL_BODY))
        msgs = self.wrk_script(f"s{sid}-messages", json.dumps(SMALL_MESSAGES_BODY))
        rows = {}
        rounds = 1 if self.smoke else 5
        per_round = max(1, self.duration // rounds)
        for name, port, proc in (("direct (chat)", self.up_port, self.upstream),
                                 ("nginx proxy (chat)", self.ngx_plain, self.proxy)):
            log(f"scenario {sid} ({title}) -> {name}")
            try:
                rows[name] = self.measured(sid, name, proc, lambda port=port: merged_rounds(
                    [self.run_wrk(port, chat, 1, per_round) for _ in range(rounds)]))
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                self.failures.append(f"s{sid} {name}: {e}")
        try:
            w = self.start_worker(f"worker-s{sid}", self.worker_yaml, self.worker_port,
                                  self.worker_metrics)
        except BenchError as e:
            self.failures.append(f"s{sid} worker: {e}")
            self.results[sid] = {"title": title, "kind": "protocol", "rows": rows}
            return
        try:
            # The bytes really went through and were translated both ways.
            st, body, _ = http("POST", self.worker_port, "/v1/messages", SMALL_MESSAGES_BODY,
                               {"Content-Type": "application/json"})
            if st != 200 or '"type":"message"' not in body.replace(" ", "") \
                    or "Hello from the static upstream." not in body:
                raise BenchError(f"worker /v1/messages answered {st}: {body[:200]}")
            # Alternating short rounds, the median of their p99s: a scheduler hiccup on a
            # 2-CPU machine lands in one round of one path, not in a whole path's figure.
            paths = (("worker chat passthrough", chat, "/v1/chat/completions"),
                     ("worker messages -> chat", msgs, "/v1/messages"))
            for _, script, path in paths:
                self.run_wrk(self.worker_port, script, 1, 1, path)  # warm-up
            rounds = 1 if self.smoke else 5
            per_round = max(1, self.duration // rounds)
            runs = {name: [] for name, _, _ in paths}
            cpu = {name: 0.0 for name, _, _ in paths}
            for i in range(rounds):
                for name, script, path in paths:
                    log(f"scenario {sid} ({title}) -> {name}, round {i + 1}/{rounds}")
                    cpu0 = w.cpu_seconds()
                    runs[name].append(self.run_wrk(self.worker_port, script, 1, per_round, path))
                    cpu[name] += w.cpu_seconds() - cpu0
            for name, _, _ in paths:
                rows[name] = merged_rounds(runs[name])
                rows[name]["cpu_s"] = cpu[name]
                rows[name]["rss_mib"] = w.peak_rss_mib()
            log(f"scenario {sid} (streams as Messages, S3 shape) -> worker")
            st = self.run_streamload(self.worker_port, "bench-stream", 1, 1, "messages")
            if st["damaged"]:
                self.failures.append(f"s{sid} warm-up streams: {st['errors']}")
            cpu0 = w.cpu_seconds()
            st = self.run_streamload(self.worker_port, "bench-stream", protocol="messages")
            st["cpu_us_per_req"] = (w.cpu_seconds() - cpu0) / st["streams"] * 1e6
            st["rss_mib"] = w.peak_rss_mib()
            if st["damaged"]:
                self.failures.append(f"s{sid} streams: {st['damaged']} damaged {st['errors']}")
        except (BenchError, subprocess.TimeoutExpired, OSError) as e:
            self.failures.append(f"s{sid} worker: {e}")
            st = None
        finally:
            if not w.alive():
                self.failures.append(f"s{sid} worker died:\n{w.tail()}")
            self.stop(w)
        for name, r in rows.items():
            if r["requests"] == 0 or r["non2xx"] or r["errors"]:
                self.failures.append(f"s{sid} {name}: {r['requests']} requests, "
                                     f"{r['non2xx']} non-2xx, {r['errors']} socket errors")
            r["cpu_us_per_req"] = r["cpu_s"] / r["requests"] * 1e6 if r["requests"] else None
        self.results[sid] = {"title": title, "kind": "protocol", "rows": rows, "streams": st}

    def frontier_scenario(self, sid=7):
        """The throughput frontier: one concurrency sweep per path; the most req/s each
        carried while its p99 stayed under 1, 5 and 10 ms. The worker's two paths (chat
        passthrough and Messages translated to chat) alternate rung by rung in one process."""
        title = "throughput frontier: req/s at p99 under 1, 5 and 10 ms"
        chat = self.wrk_script(f"s{sid}-chat", json.dumps(SMALL_BODY))
        msgs = self.wrk_script(f"s{sid}-messages", json.dumps(SMALL_MESSAGES_BODY))
        chat_path, msgs_path = "/v1/chat/completions", "/v1/messages"
        rungs = {}

        def sweep(paths):
            for c in self.ladder:
                for name, port, script, path in paths:
                    log(f"scenario {sid} ({title}) -> {name}, {c} connections")
                    r = self.run_wrk(port, script, c, self.rung_s, path)
                    r["conns"] = c
                    rungs.setdefault(name, []).append(r)
                    if r["requests"] == 0 or r["non2xx"] or r["errors"]:
                        self.failures.append(f"s{sid} {name} c={c}: {r['requests']} requests, "
                                             f"{r['non2xx']} non-2xx, {r['errors']} socket errors")
        try:
            sweep([("direct", self.up_port, chat, chat_path),
                   ("nginx", self.ngx_plain, chat, chat_path)])
        except (BenchError, subprocess.TimeoutExpired, OSError) as e:
            self.failures.append(f"s{sid} baselines: {e}")
        if not self.args.no_worker:
            w = None
            try:
                w = self.start_worker(f"worker-s{sid}", self.worker_yaml, self.worker_port,
                                      self.worker_metrics)
                for script, path in ((chat, chat_path), (msgs, msgs_path)):
                    self.run_wrk(self.worker_port, script, 1, 1, path)  # warm-up
                sweep([("worker chat", self.worker_port, chat, chat_path),
                       ("worker messages -> chat", self.worker_port, msgs, msgs_path)])
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                self.failures.append(f"s{sid} worker: {e}")
            finally:
                if w is not None:
                    if not w.alive():
                        self.failures.append(f"s{sid} worker died:\n{w.tail()}")
                    self.stop(w)
        self.results[sid] = {"title": title, "kind": "frontier", "rungs": rungs}

    def frontier(self, name, bound_ms):
        """Scenario 7: (req/s, connections) of the best rung of `name` with p99 under the
        bound and no errors, or None."""
        best = None
        for r in self.results.get(7, {}).get("rungs", {}).get(name, []):
            if r["p99_ms"] is None or r["p99_ms"] >= bound_ms or r["non2xx"] or r["errors"]:
                continue
            if best is None or r["rps"] > best[0]:
                best = (r["rps"], r["conns"])
        return best

    def sustained_scenario(self, sid=8):
        """Streams sustained: bursts of ever more concurrent streams of 50 chunks 20 ms
        apart; a rung is sustained when every chunk of every stream arrived and no gap
        went over 10x the pacing. Then added TTFT and inter-chunk gap at concurrency 1."""
        # A proxy holds two sockets per stream (client and upstream): past half the
        # descriptor limit it cannot hold them all, whatever its code. Such a rung still
        # runs (it shows how each target fails), and the largest rung that fits is added.
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.fd_fit = (nofile - 200) // 2 // 100 * 100
        if max(self.sustain_counts) > self.fd_fit > 0 and self.fd_fit not in self.sustain_counts:
            self.sustain_counts = sorted(self.sustain_counts + [self.fd_fit])
        self.nofile = nofile
        counts = "/".join(str(n) for n in self.sustain_counts)
        title = f"streams sustained ({counts} x {self.chunks} chunks, {self.gap} ms apart)"
        rungs, single = {}, {}
        model = "bench-stream"
        for name, port, proc in self.targets("stream"):
            for n in self.sustain_counts:
                log(f"scenario {sid} ({n} streams) -> {name}")
                w = None
                try:
                    if proc is None:  # a fresh worker per rung: its peak memory is this rung's
                        w = self.start_worker(f"worker-s{sid}-{n}", self.worker_yaml,
                                              self.worker_port, self.worker_metrics)
                    serving = proc or w
                    self.run_streamload(port, model, 1, 1, streams=n)  # fill the upstream pool
                    with RssSampler(serving) as rss:
                        r = self.run_streamload(port, model, streams=n)
                    r["rss_max_mib"] = rss.max_mib
                    r["streams_n"] = n
                    if r["damaged"] and n <= self.fd_fit:
                        self.failures.append(f"s{sid} {name} {n} streams: {r['damaged']} "
                                             f"damaged {r['errors']}")
                    rungs.setdefault(name, []).append(r)
                except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                    self.failures.append(f"s{sid} {name} {n} streams: {e}")
                finally:
                    if w is not None:
                        if not w.alive():
                            self.failures.append(f"s{sid} worker died at {n} streams:\n{w.tail()}")
                        self.stop(w)
            w = None
            try:
                if proc is None:
                    w = self.start_worker(f"worker-s{sid}-c1", self.worker_yaml,
                                          self.worker_port, self.worker_metrics)
                self.run_streamload(port, model, 1, 1, streams=1)
                runs = [self.run_streamload(port, model, streams=1)
                        for _ in range(self.c1_streams)]
                single[name] = {
                    "ttft_p50": median([x["ttft_ms"]["p50"] for x in runs]),
                    "gap_p50": median([x["gap_ms_observed"]["p50"] for x in runs]),
                    "gap_p99": median([x["gap_ms_observed"]["p99"] for x in runs]),
                    "damaged": sum(x["damaged"] for x in runs), "n": len(runs)}
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                self.failures.append(f"s{sid} {name} c=1: {e}")
            finally:
                if w is not None:
                    self.stop(w)
        self.results[sid] = {"title": title, "kind": "sustained", "rungs": rungs,
                             "single": single}

    def sustained(self, name):
        """Scenario 8: the most concurrent streams `name` sustained, or 0."""
        best = 0
        for r in self.results.get(8, {}).get("rungs", {}).get(name, []):
            if r["damaged"] == 0 and r["stalls"] == 0:
                best = max(best, r["streams_n"])
        return best

    def soak_scenario(self, sid=9):
        """Memory: idle RSS, RSS under a fixed load for the soak (64 keep-alive connections
        of small POSTs plus back-to-back bursts of streams, on the nginx proxy and the worker
        at once), growth per minute after the first minute, and RSS once the load stopped."""
        title = f"memory over a {self.soak_s} s soak"
        targets = [("nginx", self.ngx_plain, self.ngx_stream, self.proxy)]
        w = None
        if not self.args.no_worker:
            try:
                w = self.start_worker(f"worker-s{sid}", self.worker_yaml, self.worker_port,
                                      self.worker_metrics)
            except BenchError as e:
                self.failures.append(f"s{sid} worker: {e}")
            else:
                targets.append(("worker", self.worker_port, self.worker_port, w))
        script = self.wrk_script(f"s{sid}", json.dumps(SMALL_BODY))
        rows = {name: {"idle": p.rss_mib(), "samples": []} for name, _, _, p in targets}
        rows["direct (upstream)"] = {"idle": self.upstream.rss_mib(), "samples": []}
        procs = {name: p for name, _, _, p in targets}
        procs["direct (upstream)"] = self.upstream
        stop = threading.Event()
        errors = []

        def plain(name, port):
            try:
                rows[name]["wrk"] = self.run_wrk(port, script, self.conns, self.soak_s)
            except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                errors.append(f"s{sid} {name} load: {e}")

        def streams(name, port):
            rows[name]["bursts"], rows[name]["damaged"] = 0, 0
            while not stop.is_set():
                try:
                    r = self.run_streamload(port, "bench-stream", streams=self.soak_streams)
                except (BenchError, subprocess.TimeoutExpired, OSError) as e:
                    errors.append(f"s{sid} {name} streams: {e}")
                    return
                rows[name]["bursts"] += 1
                rows[name]["damaged"] += r["damaged"]
        log(f"scenario {sid} ({title}) -> " + ", ".join(procs))
        threads = [threading.Thread(target=plain, args=(n, pp)) for n, pp, _, _ in targets]
        threads += [threading.Thread(target=streams, args=(n, sp)) for n, _, sp, _ in targets]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - t0 < self.soak_s:
            time.sleep(self.soak_sample_s)
            t = time.monotonic() - t0
            for name, p in procs.items():
                rows[name]["samples"].append((t, p.rss_mib()))
        stop.set()
        for t in threads:
            t.join()
        time.sleep(1 if self.smoke else 10)
        for name, p in procs.items():
            r = rows[name]
            r["after"] = p.rss_mib()
            warm = [x for x in r["samples"] if x[0] >= min(60, self.soak_s / 5)] or r["samples"]
            r["steady"] = median([m for _, m in warm])
            r["max"] = max([m for _, m in r["samples"]], default=None)
            r["growth_per_min"] = slope_per_minute(warm)
        for name, _, _, _ in targets:
            wr = rows[name].get("wrk")
            if wr is None or wr["requests"] == 0 or wr["non2xx"] or wr["errors"] \
                    or rows[name].get("damaged"):
                self.failures.append(f"s{sid} {name}: load {wr and wr['requests']} requests, "
                                     f"{wr and wr['non2xx']} non-2xx, {wr and wr['errors']} "
                                     f"errors, {rows[name].get('damaged')} damaged streams")
        self.failures += errors
        if w is not None:
            if not w.alive():
                self.failures.append(f"s{sid} worker died:\n{w.tail()}")
            self.stop(w)
        self.results[sid] = {"title": title, "kind": "soak", "rows": rows}

    def added_p99(self, name):
        """Scenario 6: a worker path's p99 minus the direct path's, in microseconds."""
        rows = self.results.get(6, {}).get("rows", {})
        if name not in rows or "direct (chat)" not in rows:
            return None
        return (rows[name]["p99_ms"] - rows["direct (chat)"]["p99_ms"]) * 1000

    def run(self):
        scenarios = {int(s) for s in self.args.scenarios.split(",")}
        self.started = datetime.datetime.now(datetime.timezone.utc)
        try:
            self.setup_baselines()
            small = json.dumps(SMALL_BODY)
            if 1 in scenarios:
                self.plain_scenario(1, f"small POST, {self.conns} connections", small)
            if 2 in scenarios:
                pad = 100 * 1024
                big = ('string.format(\'{"model":"bench-static","messages":[{"role":"user",'
                       f'"content":"%s"}}]}}\', string.rep("a", {pad}))')
                self.plain_scenario(2, f"100 KiB request bodies, {self.conns} connections", big)
            if 3 in scenarios:
                self.stream_scenario(3)
            if 4 in scenarios:
                self.plain_scenario(4, f"no keep-alive (Connection: close), {self.conns} conns",
                                    small, close=True)
            if 5 in scenarios:
                self.balance_scenario(5)
            if 6 in scenarios:
                self.protocol_scenario(6)
            if 7 in scenarios:
                self.frontier_scenario(7)
            if 8 in scenarios:
                self.sustained_scenario(8)
            if 9 in scenarios:
                self.soak_scenario(9)
        except BenchError as e:
            self.failures.append(str(e))
        finally:
            self.stop_all()
        report = self.report()
        print(report)
        if not self.smoke:
            out = self.args.out or os.path.join(ROOT, "bench", "RESULTS.md")
            notes = kept_notes(out if os.path.exists(out) else None)
            with open(out, "w") as f:
                f.write(report + notes)
            log(f"wrote {out}")
        if self.failures:
            log("FAILED:\n  " + "\n  ".join(self.failures))
            log(f"logs kept in {self.tmp}")
            return 1
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 0

    # ----- report ---------------------------------------------------------------------

    def report(self):
        L = []
        L.append("# LLMProxy benchmark results" + (" (smoke run)" if self.smoke else ""))
        L.append("")
        L.append(f"- Date: {self.started:%Y-%m-%d %H:%M UTC}")
        L.append(f"- Commit: {git_commit()}")
        L.append(f"- Machine: {machine()}")
        L.append(f"- Binaries: `{self.bin}`")
        L.append(f"- Tools: {tool_versions(self.nginx, self.wrk)}")
        pin = (f"proxy under test pinned to CPU {self.cpu_proxy}, load generators and upstreams "
               f"to CPU {self.cpu_load}" if self.cpu_proxy is not None else "no CPU pinning")
        L.append(f"- Setup: worker = one process, one thread (`--threads 1`); nginx proxy = "
                 f"one worker process; {pin}; wrk -t1, {self.duration}s per run.")
        L.append("")
        for sid in sorted(self.results):
            res = self.results[sid]
            L.append(f"## Scenario {sid}: {res['title']}")
            L.append("")
            rows = res.get("rows", {})
            if res["kind"] == "plain":
                L.append("| target | req/s | vs nginx | p50 ms | p90 ms | p99 ms | errors | "
                         "CPU us/req | peak RSS MiB |" + (" overhead p99 us |" if sid == 1 else ""))
                L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|" +
                         ("---:|" if sid == 1 else ""))
                base = rows.get("nginx", {}).get("rps")
                for name, r in rows.items():
                    ratio = f"{r['rps'] / base:.2f}x" if base else "-"
                    line = (f"| {name} | {r['rps']:.0f} | {ratio} | {fmt(r['p50_ms'])} | "
                            f"{fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | "
                            f"{r['non2xx'] + r['errors']} | {fmt(r.get('cpu_us_per_req'), 1)} | "
                            f"{r['rss_mib']:.1f} |")
                    if sid == 1:
                        line += f" {fmt(r.get('overhead_p99_us'), 1)} |"
                    L.append(line)
            elif res["kind"] == "stream":
                L.append("| streams | target | whole/total | TTFT p50 ms | TTFT p99 ms | "
                         "TTFT vs direct | gap p50 ms | gap p99 ms | wall s | CPU us/stream | "
                         "peak RSS MiB |")
                L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
                for n, brows in res["bursts"].items():
                    base = brows.get("direct", {}).get("ttft_ms", {}).get("p50")
                    for name, r in brows.items():
                        t, g = r["ttft_ms"], r["gap_ms_observed"]
                        ratio = f"{t['p50'] / base:.2f}x" if base else "-"
                        L.append(f"| {n} | {name} | {r['ok']}/{r['streams']} | {fmt(t['p50'])} | "
                                 f"{fmt(t['p99'])} | {ratio} | {fmt(g['p50'])} | "
                                 f"{fmt(g['p99'])} | {r['wall_s']:.2f} | "
                                 f"{fmt(r['cpu_us_per_req'], 1)} | {r['rss_mib']:.1f} |")
            elif res["kind"] == "frontier":
                L += self.frontier_report(res)
            elif res["kind"] == "sustained":
                L += self.sustained_report(res)
            elif res["kind"] == "soak":
                L += self.soak_report(res)
            elif res["kind"] == "protocol":
                L.append("| path | req/s | p50 ms | p90 ms | p99 ms | added p99 us | errors | "
                         "CPU us/req |")
                L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
                for name, r in rows.items():
                    added = self.added_p99(name) if name != "direct (chat)" else None
                    L.append(f"| {name} | {r['rps']:.0f} | {fmt(r['p50_ms'])} | "
                             f"{fmt(r['p90_ms'])} | {fmt(r['p99_ms'])} | {fmt(added, 0)} | "
                             f"{r['non2xx'] + r['errors']} | {fmt(r.get('cpu_us_per_req'), 1)} |")
                st = res.get("streams")
                if st:
                    t, g = st["ttft_ms"], st["gap_ms_observed"]
                    L.append("")
                    L.append(f"Streams through the translation ({st['streams']} streams x "
                             f"{st['chunks']} chunks, {st['gap_ms']} ms apart, as S3):")
                    L.append("")
                    L.append("| target | whole/total | TTFT p50 ms | TTFT p99 ms | gap p50 ms | "
                             "gap p99 ms | wall s | CPU us/stream | peak RSS MiB |")
                    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
                    L.append(f"| worker messages -> chat | {st['ok']}/{st['streams']} | "
                             f"{fmt(t['p50'])} | {fmt(t['p99'])} | {fmt(g['p50'])} | "
                             f"{fmt(g['p99'])} | {st['wall_s']:.2f} | "
                             f"{fmt(st['cpu_us_per_req'], 1)} | {st['rss_mib']:.1f} |")
            else:
                L.append("| worker mode | req/s | p50 ms | p99 ms | fast backend | slow backend | "
                         "slow share |")
                L.append("|---|---:|---:|---:|---:|---:|---:|")
                for mode, r in rows.items():
                    share = f"{r['slow_share'] * 100:.1f}%" if r["slow_share"] is not None else "-"
                    L.append(f"| {mode} | {r['rps']:.0f} | {fmt(r['p50_ms'])} | "
                             f"{fmt(r['p99_ms'])} | {r['fast']} | {r['slow']} | {share} |")
            L.append("")
        if self.args.no_worker:
            L.append("llmproxy-worker was not measured in this run (--no-worker).")
            L.append("")
        L.append("## Targets (issues 6, 13 and 15)")
        L.append("")
        L += self.targets_check()
        L.append("")
        if self.failures:
            L.append("## Problems in this run")
            L.append("")
            L += [f"- {f.splitlines()[0]}" for f in self.failures]
            L.append("")
        return "\n".join(L)

    def frontier_report(self, res):
        rungs = res["rungs"]
        names = list(rungs)
        L = ["| path | most req/s at p99 < 1 ms | < 5 ms | < 10 ms |", "|---|---:|---:|---:|"]
        for name in names:
            cells = []
            for bound in (1, 5, 10):
                best = self.frontier(name, bound)
                cells.append(f"{best[0]:.0f} (c={best[1]})" if best else "none")
            L.append(f"| {name} | " + " | ".join(cells) + " |")
        L += ["", "Every rung (req/s, p99 ms), " + f"wrk -t1, {self.rung_s} s per rung:", ""]
        L.append("| connections | " + " | ".join(names) + " |")
        L.append("|---:|" + "---:|" * len(names))
        for i, c in enumerate(self.ladder):
            cells = []
            for name in names:
                r = rungs[name][i] if i < len(rungs[name]) else None
                cells.append(f"{r['rps']:.0f} / {fmt(r['p99_ms'])}" if r else "-")
            L.append(f"| {c} | " + " | ".join(cells) + " |")
        return L

    def sustained_report(self, res):
        L = ["| target | streams | whole/total | stalls > 10x pacing | TTFT p50 ms | "
             "TTFT p99 ms | gap p99 ms | gap max ms | wall s | max RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, rs in res["rungs"].items():
            for r in rs:
                t, g = r["ttft_ms"], r["gap_ms_observed"]
                L.append(f"| {name} | {r['streams_n']} | {r['ok']}/{r['streams']} | "
                         f"{r['stalls']} | {fmt(t['p50'])} | {fmt(t['p99'])} | {fmt(g['p99'])} | "
                         f"{fmt(g['max'])} | {r['wall_s']:.2f} | {r['rss_max_mib']:.1f} |")
        damaged = [f"{name} at {r['streams_n']}: " + ", ".join(
            f"{k} x{v}" for k, v in sorted(r["errors"].items(), key=lambda kv: -kv[1]))
            for name, rs in res["rungs"].items() for r in rs if r["damaged"]]
        if damaged:
            L += ["", "Damaged streams: " + "; ".join(damaged) + "."]
        over = [n for n in self.sustain_counts if n > self.fd_fit]
        if over:
            L += ["", f"The descriptor limit in this run is {self.nofile} per process (the "
                  "harness raises it to 65536 where it may): a proxy holds two sockets per "
                  "stream, so "
                  f"rungs over {self.fd_fit} streams ({', '.join(map(str, over))}) cannot all "
                  "be held by one proxy process; they show how each target fails."]
        L += ["", "| target | most streams sustained |", "|---|---:|"]
        for name in res["rungs"]:
            L.append(f"| {name} | {self.sustained(name) or 'none'} |")
        single = res["single"]
        if single:
            base = single.get("direct")
            L += ["", f"At concurrency 1 ({self.c1_streams} streams one after another, "
                  "medians):", "",
                  "| target | TTFT p50 ms | added TTFT ms | gap p50 ms | added gap ms | "
                  "gap p99 ms | damaged |", "|---|---:|---:|---:|---:|---:|---:|"]
            for name, r in single.items():
                at = r["ttft_p50"] - base["ttft_p50"] if base and name != "direct" else None
                ag = r["gap_p50"] - base["gap_p50"] if base and name != "direct" else None
                L.append(f"| {name} | {fmt(r['ttft_p50'])} | {fmt(at)} | {fmt(r['gap_p50'])} | "
                         f"{fmt(ag)} | {fmt(r['gap_p99'])} | {r['damaged']} |")
        return L

    def soak_report(self, res):
        L = ["| process | idle RSS MiB | steady RSS MiB | max RSS MiB | growth MiB/min | "
             "RSS after the load MiB | requests | stream bursts |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in res["rows"].items():
            wr = r.get("wrk")
            L.append(f"| {name} | {fmt(r['idle'], 1)} | {fmt(r['steady'], 1)} | "
                     f"{fmt(r['max'], 1)} | {fmt(r['growth_per_min'], 2)} | "
                     f"{fmt(r['after'], 1)} | {wr['requests'] if wr else '-'} | "
                     f"{r.get('bursts', '-')} |")
        L += ["", f"Load on each proxy at once: wrk -c{self.conns} small POSTs for the whole "
              f"soak plus bursts of {self.soak_streams} streams back to back; RSS sampled every "
              f"{self.soak_sample_s} s. Steady and growth use the samples after the first "
              f"minute (the direct row is the upstream nginx, serving both proxies)."]
        return L

    def targets_check(self):
        out = []

        def row(sid, target):
            return self.results.get(sid, {}).get("rows", {}).get(target)

        def verdict(ok):
            return "met" if ok else "MISSED"
        w1, n1 = row(1, "worker"), row(1, "nginx")
        if w1 and n1:
            ratio = w1["rps"] / n1["rps"]
            out.append(f"- S1 throughput >= 1.0x nginx: {ratio:.2f}x, {verdict(ratio >= 1.0)}; "
                       f"p99 {fmt(w1['p99_ms'])} vs nginx {fmt(n1['p99_ms'])} ms, "
                       f"{verdict(w1['p99_ms'] <= n1['p99_ms'])}")
            ov = w1.get("overhead_p99_us")
            out.append(f"- S1 llmproxy_overhead_seconds p99 <= 100 us: "
                       + (f"{ov:.1f} us, {verdict(ov <= 100)}" if ov is not None
                          else "not available from /metrics"))
        w2, n2 = row(2, "worker"), row(2, "nginx")
        if w2 and n2:
            ratio = w2["rps"] / n2["rps"]
            out.append(f"- S2 throughput >= 0.8x nginx: {ratio:.2f}x, {verdict(ratio >= 0.8)}")
        for n, brows in self.results.get(3, {}).get("bursts", {}).items():
            w3, d3 = brows.get("worker"), brows.get("direct")
            if not w3:
                continue
            out.append(f"- S3 {n} streams, zero damaged: {w3['damaged']}, "
                       f"{verdict(w3['damaged'] == 0)}")
            if d3 and d3["ttft_ms"]["p50"]:
                r = w3["ttft_ms"]["p50"] / d3["ttft_ms"]["p50"]
                out.append(f"- S3 {n} streams, TTFT p50 within 10% of direct: {r:.2f}x "
                           f"({fmt(w3['ttft_ms']['p50'])} vs {fmt(d3['ttft_ms']['p50'])} ms), "
                           f"{verdict(r <= 1.10)}")
        s5 = self.results.get(5, {}).get("rows", {})
        if "random" in s5 and "least-busy" in s5 and s5["random"]["slow_share"] is not None \
                and s5["least-busy"]["slow_share"] is not None:
            a, b = s5["random"]["slow_share"], s5["least-busy"]["slow_share"]
            out.append(f"- S5 slow backend gets clearly less under least-busy: {b * 100:.1f}% vs "
                       f"{a * 100:.1f}% under random, {verdict(b < a * 0.8)}")
        a_pass = self.added_p99("worker chat passthrough")
        a_tr = self.added_p99("worker messages -> chat")
        a_ngx = self.added_p99("nginx proxy (chat)")
        if a_pass is not None and a_ngx is not None:
            out.append(f"- S6 added p99 at c=1 <= nginx's: {a_pass:.0f} us vs {a_ngx:.0f} us, "
                       f"{verdict(a_pass <= a_ngx)}")
        if a_pass is not None and a_tr is not None:
            ratio = f"{a_tr / a_pass:.2f}x" if a_pass > 0 else "passthrough added nothing"
            out.append(f"- S6 Messages -> chat added p99 at c=1 <= 2x passthrough's: "
                       f"{a_tr:.0f} us vs {a_pass:.0f} us ({ratio}), "
                       f"{verdict(a_pass > 0 and a_tr <= 2 * a_pass)}")
        st6 = self.results.get(6, {}).get("streams")
        if st6:
            out.append(f"- S6 zero damaged streams through the translation: {st6['damaged']}, "
                       f"{verdict(st6['damaged'] == 0)}")
        for bound in (1, 5, 10):
            w, n = self.frontier("worker chat", bound), self.frontier("nginx", bound)
            t = self.frontier("worker messages -> chat", bound)
            if w is None and n is None:
                continue
            ratio = f"{w[0] / n[0]:.2f}x nginx" if w and n else "-"
            line = (f"- S7 req/s at p99 < {bound} ms: worker {w[0] if w else 0:.0f} vs nginx "
                    f"{n[0] if n else 0:.0f} ({ratio}, reported)")
            if w:
                tr = t[0] / w[0] if t else 0
                line += (f"; translated {t[0] if t else 0:.0f} = {tr:.2f}x passthrough, "
                         f"at least 0.5x: {verdict(tr >= 0.5)}")
            out.append(line)
        top = max(self.sustain_counts)
        fit = getattr(self, "fd_fit", top)
        for r in self.results.get(8, {}).get("rungs", {}).get("worker", []):
            if r["streams_n"] != top and not (top > fit and r["streams_n"] == fit):
                continue
            ok = r["damaged"] == 0 and r["rss_max_mib"] <= 200
            out.append(f"- S8 {r['streams_n']} concurrent streams, zero lost and worker RSS <= "
                       f"200 MiB: {r['damaged']} lost, {r['stalls']} stalls, "
                       f"{r['rss_max_mib']:.1f} MiB, {verdict(ok)}")
        soak = self.results.get(9, {}).get("rows", {}).get("worker")
        if soak and soak["growth_per_min"] is not None:
            g = soak["growth_per_min"]
            ok = g <= 0.5 and soak["after"] <= soak["steady"] * 1.05 + 1
            out.append(f"- S9 no growth over the soak (slope <= 0.5 MiB/min, RSS after the load "
                       f"not above steady): {g:.2f} MiB/min, steady {soak['steady']:.1f}, after "
                       f"{soak['after']:.1f} MiB, {verdict(ok)}")
        if not out:
            out.append("- not evaluated (no worker numbers in this run)")
        return out


NOTES_MARKER = "<!-- notes below are kept by bench.py across runs -->"


def kept_notes(path):
    """The hand-written part of an existing results file (profile, history), if any."""
    if path is None:
        return ""
    with open(path) as f:
        text = f.read()
    at = text.find(NOTES_MARKER)
    return "" if at < 0 else "\n" + text[at:]


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def merged_rounds(runs):
    """wrk results of several rounds of one path as one row: request and error counts and
    rates summed over the rounds, each latency percentile the median of the rounds'."""
    def median(key):
        v = sorted(r[key] for r in runs if r.get(key) is not None)
        return v[len(v) // 2] if v else None
    out = {k: median(k) for k in ("p50_ms", "p90_ms", "p99_ms")}
    for k in ("requests", "non2xx", "errors"):
        out[k] = sum(r[k] for r in runs)
    out["rps"] = sum(r["rps"] for r in runs) / len(runs)
    out["rounds"] = len(runs)
    return out


def parse_counts(text):
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"bench: not a list of stream counts: {text!r}")
    if not counts or counts[0] <= 0:
        raise SystemExit(f"bench: not a list of stream counts: {text!r}")
    return counts


def median(values):
    v = sorted(x for x in values if x is not None)
    return v[len(v) // 2] if v else None


def slope_per_minute(samples):
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mm = sum(m for _, m in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return None
    return sum((t - mt) * (m - mm) for t, m in samples) / var * 60


class RssSampler:
    """The largest resident memory of a process while the `with` block runs, sampled
    every 50 ms (VmHWM would keep a long-lived process's peak from earlier scenarios)."""

    def __init__(self, proc):
        self.proc, self.max_mib = proc, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop)

    def loop(self):
        while True:
            self.max_mib = max(self.max_mib, self.proc.rss_mib())
            if self.stop.wait(0.05):
                return

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.max_mib = max(self.max_mib, self.proc.rss_mib())
        return False


def mock_requests(port):
    st, body, _ = http("GET", port, "/mock/stats")
    return json.loads(body)["requests"] if st == 200 else 0


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)", s)
    if not m:
        return None
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def parse_wrk(out):
    r = {"rps": 0.0, "requests": 0, "non2xx": 0, "errors": 0,
         "p50_ms": None, "p90_ms": None, "p99_ms": None, "raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["errors"] = sum(int(x) for x in m.groups())
    for pct in ("50", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            r[f"p{pct}_ms"] = to_ms(m.group(1))
    return r


def histogram_quantile(text, name, q, scale):
    """Prometheus-style quantile of a histogram summed over its label sets."""
    buckets = {}
    for line in text.splitlines():
        if not line.startswith(name + "_bucket"):
            continue
        m = re.search(r'le="([^"]+)"\}\s+([\d.eE+-]+)', line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            buckets[le] = buckets.get(le, 0) + float(m.group(2))
    if not buckets:
        return None
    les = sorted(buckets)
    total = buckets[les[-1]]
    if total == 0:
        return None
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le in les:
        c = buckets[le]
        if c >= rank:
            if le == float("inf"):
                return prev_le * scale
            frac = (rank - prev_c) / (c - prev_c) if c > prev_c else 0
            return (prev_le + (le - prev_le) * frac) * scale
        prev_le, prev_c = le, c
    return None


def git_commit():
    """HEAD read from .git directly (the harness runs no git commands)."""
    git = os.path.join(ROOT, ".git")
    try:
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        p = os.path.join(git, ref)
        if os.path.exists(p):
            with open(p) as f:
                return f.read().strip()[:12] + f" ({ref.split('/')[-1]})"
        with open(os.path.join(git, "packed-refs")) as f:
            for line in f:
                if line.strip().endswith(" " + ref):
                    return line.split()[0][:12] + f" ({ref.split('/')[-1]})"
    except OSError:
        pass
    return "unknown"


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{model}, {os.cpu_count()} CPUs{mem}, Linux {platform.release()}"


def tool_versions(nginx, wrk):
    parts = []
    try:
        v = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=5).stderr
        parts.append(v.strip().replace("nginx version: ", ""))
    except OSError:
        parts.append("nginx missing")
    if wrk:
        v = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=5)
        parts.append((v.stdout + v.stderr).split("\n")[0].split(" [")[0].strip())
    return ", ".join(parts)


def main():
    ap = argparse.ArgumentParser(description="LLMProxy benchmark harness")
    ap.add_argument("bin_dir", help="directory holding llmproxy-worker, -mockllm, -streamload")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds of tiny loads, each scenario once; exit 1 if broken")
    ap.add_argument("--scenarios", default="1,2,3,4,5,6,7,8,9")
    ap.add_argument("--no-worker", action="store_true",
                    help="measure only the direct and nginx baselines")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes with taskset")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (full mode)")
    ap.add_argument("--streams", default="200,1000",
                    help="scenario 3's bursts of concurrent streams (full mode)")
    ap.add_argument("--sustain", default="1000,2000,5000,10000",
                    help="scenario 8's rungs of concurrent streams (full mode)")
    ap.add_argument("--soak", type=int, default=300, help="scenario 9's soak in seconds")
    ap.add_argument("--out", help="results file (default bench/RESULTS.md; not written by --smoke)")
    args = ap.parse_args()
    raise_nofile()
    missing = [t for t in ("wrk", "nginx") if not (shutil.which(t) or os.path.exists(f"/usr/sbin/{t}"))]
    if missing:
        log(f"{' and '.join(missing)} not installed (scripts/install-deps.sh installs them)")
        sys.exit(77 if args.smoke else 1)  # 77: ctest counts the smoke test as skipped
    bench = Bench(args)

    def on_signal(signum, _frame):
        bench.stop_all()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.exit(bench.run())


if __name__ == "__main__":
    main()
