#!/usr/bin/env python3
"""data20 benchmark: each route next to Spin's own floors, measured in the same run.

Starts a redis-server and several Spin apps on free loopback ports, drives them with
wrk (bounded duration, loopback only), and prints one table: requests/s, p50/p99
latency and each route's ratio to every read floor (READ_FLOORS): a hello-world component with no I/O and
one that makes exactly one outbound Redis GET of a registry-sized value, each built for
wasm32-wasip1 and for wasm32-wasip2, one GET of the same value through Spin's
key-value store on the redis provider (the host's pooled connection), and that GET
after one `increment` (the least a rate-limited cached read does), and three on
`spin-sdk` 6.0.0 (WASIp3, instances Spin 4 reuses across requests): hello, one key-value
GET, one outbound GET on a connection the instance keeps, and the product's gate script
(limiter, cache read, hit counter) on that connection, the least a rate-limited cached
read does. POST /api/run runs
next to the accept floors (one SQLite commit at synchronous=FULL, one outbound PUBLISH,
and both; on WASIp3 also both as a group commit, where the requests an instance serves
at once share one multi-row INSERT and one PUBLISH, the product's design). Then the end-to-end job throughput: wrk POSTs small text_stats jobs while a
subscriber counts `job_completed` on `job_updates`, for the product and for the job
floor (bench/jobs-floor.toml: the accept floor plus a Redis-trigger worker that drains,
claims, completes and announces jobs with no product logic) and the same floor with the
WASIp3 group-commit accept floor (bench/jobs-floor-p3.toml), also behind the product's
gate script (floor_gate=true: the rate limiter's round trip first). And one worker alone
draining a queue of small text_stats jobs: its CPU per job, the cost of its batches.

Each route is measured in several rounds, interleaved with the floors (these machines
are noisy: a burst of noise then hits one round of every route, not every round of one
route), and the table gives medians. Besides req/s and latency it gives the CPU time
each request cost the Spin processes and Redis, read from /proc around each run.

Usage: scripts/bench [--duration S] [--rounds N] [--connections N] [--out FILE]
"""
import argparse, http.client, json, os, re, signal, socket, sqlite3, statistics
import subprocess, sys, tempfile, threading, time, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
procs = []


# The read floors every route is compared with: (ratio column, row label, path under /floor).
READ_FLOORS = [
    ("hello p2", "floor: hello, wasip2", "hello"),
    ("hello p1", "floor: hello, wasip1", "hello-wasip1"),
    ("GET p2", "floor: one outbound GET, wasip2", "redis-get"),
    ("GET p1", "floor: one outbound GET, wasip1", "redis-get-wasip1"),
    ("KV GET p2", "floor: one key-value GET (pooled), wasip2", "kv-get"),
    ("incr + KV GET p2", "floor: increment + key-value GET (pooled), wasip2", "kv-limited-get"),
    ("hello p3", "floor: hello, WASIp3 (sdk 6, reused)", "p3/hello"),
    ("KV GET p3", "floor: one key-value GET, WASIp3", "p3/kv-get"),
    ("kept GET p3", "floor: one outbound GET on a kept connection, WASIp3", "p3/redis-get"),
    ("gated GET p3", "floor: the gate script (limiter + cache read) on a kept connection, WASIp3", "p3/gated-get"),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(cmd, env=None, log=None):
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                         stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                         start_new_session=True)
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def wait_http(port, path, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"bench: nothing answered on port {port}{path}")


class Redis:
    """A minimal RESP client: enough for SET, DEL, PUBSUB and SUBSCRIBE."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def cmd(self, *args):
        out = f"*{len(args)}\r\n".encode()
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += f"${len(a)}\r\n".encode() + a + b"\r\n"
        self.s.sendall(out)
        return self.read()

    def read(self):
        line = self.f.readline().rstrip(b"\r\n")
        t, rest = line[:1], line[1:]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data
        if t == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(f"bad reply {line!r}")


def start_app(name, redis_port, state_dir, workers=0, variables=None):
    port = free_port()
    env = {"DATA20_LISTEN": f"127.0.0.1:{port}", "DATA20_STATE_DIR": state_dir,
           "DATA20_WORKERS": str(workers), "SPIN_VARIABLE_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
           "SPIN_VARIABLE_RATE_LIMIT_MAX": "1000000000"}
    for k, v in (variables or {}).items():
        env[f"SPIN_VARIABLE_{k.upper()}"] = str(v)
    os.makedirs(state_dir, exist_ok=True)
    log = open(os.path.join(os.path.dirname(state_dir), f"{name}.log"), "w")
    proc = spawn([os.path.join(ROOT, "scripts/up")], env, log)
    wait_http(port, "/api/health")
    return port, proc.pid


def start_jobs_floor(name, work, gate=False):
    """Starts bench/{name}.toml on a redis-server of its own; answers (port, redis port).
    gate: `POST /api/run` passes the product's gate script first (`floor_gate`)."""
    redis_port = free_port()
    spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no"])
    time.sleep(0.5)
    port = free_port()
    label = f"{name}-gated" if gate else name
    env = {"SPIN_VARIABLE_REDIS_URL": f"redis://127.0.0.1:{redis_port}"}
    if gate:
        env["SPIN_VARIABLE_FLOOR_GATE"] = "true"
    spawn(["spin", "up", "-f", f"bench/{name}.toml", "--listen", f"127.0.0.1:{port}",
           "--state-dir", os.path.join(work, label)],
          env, open(os.path.join(work, f"{label}.log"), "w"))
    wait_http(port, "/api/stats")
    return port, redis_port


def seed_jobs(state_dir, n):
    """Creates the schema and n completed jobs directly in the app's SQLite file."""
    os.makedirs(state_dir, exist_ok=True)
    db = sqlite3.connect(os.path.join(state_dir, "sqlite_db.db"))
    for f in sorted(os.listdir(os.path.join(ROOT, "migrations"))):
        db.executescript(open(os.path.join(ROOT, "migrations", f)).read())
    now = int(time.time() * 1000) - n
    rows = []
    for i in range(n):
        t = now + i
        rows.append((str(uuid.UUID(int=(t << 80) | (0x7 << 76) | (0x8 << 60) | i)), "build_graph", "{}",
                     "completed" if i % 5 else "failed", t, t, t + 3, 3, i % 5 and None or "bad input", 1, "worker"))
    db.executemany("INSERT INTO jobs (id, tool, params, status, created_ms, started_ms, finished_ms, "
                   "duration_ms, error, attempts, dispatch) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()


def queued_or_running(port):
    """The app's jobs still queued or running (its /api/stats)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/stats")
    by_status = json.loads(c.getresponse().read())["jobs"]["by_status"]
    return by_status.get("queued", 0) + by_status.get("running", 0)


def wait_drained(port, timeout=300):
    """Waits until the app has no queued or running job left."""
    end = time.time() + timeout
    while time.time() < end:
        if queued_or_running(port) == 0:
            return
        time.sleep(0.2)
    sys.exit("bench: the worker did not finish the accepted jobs in time")


def cpu_seconds(pgid):
    """User + system CPU time of every live process in process group `pgid`."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wrk(url, duration, connections, script=None):
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def lat(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": lat(50), "p99": lat(99), "n": total,
            "errors": int(non2xx.group(1)) if non2xx else 0}


def median_of(runs):
    """The per-key median of several wrk results (errors are summed)."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "spin_us", "redis_us")}
    out["errors"] = sum(r["errors"] for r in runs)
    return out


def peak_rss_mb():
    """Peak RSS (VmHWM) of each Spin process, in MiB."""
    peaks = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"spin") and b"trigger" in cmdline:
            m = re.search(r"VmHWM:\s+(\d+) kB", status)
            kind = " ".join(a.decode() for a in cmdline[1:3])
            peaks[kind] = max(peaks.get(kind, 0), int(m.group(1)) / 1024)
    return peaks


def round_trip(port, redis_port, n):
    sub = Redis(redis_port)
    sub.cmd("SUBSCRIBE", "job_updates")
    body = json.dumps({"tool": "build_graph", "params": {"edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}]}})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/api/run", body, {"content-type": "application/json"})
        r = c.getresponse()
        job = json.loads(r.read())["job_id"]
        while True:
            msg = sub.read()
            if msg[0] == b"message":
                e = json.loads(msg[2])
                if e["job_id"] == job and e["event"] in ("job_completed", "job_failed"):
                    break
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    pick = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    return {"p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "n": n}


JOBS_LUA = r"""
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"tool":"text_stats","params":{"text":"The cat sat on the mat. The cat ran after the dog! Did the dog see it?"}}'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) accepted = 0; other = 0 end
function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do a = a + t:get("accepted"); o = o + t:get("other") end
  io.write(string.format("ACCEPTED %d %d %.6f\n", a, o, summary.duration / 1e6))
end
"""


def jobs_throughput(port, redis_port, work, duration):
    """End-to-end jobs/s: completed / (last job_completed - first request)."""
    wait_drained(port)
    script = os.path.join(work, "jobs.lua")
    open(script, "w").write(JOBS_LUA)
    sub = socket.create_connection(("127.0.0.1", redis_port))
    sub.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$11\r\njob_updates\r\n")
    confirm = b""
    while not confirm.endswith(b":1\r\n"):
        confirm += sub.recv(4096)
    state = {"count": 0, "last": 0.0}

    def count():
        carry, pattern = b"", b'"job_completed"'
        while True:
            try:
                chunk = sub.recv(1 << 16)
            except OSError:
                return
            if not chunk:
                return
            data = carry + chunk
            n = data.count(pattern)
            if n:
                state["count"] += n
                state["last"] = time.time()
            carry = data[-(len(pattern) - 1):]
    threading.Thread(target=count, daemon=True).start()
    t0 = time.time()
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{duration}s", "-s", script,
                          f"http://127.0.0.1:{port}/api/run"], capture_output=True, text=True, check=True).stdout
    t_end = time.time()
    accepted, other, wrk_s = re.search(r"ACCEPTED (\d+) (\d+) ([\d.]+)", out).groups()
    accepted, other, wrk_s = int(accepted), int(other), float(wrk_s)
    deadline = t_end + 60
    while time.time() < deadline and not (state["count"] >= accepted and time.time() - state["last"] >= 1):
        time.sleep(0.05)
    sub.close()
    done = state["count"]
    return {"jobs_s": done / (state["last"] - t0) if done else 0.0, "accept_s": accepted / wrk_s,
            "lag_s": state["last"] - t_end if done else float("nan"), "non202": other,
            "missing": max(0, accepted - done)}


def worker_drain(redis_port, work, duration):
    """One worker alone draining a queue: jobs queued by wrk against an app with no
    worker (and no inline runs), then one `spin up -c job-worker` on the same state
    directory, woken once. Answers its Spin CPU per job: what a worker's batches cost,
    with nothing else running."""
    state = os.path.join(work, "drain")
    port, _ = start_app("drain", redis_port, state, variables={"inline_runs": "false"})
    script = os.path.join(work, "jobs.lua")
    open(script, "w").write(JOBS_LUA)
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{duration}s", "-s", script,
                          f"http://127.0.0.1:{port}/api/run"], capture_output=True, text=True, check=True).stdout
    queued = int(re.search(r"ACCEPTED (\d+)", out).group(1))
    worker = spawn(["spin", "up", "-f", "spin.toml", "-c", "job-worker", "--state-dir", state,
                    "--variable", "worker_id=drain"],
                   # One runtime thread, as data20-supervisor runs a one-loop worker.
                   {"SPIN_VARIABLE_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
                    "TOKIO_WORKER_THREADS": "1"},
                   open(os.path.join(work, "drain-worker.log"), "w"))
    r = Redis(redis_port)
    end = time.time() + 60
    while r.cmd("PUBSUB", "NUMSUB", "job_queue")[1] < 1:
        if time.time() > end:
            sys.exit("bench: the draining worker did not subscribe")
        time.sleep(0.2)
    cpu0 = cpu_seconds(worker.pid)
    # A Redis trigger counts as subscribed from its first SUBSCRIBE, and a message sent
    # before it reads them can be missed (seen once): wake it again until it starts.
    for _ in range(10):
        r.cmd("PUBLISH", "job_queue", '{"event":"job_created"}')
        time.sleep(2)
        if queued_or_running(port) < queued:
            break
    wait_drained(port)
    return {"jobs": queued, "worker_us": (cpu_seconds(worker.pid) - cpu0) / max(queued, 1) * 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--jobs-duration", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    for tool in ("wrk", "redis-server", "spin"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode:
            sys.exit(f"bench: {tool} is not on PATH (scripts/bench installs wrk with apt; run scripts/setup)")
    work = tempfile.mkdtemp(prefix="data20-bench-")
    try:
        redis_port = free_port()
        redis_proc = spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        time.sleep(0.5)
        r = Redis(redis_port)

        floors = free_port()
        floors_config = os.path.join(work, "floors-runtime-config.toml")
        open(floors_config, "w").write(
            f'[key_value_store.default]\ntype = "redis"\nurl = "redis://127.0.0.1:{redis_port}"\n')
        floors_proc = spawn(["spin", "up", "-f", "bench/spin.toml", "--listen", f"127.0.0.1:{floors}",
               "--state-dir", os.path.join(work, "floors"), "--runtime-config-file", floors_config],
              {"SPIN_VARIABLE_REDIS_URL": f"redis://127.0.0.1:{redis_port}"},
              open(os.path.join(work, "floors.log"), "w"))
        wait_http(floors, "/floor/hello")

        # The job floors, each on a Redis of its own: their workers listen on
        # job_updates, and none may wake another's or the product's. The WASIp3 one takes
        # the accept floor of bench/floor-p3 (an instance Spin reuses, its connections
        # kept), as the product's run component is.
        jobs_floor, jobs_floor_redis = start_jobs_floor("jobs-floor", work)
        jobs_floor_p3, jobs_floor_p3_redis = start_jobs_floor("jobs-floor-p3", work)
        # The same behind the product's gate (its limiter script, one round trip): the
        # least a rate-limited durable submission costs.
        jobs_floor_gated, jobs_floor_gated_redis = start_jobs_floor("jobs-floor-p3", work, gate=True)

        main_port, main_pg = start_app("main", redis_port, os.path.join(work, "main"), workers=1)
        nocache_port, nocache_pg = start_app("nocache", redis_port, os.path.join(work, "nocache"),
                                 variables={"tool_cache_ttl": 0, "job_status_ttl": 0})
        seed_jobs(os.path.join(work, "jobs100"), 100)
        seed_jobs(os.path.join(work, "jobs100k"), 100_000)
        small_port, small_pg = start_app("jobs100", redis_port, os.path.join(work, "jobs100"))
        big_port, big_pg = start_app("jobs100k", redis_port, os.path.join(work, "jobs100k"))

        # The floor's value is the registry itself, so both move the same bytes.
        registry = http.client.HTTPConnection("127.0.0.1", main_port)
        registry.request("GET", "/api/tools")
        r.cmd("SET", "bench:floor", registry.getresponse().read())
        c = http.client.HTTPConnection("127.0.0.1", main_port)
        c.request("POST", "/api/run", json.dumps({"tool": "build_graph", "params": {"edges": [{"source": "a", "target": "b"}]}}),
                  {"content-type": "application/json"})
        job = json.loads(c.getresponse().read())["job_id"]
        time.sleep(0.5)

        post_script = os.path.join(work, "post.lua")
        open(post_script, "w").write(
            'wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
            'wrk.body = \'{"tool":"build_graph","params":{"edges":[{"source":"a","target":"b"}]}}\'\n')

        d, n = args.duration, args.connections
        floor_base = f"http://127.0.0.1:{floors}/floor"
        routes = [
            *((label, f"{floor_base}/{path}", floors_proc.pid, None) for _, label, path in READ_FLOORS),
            ("GET /api/tools (HIT)", f"http://127.0.0.1:{main_port}/api/tools", main_pg, None),
            ("GET /api/tools (MISS)", f"http://127.0.0.1:{nocache_port}/api/tools", nocache_pg, None),
            ("GET /api/jobs/{id} (HIT)", f"http://127.0.0.1:{main_port}/api/jobs/{job}", main_pg, None),
            ("GET /api/jobs/{id} (MISS)", f"http://127.0.0.1:{nocache_port}/api/jobs/{job}", nocache_pg, None),
            ("GET /api/jobs?limit=50 (100 jobs)", f"http://127.0.0.1:{small_port}/api/jobs?limit=50", small_pg, None),
            ("GET /api/jobs?limit=50 (100k jobs)", f"http://127.0.0.1:{big_port}/api/jobs?limit=50", big_pg, None),
            ("GET /api/health", f"http://127.0.0.1:{main_port}/api/health", main_pg, None),
            # Measured after the others; each round of the product's POST is followed by
            # a wait until the worker has run every accepted job, so the backlog does
            # not load the next runs.
            ("floor: SQLite commit (FULL), wasip2", f"{floor_base}/insert", floors_proc.pid, post_script),
            ("floor: outbound PUBLISH, wasip2", f"{floor_base}/publish", floors_proc.pid, post_script),
            ("floor: commit + PUBLISH (accept), wasip2", f"{floor_base}/accept", floors_proc.pid, post_script),
            ("floor: commit + PUBLISH (accept), WASIp3", f"{floor_base}/p3/accept", floors_proc.pid, post_script),
            ("floor: group commit + PUBLISH (accept), WASIp3", f"{floor_base}/p3/accept-grouped", floors_proc.pid,
             post_script),
            ("POST /api/run (accept)", f"http://127.0.0.1:{main_port}/api/run", main_pg, post_script),
        ]
        runs = {label: [] for label, *_ in routes}
        print(f"bench: wrk, 1 thread, {n} connections, {d} s per route, {args.rounds} rounds",
              file=sys.stderr)
        # The POSTs (the accept floors and the product's) go last, interleaved among
        # themselves: their rows and backlogs should not load the reads.
        posts = [r for r in routes if r[3]]
        order = [(rnd, r) for rnd in range(args.rounds) for r in routes if not r[3]]
        order += [(rnd, r) for rnd in range(args.rounds) for r in posts]
        for rnd, (label, url, pgid, script) in order:
            spin0, redis0 = cpu_seconds(pgid), cpu_seconds(redis_proc.pid)
            res = wrk(url, d, n, script)
            if script and pgid == main_pg:
                # The CPU of a POST includes running the job it queued.
                wait_drained(main_port)
            spin1, redis1 = cpu_seconds(pgid), cpu_seconds(redis_proc.pid)
            res["spin_us"] = (spin1 - spin0) / max(res["n"], 1) * 1e6
            res["redis_us"] = (redis1 - redis0) / max(res["n"], 1) * 1e6
            runs[label].append(res)
            print(f"  round {rnd + 1}: {label:<34} {res['rps']:>7.0f} req/s", file=sys.stderr)
        rows = [(label, median_of(runs[label])) for label, *_ in routes]
        by_label = dict(rows)
        throughput, floor_throughput, floor_p3_throughput, floor_gated_throughput = [], [], [], []
        for _ in range(args.rounds):
            throughput.append(jobs_throughput(main_port, redis_port, work, args.jobs_duration))
            floor_throughput.append(jobs_throughput(jobs_floor, jobs_floor_redis, work, args.jobs_duration))
            floor_p3_throughput.append(
                jobs_throughput(jobs_floor_p3, jobs_floor_p3_redis, work, args.jobs_duration))
            floor_gated_throughput.append(
                jobs_throughput(jobs_floor_gated, jobs_floor_gated_redis, work, args.jobs_duration))
        drain = worker_drain(redis_port, work, args.jobs_duration)
        rt = round_trip(main_port, redis_port, 200)
        rss = peak_rss_mb()

        floor_labels = [label for _, label, _ in READ_FLOORS]
        columns = ["req/s", "p50 ms", "p99 ms", *(f"× {column}" for column, _, _ in READ_FLOORS),
                   "Spin CPU µs/req", "Redis CPU µs/req", "non-2xx"]
        lines = ["| route | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        for label, res in rows:
            ratios = " | ".join(f"{res['rps'] / by_label[f]['rps']:.2f}" for f in floor_labels)
            lines.append(f"| {label} | {res['rps']:.0f} | {res['p50']:.2f} | {res['p99']:.2f} | "
                         f"{ratios} | {res['spin_us']:.0f} | {res['redis_us']:.0f} | {res['errors']} |")
        big = by_label["GET /api/jobs?limit=50 (100k jobs)"]
        small = by_label["GET /api/jobs?limit=50 (100 jobs)"]
        lines.append("")
        tools_hit, tools_miss = by_label["GET /api/tools (HIT)"], by_label["GET /api/tools (MISS)"]
        job_hit, job_miss = by_label["GET /api/jobs/{id} (HIT)"], by_label["GET /api/jobs/{id} (MISS)"]
        lines.append(f"HIT against MISS, req/s: /api/tools ×{tools_hit['rps'] / tools_miss['rps']:.2f}, "
                     f"/api/jobs/{{id}} ×{job_hit['rps'] / job_miss['rps']:.2f}.")
        post, accept_floor = by_label["POST /api/run (accept)"], by_label["floor: commit + PUBLISH (accept), wasip2"]
        accept_floor_p3 = by_label["floor: commit + PUBLISH (accept), WASIp3"]
        grouped_floor = by_label["floor: group commit + PUBLISH (accept), WASIp3"]
        lines.append(f"POST /api/run against the accept floors: req/s ×{post['rps'] / accept_floor['rps']:.2f} "
                     f"the wasip2 one, ×{post['rps'] / accept_floor_p3['rps']:.2f} the WASIp3 one, "
                     f"×{post['rps'] / grouped_floor['rps']:.2f} the WASIp3 group commit "
                     f"(the POST row's CPU includes running the job).")
        jobs_src = open(os.path.join(ROOT, "crates/jobs/src/lib.rs")).read()
        jobs_const = lambda name, ty: re.search(
            rf"pub const {name}: {ty} = (?:Duration::from_millis\()?(\d+)", jobs_src).group(1)
        lines.append(f"Worker batch size (data20_jobs::BATCH_SIZE): {jobs_const('BATCH_SIZE', 'u32')} jobs per claim; "
                     f"after a claim with room for more, a wait of {jobs_const('LINGER_PER_JOB', 'Duration')} ms "
                     f"per job it took, at most {jobs_const('MAX_LINGER', 'Duration')} ms; "
                     f"worker loops per process: scripts/up's default (DATA20_WORKER_LOOPS).")
        lines.append(f"Worker alone (bench/run.py worker_drain): {drain['jobs']} queued text_stats jobs "
                     f"drained by one worker, {drain['worker_us']:.0f} µs of its Spin CPU a job.")
        for name, runs_ in (("End-to-end jobs", throughput), ("Job floor (bench/jobs-floor.toml)", floor_throughput),
                            ("Job floor on WASIp3 (bench/jobs-floor-p3.toml)", floor_p3_throughput),
                            ("Job floor on WASIp3 behind the gate (floor_gate=true)", floor_gated_throughput)):
            med = lambda k: statistics.median(t[k] for t in runs_)
            rounds_jobs = ", ".join(f"{t['jobs_s']:.0f}" for t in runs_)
            lines.append(f"{name} (wrk -t2 -c8 -d{args.jobs_duration}s POSTing a small text_stats job, "
                         f"completions counted on job_updates; median of {len(runs_)}): "
                         f"{med('jobs_s'):.0f} jobs/s completed, {med('accept_s'):.0f}/s accepted, "
                         f"drain lag {med('lag_s'):.2f} s, non-202 {sum(t['non202'] for t in runs_)}, "
                         f"missing {sum(t['missing'] for t in runs_)} "
                         f"(rounds: {rounds_jobs}).")
        lines.append(f"Job round trip (POST /api/run → job_completed seen by a Redis subscriber, small build_graph, "
                     f"{rt['n']} sequential jobs): p50 {rt['p50']:.1f} ms, p95 {rt['p95']:.1f} ms, p99 {rt['p99']:.1f} ms.")
        lines.append(f"List latency at 100k jobs vs 100 jobs: p50 ×{big['p50'] / small['p50']:.2f}, "
                     f"req/s ×{big['rps'] / small['rps']:.2f}.")
        lines.append("Peak RSS (VmHWM), the largest Spin process of each kind: " +
                     ", ".join(f"{k}: {v:.0f} MiB" for k, v in sorted(rss.items())) + ".")
        lines.append(f"Machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}; "
                     f"{subprocess.run(['spin', '--version'], capture_output=True, text=True).stdout.strip()}; "
                     f"wrk -t1 -c{n} -d{d}s, median of {args.rounds} interleaved rounds.")
        report = "\n".join(lines)
        print(report)
        if args.out:
            open(args.out, "w").write(report + "\n")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
