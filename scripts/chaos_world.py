#!/usr/bin/env python3
"""The chaos suite's scenarios (scripts/chaos.sh runs this; docs/reliability.md explains every figure).

Each scenario runs the real workers (.build/debug) as processes against RabbitMQ, Redis and moto, in a
simulated world (scripts/fleet_world.py) of its own: its own id names the exchange, queues, Redis keys, broker
users, moto resources and targets, so scenarios and other runs share the servers without noticing. It does
harm (SIGKILL, SIGSTOP, AWS faults, a partition, a broker or Redis restart), then measures from what really
happened: the proxy's log of every mutating AWS call (each worker has its own access key id, so each call has
an actor), the workers' own logs, the dead-letter queues (management API), and `recoveryctl status`.

Usage: chaos_world.py <dir> [--ci] [--seed N] scenario... (environment: AMQP_URL, RABBITMQ_MANAGEMENT_URL,
REDIS_URL, AWS_ENDPOINT_URL as scripts/services.sh env prints them). Prints one RESULT line per scenario and
writes <dir>/results.json.
"""
import argparse
import base64
import collections
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from fleet_world import DESTRUCTIVE, DR, MUTATING, PRIMARY, Missed, World, say

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build", "debug")
SERVICES = os.path.join(ROOT, "scripts", "services.sh")
PHASE_TIMEOUT = float(os.environ.get("CHAOS_PHASE_TIMEOUT", "150"))
GRACE = 5

# Short timings (docs/configuration.md), as the demo's: a rung of the ladder takes seconds, not hours.
DEFAULTS = {"dr_region": DR, "probe_interval": 1, "probe_timeout": 2, "failure_threshold": 3, "recovery_threshold": 2,
            "grace_period": GRACE, "restart_verification": 90, "reprovision_verification": 90, "failover_verification": 90}
KIND_SETTINGS = {
    "probe": {"STATUS_INTERVAL": "5"},
    # The brake stays out of the way except in the brake scenario: several targets walk the ladder at once.
    "decision": {"BRAKE_MAX_OUTAGE_SHARE": "1", "BRAKE_MAX_ACTIONS_PER_HOUR": "1000"},
    "actuator": {"ACTUATOR_CONCURRENCY": "2", "LOCK_TTL": "8", "LOCK_RETRY_INTERVAL": "1", "REBOOT_SETTLE": "1",
                 "RESTART_HEALTH_TIMEOUT": "15", "HEALTH_POLL_INTERVAL": "1", "HEALTH_CHECK_TIMEOUT": "2",
                 "WAIT_INTERVAL": "1", "INSTANCE_WAIT_TIMEOUT": "60", "IMAGE_WAIT_TIMEOUT": "60",
                 "DNS_WAIT_TIMEOUT": "60", "RETRY_DELAY": "1"},
    "notifier": {"SLACK_USERNAME": "recovery-chaos"},
    "recorder": {},
}
REPLICAS = ["probe-1", "probe-2", "decision-1", "decision-2", "actuator-1", "actuator-2", "notifier-1", "recorder-1"]
KINDS = ("probe", "predictor", "decision", "actuator", "notifier", "recorder", "operator", "console")


class ScenarioTimeout(Exception):
    pass


def log(text):
    say("chaos", text)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def parse_ts(text):
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", text or "")
    if not m:
        return None
    whole = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return whole.timestamp() + float(m.group(2) or 0)


class Management:
    """RabbitMQ's management API (guest:guest on loopback)."""

    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.api = f"{parsed.scheme}://{parsed.hostname}:{parsed.port}/api/"
        user, password = parsed.username or "guest", parsed.password or "guest"
        self.auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = dict(self.auth, **({"Content-Type": "application/json"} if data else {}))
        req = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=15) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def queues(self, prefix):
        return [q["name"] for q in self.call("GET", "queues/%2f?columns=name") if q["name"].startswith(prefix + ".")]

    def dead_letters(self, prefix):
        """Every message in the run's `*.dead` queues, read (and put back) with its reason."""
        found = []
        for name in self.queues(prefix):
            if not name.endswith(".dead"):
                continue
            got = self.call("POST", f"queues/%2f/{urllib.parse.quote(name, safe='')}/get",
                            {"count": 500, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 300})
            for m in got or []:
                props = m.get("properties", {})
                headers = props.get("headers") or {}
                deaths = headers.get("x-death") or []
                reason = headers.get("x-reject-reason") or (deaths[0].get("reason") if deaths else "?")
                found.append({"queue": name, "reason": str(reason)[:200], "type": props.get("type"),
                              "message_id": props.get("message_id"), "routing_key": m.get("routing_key"),
                              "x_death": [{k: d.get(k) for k in ("reason", "queue", "count")} for d in deaths]})
        return found

    def delete_run(self, prefix):
        for kind in ("queues", "exchanges"):
            for item in self.call("GET", f"{kind}/%2f?columns=name"):
                if item["name"] == prefix or item["name"].startswith(prefix + "."):
                    self.call("DELETE", f"{kind}/%2f/" + urllib.parse.quote(item["name"], safe=""))
        for item in self.call("GET", "users"):
            if item["name"].startswith(prefix + "-"):
                self.call("DELETE", "users/" + urllib.parse.quote(item["name"], safe=""))


class Fleet:
    """The workers of one scenario, as real processes: started, SIGKILLed, SIGSTOPped, restarted by name."""

    def __init__(self, run, world, replicas=REPLICAS, settings=None, env=None, defaults=None, amqp_url=None,
                 redis_url=None, management_url=None):
        self.run, self.world, self.id = run, world, run.id
        self.replicas = list(replicas)
        self.amqp_url = amqp_url or os.environ["AMQP_URL"]
        self.redis_url = redis_url or os.environ["REDIS_URL"]
        self.management = Management(management_url or os.environ["RABBITMQ_MANAGEMENT_URL"])
        self.settings = {k: dict(v) for k, v in KIND_SETTINGS.items()}
        for kind, values in (settings or {}).items():
            self.settings.setdefault(kind, {}).update(values)
        self.extra_env = env or {}  # replica name -> {variable: value}
        self.procs, self.lock = {}, threading.RLock()
        self.ports = dict(zip(self.replicas, free_ports(len(self.replicas))))
        self.kills = collections.Counter()
        self.passwords = {k: os.urandom(12).hex() for k in KINDS}
        self.keys = {f"AKIDCHAOS{name.upper().replace('-', '')}": name for name in self.replicas}
        self.targets_path = os.path.join(run.dir, "targets.json")
        with open(self.targets_path, "w") as f:
            json.dump(world.targets_file(dict(DEFAULTS, **(defaults or {}))), f)

    def actor(self, key):
        """The replica that signed a call with access key id `key` (None: not one of this fleet's workers)."""
        return self.keys.get(key)

    def identities(self):
        ids = {f"{k.upper()}_USERS": f"{self.id}-{k}" for k in KINDS if k != "operator"}
        ids.update(OPERATORS=f"{self.id}-operator", RABBITMQ_OPERATOR_USER=f"{self.id}-operator")
        return ids

    def amqp_for(self, kind):
        u = urllib.parse.urlparse(self.amqp_url)
        return f"amqp://{self.id}-{kind}:{self.passwords[kind]}@{u.hostname}:{u.port}/%2f"

    def apply_topology(self):
        env = dict(os.environ, **self.identities(), FLEET_PREFIX=self.id, AMQP_URL=self.amqp_url,
                   RABBITMQ_MANAGEMENT_URL=self.management.api[:-len("/api/")])
        env.update({f"RABBITMQ_{k.upper()}_PASSWORD": p for k, p in self.passwords.items()})
        out = subprocess.run([os.path.join(BIN, "recoveryctl"), "topology", "apply", "--identities"], env=env,
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"topology apply failed: {out.stderr.strip()[-400:]}")

    def env_for(self, name):
        kind = name.rsplit("-", 1)[0]
        key = next(k for k, v in self.keys.items() if v == name)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "AMQP_", "REDIS_", "RABBITMQ_")) and "proxy" not in k.lower()}
        env.update(self.identities())
        env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{self.world.aws_port}", AWS_REGION=PRIMARY, DR_REGION=DR,
                   AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY="chaos-fleet-secret", FLEET_PREFIX=self.id,
                   FLEET_TAG=self.id, TARGETS_FILE=self.targets_path, DISCOVERY_INTERVAL="2", LOG_LEVEL="info",
                   AMQP_URL=self.amqp_for(kind), REDIS_URL=self.redis_url, WORKER_ID=f"{name}@{self.id}",
                   METRICS_PORT=str(self.ports[name]))
        env.update(self.settings.get(kind, {}))
        if kind == "notifier":
            env["SLACK_WEBHOOK_URL"] = self.world.slack_url()
        if kind == "recorder":
            env.update(RECOVERY_EVENTS_TABLE=f"{self.id}-recovery-events", PREDICTION_EVENTS_TABLE=f"{self.id}-prediction-events")
        env.update(self.extra_env.get(name, {}))
        return env

    def start(self, name):
        kind = name.rsplit("-", 1)[0]
        with self.lock:
            with open(os.path.join(self.run.logs, f"{name}.log"), "ab") as err:
                p = subprocess.Popen([os.path.join(BIN, kind)], env=self.env_for(name), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
            self.procs[name] = p
            with open(os.path.join(self.run.dir, "pids"), "a") as f:  # scripts/chaos.sh ends leftovers by these
                f.write(f"{p.pid}\n")
        return p

    def pid(self, name):
        return self.procs[name].pid

    def healthy(self, name):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/healthz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, names=None, timeout=90):
        deadline = time.time() + timeout
        for name in names or self.replicas:
            while not self.healthy(name):
                with self.lock:
                    p = self.procs.get(name)
                    if p is not None and p.poll() is not None:
                        tail = open(os.path.join(self.run.logs, f"{name}.log"), errors="replace").read()[-300:]
                        raise Missed(f"{name} exited (status {p.returncode}): {tail}")
                if time.time() > deadline:
                    raise Missed(f"{name} not healthy within {timeout} s")
                time.sleep(0.3)

    def start_all(self):
        self.apply_topology()
        for name in self.replicas:
            self.start(name)
        self.wait_healthy()

    def kill(self, name, sig=signal.SIGKILL):
        """Sends `sig` to the replica; returns True when a live process received it."""
        with self.lock:
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                return False
            os.kill(p.pid, sig)
            if sig == signal.SIGKILL:
                p.wait()
                self.kills[name] += 1
            return True

    def restart(self, name):
        """SIGKILL, then start again at once (same WORKER_ID, ports and access key)."""
        with self.lock:
            killed = self.kill(name)
            self.start(name)
        return killed

    def stop_all(self):
        with self.lock:
            live = [p for p in self.procs.values() if p.poll() is None]
            for p in live:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    p.terminate()
                except ProcessLookupError:
                    pass
            deadline = time.time() + 5  # a graceful stop first; the run's queues and keys are deleted anyway
            for p in live:
                try:
                    p.wait(max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def metrics(self, name):
        """The replica's /metrics as {'name{labels}': value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
        return out

    def status(self):
        """`recoveryctl status --json --no-discovery`: each target's state as the decision worker stored it."""
        env = dict(os.environ, FLEET_PREFIX=self.id, REDIS_URL=self.redis_url, LOG_LEVEL="error", AWS_REGION=PRIMARY)
        out = subprocess.run([os.path.join(BIN, "recoveryctl"), "status", "--json", "--no-discovery"], env=env,
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"recoveryctl status failed: {out.stderr.strip()[-300:]}")
        report = json.loads(out.stdout)
        return {t["target"]: t for t in report["targets"]}, report["brake"]

    def dead_letters(self):
        return self.management.dead_letters(self.id)

    def cleanup(self):
        try:
            self.management.delete_run(self.id)
        except Exception as e:
            log(f"(broker clean-up incomplete: {e})")
        try:
            keys = subprocess.run(["redis-cli", "-u", self.redis_url, "--scan", "--pattern", f"{self.id}:*"],
                                  capture_output=True, text=True, timeout=30).stdout.split()
            for i in range(0, len(keys), 100):
                subprocess.run(["redis-cli", "-u", self.redis_url, "del", *keys[i:i + 100]], capture_output=True, timeout=30)
        except Exception as e:
            log(f"(Redis clean-up incomplete: {e})")

    # ------------------------------------------------------------ what the actuators wrote

    def log_lines(self, name):
        path = os.path.join(self.run.logs, f"{name}.log")
        if not os.path.exists(path):
            return []
        lines = []
        for raw in open(path, errors="replace"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                pass  # a line cut by SIGKILL
        return lines

    def calling_lines(self):
        """Per actuator: (time, action, incident, step, fencing token) of each 'calling <service>:<action>' line,
        written right before the actuator's lease check passed and it sent the call."""
        out = {}
        for name in self.replicas:
            if not name.startswith("actuator"):
                continue
            rows = []
            for line in self.log_lines(name):
                m = re.match(r"calling (?:if [^:]+: )?\w+:(\w+)", line.get("msg", ""))
                if m:
                    rows.append((parse_ts(line.get("ts")), m.group(1), line.get("incident_id"), line.get("step"),
                                 line.get("fencing_token")))
            out[name] = rows
        return out


# ---------------------------------------------------------------- figures

def resource(call):
    """What a destructive call acts on: two accepted calls with the same action and resource for the same step
    are one duplicate (docs/reliability.md)."""
    p = call.params
    if call.action in ("RunInstances", "RegisterImage", "AllocateAddress"):
        return call.action  # one launch, one image, one address per step: a second one is a duplicate
    if call.action == "AssociateAddress":
        return f"{p.get('AllocationId')}->{p.get('InstanceId')}"
    if call.action == "ChangeResourceRecordSets":
        return p.get("Name")
    if call.action == "StopInstances" and p.get("Force") == "true":
        return "force:" + ",".join(call.ids)
    if call.action == "SendCommand":
        return f"{p.get('DocumentName')}@{p.get('InstanceIds')}"
    return ",".join(call.ids) or json.dumps({k: v for k, v in p.items() if k not in ("Action", "Version")}, sort_keys=True)


def attribute(fleet, calls):
    """Each call's purpose: the step (incident, step) of the actuator log line 'calling …' that preceded it, from
    the actor that signed it. Returns {call.n: (incident, step, fencing token)}."""
    lines = fleet.calling_lines()
    out = {}
    for c in calls:
        name = fleet.actor(c.actor)
        rows = [r for r in lines.get(name, []) if r[0] is not None and r[1] == c.action and r[0] <= c.t + 0.5
                and (c.target is None or (r[2] or "").startswith(f"inc-{c.target}-"))]
        if rows:
            row = max(rows, key=lambda r: r[0])
            out[c.n] = (row[2], row[3], row[4])
    return out


def destructive(world, start=0, targets=None):
    with world.lock:
        return [c for c in world.calls[start:] if c.accepted and not c.replayed and c.action in DESTRUCTIVE
                and (targets is None or c.target in targets)]


def duplicates(world, fleet):
    """Accepted destructive calls that repeat an earlier one for the same step (same action and resource).
    A repeat that changed something again is a duplicate; one that changed nothing (an address associated where
    it already was, a record set to the value it had, a stop of a stopped instance) is a no-op repeat.
    Returns (duplicates, no-op repeats, unattributed calls); each repeat as a line of text."""
    calls = destructive(world)
    purposes = attribute(fleet, calls)
    seen, dups, noops, unattributed = {}, [], [], []
    for c in calls:
        purpose = purposes.get(c.n)
        if purpose is None:
            unattributed.append(c)
            purpose = ("?", c.target, None)
        key = (purpose[0], purpose[1], c.action, resource(c))
        if key in seen:
            first = seen[key]
            text = (f"{c.action} {resource(c)} for {purpose[0]}/{purpose[1]}: call #{first.n} by "
                    f"{fleet.actor(first.actor)} (fence {purposes.get(first.n, (0, 0, '?'))[2]}) and #{c.n} by "
                    f"{fleet.actor(c.actor)} (fence {purpose[2]})")
            (dups if c.effect is not False else noops).append(text)
        else:
            seen[key] = c
    return dups, noops, unattributed


def lease_lost_lines(fleet):
    return [(name, line.get("ts"), line.get("reason", line.get("msg")))
            for name in fleet.replicas if name.startswith("actuator")
            for line in fleet.log_lines(name) if line.get("msg", "").startswith("lease lost")]


# ---------------------------------------------------------------- one run of one scenario

class Run:
    """What one scenario has: an id, a folder, its world and fleet, and its figures."""

    def __init__(self, base, name, ci, seed):
        self.name, self.ci, self.seed = name, ci, seed
        self.id = f"chaos-{os.urandom(3).hex()}"
        self.dir = os.path.join(base, f"{name}-{self.id}")
        self.logs = os.path.join(self.dir, "logs")
        os.makedirs(self.logs)
        self.rng = random.Random(seed)
        self.world = self.fleet = None
        self.figures, self.checks, self.notes = {}, [], []
        self.cleanups = []

    def make_world(self, names):
        self.world = World(self.id, os.environ["AWS_ENDPOINT_URL"], {n: n for n in names}, site_host="127.0.0.2",
                           verbose=bool(os.environ.get("CHAOS_VERBOSE")), calls_log=os.path.join(self.dir, "aws-calls.jsonl"))
        self.world.start()
        self.world.setup()
        return self.world

    def make_fleet(self, **kwargs):
        self.fleet = Fleet(self, self.world, **kwargs)
        return self.fleet

    def check(self, label, ok, detail=""):
        """A target the scenario must meet; a miss makes the scenario (and chaos.sh) fail."""
        self.checks.append((label, bool(ok), detail))
        if not ok:
            log(f"MISSED {label}: {detail}")

    def common_figures(self):
        """Dead letters and duplicates: measured in every scenario, target 0."""
        dead = self.fleet.dead_letters()
        reasons = collections.Counter(f"{d['queue'][len(self.id) + 1:]}:{d['reason']}" for d in dead)
        self.figures["dead_letters"] = len(dead)
        if dead:
            self.notes.append("dead letters: " + "; ".join(f"{k} ×{v}" for k, v in reasons.items()))
            with open(os.path.join(self.dir, "dead-letters.json"), "w") as f:
                json.dump(dead, f, indent=1)
        self.check("dead letters = 0", not dead, "; ".join(f"{k} ×{v}" for k, v in reasons.items()))
        dups, noops, unattributed = duplicates(self.world, self.fleet)
        self.figures["duplicate_destructive_calls"] = len(dups)
        self.figures["noop_repeats"] = len(noops)
        self.figures["destructive_calls"] = len(destructive(self.world))
        self.check("duplicate destructive calls = 0", not dups, " | ".join(dups))
        # Steps that acted after a newer incident of their target was declared: a request held up by kills and
        # lock waits, resumed when the ladder had moved on (the lock keeps the two steps apart, not in order).
        with self.world.lock:
            declared = [(n.t, n.fields.get("Incident"), n.title.split(" is down:")[0]) for n in self.world.notices
                        if " is down: outage declared" in n.title]
        calls = destructive(self.world)
        purposes = attribute(self.fleet, calls)
        stale = []
        for c in calls:
            incident = purposes.get(c.n, (None,))[0]
            own = min((t for t, i, _ in declared if i == incident), default=None)
            newer = [(t, i) for t, i, target in declared if target == c.target and own is not None and t > own and t < c.t and i != incident]
            if newer:
                stale.append(f"#{c.n} {c.action} {resource(c)} by {self.fleet.actor(c.actor)} for {incident}/{purposes[c.n][1]}, "
                             f"{c.t - min(newer)[0]:.0f} s after {min(newer)[1]} was declared")
        self.figures["stale_step_calls"] = len(stale)
        if stale:
            self.notes.append("destructive calls of a step made after a newer incident of its target was declared: " + " | ".join(stale))
        if noops:
            self.notes.append("no-op repeats (the same call again for the same step, changing nothing): " + " | ".join(noops))
        if unattributed:
            self.notes.append(f"{len(unattributed)} destructive call(s) not matched to an actuator log line: "
                              + ", ".join(f"#{c.n} {c.action} by {self.fleet.actor(c.actor) or c.actor}" for c in unattributed[:5]))
        lines = [line.get("msg", "") for name in self.fleet.replicas if name.startswith("actuator")
                 for line in self.fleet.log_lines(name)]
        self.figures["steps_handed_back"] = sum(1 for m in lines if m.startswith("request handed back to the queue"))
        self.figures["steps_resumed"] = sum(1 for m in lines if m.startswith("resuming a step another actor began"))
        with self.world.lock:
            faults = collections.Counter(c.fault for c in self.world.calls if c.fault)
        if faults:
            self.figures["faults_injected"] = dict(faults)

    def teardown(self):
        """The workers first, then the run's queues, users and keys, then what the scenario started (a private
        broker or Redis), then the world and its resources in moto."""
        if self.fleet:
            self.fleet.stop_all()
            self.fleet.cleanup()
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:
                log(f"(clean-up step failed: {e})")
        if self.world:
            self.world.stop()
            self.world.cleanup()


# ---------------------------------------------------------------- the ladder, for several targets at once

def status_states(fleet):
    targets, _ = fleet.status()
    return {t: s["state"] for t, s in targets.items()}


def wait_states(run, what, want, timeout=PHASE_TIMEOUT):
    """Polls `recoveryctl status` until want(target -> state) holds; returns the states."""
    deadline = time.time() + timeout
    while True:
        try:
            states = status_states(run.fleet)
        except Exception as e:  # Redis restarting, say
            states = {"?": str(e)}
        if want(states):
            return states
        if time.time() > deadline:
            raise Missed(f"{what}: not reached within {int(timeout)} s (states: {states})")
        time.sleep(1.5)


def rung(run, step, targets=None, on_declared=None, results=None):
    """Breaks every target so that `step` is what fixes it, then waits until each incident is terminal: recovered
    (site up, state monitoring) or, for notify_only, stopped with no destructive call. Returns per-target results."""
    world = run.world
    targets = targets or world.targets
    marks = (len(world.notices), len(world.calls))
    with world.lock:
        victims = {t: world.sites[t]["instance"] for t in targets}
    if step == "failover":
        world.region_down(PRIMARY)
    else:
        for t in targets:
            world.break_instance(victims[t], "hung" if step == "restart" else "dead")
    log(f"--- {step}: broke {', '.join(targets)} ({'region ' + PRIMARY + ' down' if step == 'failover' else 'hung' if step == 'restart' else 'dead instances'})")
    started = time.time()
    for t in targets:
        world.wait_for(f"{step}: outage notice for {t}", lambda: world.notice(f"{t} is down: outage declared", marks[0]), PHASE_TIMEOUT)
    if on_declared:
        on_declared()
    results = {} if results is None else results
    if step == "notify_only":
        wait_states(run, f"{step}: every incident stopped", lambda s: all(s.get(t, "").startswith("stopped") for t in targets))
        time.sleep(GRACE + 5)
        # Calls for these incidents (a late sub-step of the previous rung's step, such as stop_old, is not one).
        with world.lock:
            incidents = {n.fields.get("Incident") for n in world.notices[marks[0]:] if " is down: outage declared" in n.title}
        calls = destructive(world, marks[1], targets)
        purposes = attribute(run.fleet, calls)
        touched = [c for c in calls if purposes.get(c.n, (None,))[0] in incidents or c.n not in purposes]
        run.check(f"{step}: no destructive call", not touched, ", ".join(f"#{c.n} {c.action} by {run.fleet.actor(c.actor)}" for c in touched))
        results.update({t: "stopped" for t in targets})
        return results
    deadline = time.time() + PHASE_TIMEOUT
    missing = []
    for t in targets:  # the site up, the state closed, and the notice: closed in Redis but never announced is lost
        try:
            world.wait_for(f"{step}: {t} up again", lambda: world.sites[t]["up"], max(1, deadline - time.time()))
            wait_states(run, f"{step}: {t}'s incident closed", lambda s: s.get(t) == "monitoring", max(1, deadline - time.time()))
            n = world.wait_for(f"{step}: the recovered notice for {t}", lambda: world.notice(f"{t} recovered", marks[0]),
                               max(1, deadline - time.time()))
            results[t] = n.fields.get("Fixed by", "?").split(" ")[0]
        except Missed as e:
            missing.append(str(e))
    if missing:
        raise Missed("; ".join(missing))
    log(f"--- {step}: every incident closed after {int(time.time() - started)} s (fixed by: "
        + ", ".join(f"{t[len(run.id) + 1:]}={v}" for t, v in results.items()) + ")")
    time.sleep(3)  # a few healthy checks before the next break
    return results


def ladder(run, steps, before=None, on_declared=None):
    """Walks `steps` for every target; counts incidents opened and closed (terminal), also when a rung fails.
    `before` and `on_declared` map a step to what to do before its rung and once its outages are declared."""
    fixed = collections.Counter()
    run.figures.update(incidents=0, incidents_terminal=0)
    try:
        for step in steps:
            if before and step in before:
                before[step]()
            run.figures["incidents"] += len(run.world.targets)
            results = {}
            try:
                rung(run, step, results=results, on_declared=(on_declared or {}).get(step))
            finally:
                run.figures["incidents_terminal"] += len(results)
                fixed.update(f"{step}->{v}" for v in results.values())
    finally:
        run.figures["fixed_by"] = dict(fixed)
        run.check("every incident terminal", run.figures["incidents_terminal"] == run.figures["incidents"],
                  f"{run.figures['incidents_terminal']}/{run.figures['incidents']}")


# ---------------------------------------------------------------- the scenarios

def scenario_kills(run):
    """SIGKILL a random worker every 2-5 s (and an actuator shortly after one of its destructive calls), restart it
    at once, through the whole ladder of several targets."""
    names = ["a", "b"] if run.ci else ["a", "b", "c"]
    steps = ["restart", "reprovision"] if run.ci else ["restart", "reprovision", "failover", "notify_only"]
    world = run.make_world(names)
    fleet = run.make_fleet()
    fleet.start_all()
    world.wait_for("the probes' first checks", lambda: all(n >= 3 for n in world.health_requests.values()), 60)
    stop = threading.Event()
    kill_lock = threading.Lock()
    last_targeted = {}
    targeted = collections.Counter()

    def kill(name, why):
        with kill_lock:
            if stop.is_set():
                return
            if fleet.restart(name):
                log(f"SIGKILL {name} ({why}); restarted")

    def killer():
        while not stop.wait(run.rng.uniform(2, 5)):
            kill(run.rng.choice(fleet.replicas), "random")

    def after_call(call):
        name = fleet.actor(call.actor)
        if not call.accepted or call.action not in DESTRUCTIVE or not (name or "").startswith("actuator"):
            return
        if time.time() - last_targeted.get(name, 0) < 6 or run.rng.random() > 0.35:
            return
        last_targeted[name] = time.time()
        targeted[name] += 1
        threading.Timer(run.rng.uniform(0, 1.5), kill, (name, f"mid-step, after its {call.action}")).start()

    world.observers.append(after_call)
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        ladder(run, steps)
    finally:
        stop.set()
        thread.join()
        run.figures["kills"] = sum(fleet.kills.values())
        run.figures["kills_by_worker"] = dict(fleet.kills)
        run.figures["kills_mid_step"] = sum(targeted.values())
    fleet.wait_healthy(timeout=60)  # every worker runs again after its last kill
    run.check("kills delivered", run.figures["kills"] > 0, "no kill was delivered")
    run.common_figures()


def fault_plan(run, extra=()):
    """The AWS fault hook: each mutating call of the run's targets (action + resource) first meets 1-3 faults
    (throttling, 500, 503, a dropped connection) before it is let through; every fourth meets 6, more than the
    AWS client's 5 attempts, so the step is handed back to the queue and resumed. `extra` adds (action, fault)
    pairs injected once at the first attempt (e.g. a real timeout)."""
    kinds = ["throttle", "error500", "error503", "drop"]
    plans, attempts, lock = {}, collections.Counter(), threading.Lock()
    pending_extra = list(extra)
    counter = [0]

    def hook(call):
        if call.target is None or call.action not in MUTATING:
            return None
        key = (call.target, call.action, resource(call))
        with lock:
            if key not in plans:
                counter[0] += 1
                extra_fault = next((f for a, f in pending_extra if a == call.action), None)
                if extra_fault:
                    pending_extra.remove((call.action, extra_fault))
                    plans[key] = [extra_fault]
                else:
                    n = 6 if counter[0] % 4 == 0 else run.rng.randint(1, 3)
                    plans[key] = [run.rng.choice(kinds) for _ in range(n)]
            n = attempts[key]
            attempts[key] += 1
            return plans[key][n] if n < len(plans[key]) else None
    return hook, plans


def scenario_aws_faults(run):
    """Throttling, 5xx, dropped connections (and in the full run one real timeout) on every mutating call, through
    restart, re-provision and fail-over."""
    world = run.make_world(["a", "b"])
    hook, plans = fault_plan(run, extra=() if run.ci else (("RegisterImage", "timeout"),))
    world.fault = hook
    fleet = run.make_fleet()
    fleet.start_all()
    world.wait_for("the probes' first checks", lambda: all(n >= 3 for n in world.health_requests.values()), 60)
    ladder(run, ["restart", "reprovision", "failover"])
    with world.lock:
        refused = [c for c in world.calls if c.fault and not c.forwarded]
        mutating_keys = len(plans)
        exhausted = sum(1 for p in plans.values() if len(p) >= 6)
    run.figures["mutating_calls_faulted"] = mutating_keys
    run.figures["attempts_refused_by_proxy"] = len(refused)
    run.figures["calls_beyond_client_retries"] = exhausted
    run.check("every mutating call met a fault", mutating_keys > 0, "no mutating call seen")
    run.common_figures()


class BlackHole:
    """A proxy that accepts each connection and closes it at once: a probe sent here reaches no site."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self):
        self.closed = True
        self.sock.close()


def scenario_partition(run):
    """Two probe replicas with distinct WORKER_IDs; one sends its HTTP through a dead proxy (http_proxy for that
    process only, no_proxy keeping AWS direct): it sees every site down. The sites are up: zero destructive calls."""
    world = run.make_world(["a", "b"])
    hole = BlackHole()
    run.cleanups.append(hole.close)
    fleet = run.make_fleet(env={"probe-2": {"http_proxy": f"http://127.0.0.1:{hole.port}", "no_proxy": "127.0.0.1"}})
    fleet.start_all()
    window = 30 if run.ci else 90
    # Both probes checking (each has discovered the targets) before the window starts: a slow moto delays that.
    world.wait_for("both probes checking", lambda: hole.connections >= 4 and sum(world.health_requests.values()) >= 4, 90)
    start_requests, start_hole = sum(world.health_requests.values()), hole.connections
    log(f"probe-2 is cut off from the sites (http_proxy=127.0.0.1:{hole.port}); watching for {window} s")
    time.sleep(window)
    with world.lock:
        outages = [n.title for n in world.notices if " is down: " in n.title]
    run.figures["partitioned_checks"] = hole.connections - start_hole
    probes = {k: int(v) for k, v in fleet.metrics("probe-2").items() if k.startswith("recovery_probes_total")}
    run.figures["partitioned_probe_results"] = {re.sub(r'.*result="([^"]+)".*', r"\1", k): v for k, v in probes.items()}
    run.figures["healthy_prober_checks"] = sum(world.health_requests.values()) - start_requests
    run.figures["outages_declared"] = len(outages)
    run.check("the partitioned probe really checked (through the dead proxy)", run.figures["partitioned_checks"] >= window // 2,
              f"{run.figures['partitioned_checks']} connections in {window} s")
    run.check("no outage declared", not outages, "; ".join(outages))
    run.common_figures()
    run.check("destructive calls = 0", run.figures["destructive_calls"] == 0, f"{run.figures['destructive_calls']}")


def scenario_brake(run):
    """Half the fleet (2 of 4 targets) fails at once with the default brake (30 %, at least 2): the brake engages,
    one alert, no destructive call."""
    world = run.make_world(["a", "b", "c", "d"])
    fleet = run.make_fleet(settings={"decision": {"BRAKE_MAX_OUTAGE_SHARE": "0.30", "BRAKE_MAX_ACTIONS_PER_HOUR": "5"}},
                           defaults={"grace_period": 8})
    fleet.start_all()
    world.wait_for("the probes' first checks", lambda: all(n >= 3 for n in world.health_requests.values()), 60)
    broken = world.targets[:2]
    marks = len(world.notices)
    for t in broken:
        world.break_instance(world.sites[t]["instance"], "hung")
    log(f"--- broke {', '.join(broken)} at once (2 of 4)")
    for t in broken:
        world.wait_for(f"outage notice for {t}", lambda: world.notice(f"{t} is down: outage declared", marks), PHASE_TIMEOUT)
    world.wait_for("the brake alert", lambda: world.notice("Fleet brake engaged", marks), PHASE_TIMEOUT)
    time.sleep(8 + 12)  # past the grace period: the steps that were due stay pending
    _, brake = fleet.status()
    with world.lock:
        alerts = [n for n in world.notices if n.title.startswith("Fleet brake engaged")]
    run.figures["brake_alerts"] = len(alerts)
    run.figures["brake_engaged"] = brake.get("engaged")
    run.check("exactly one brake alert", len(alerts) == 1, f"{len(alerts)}")
    run.check("the brake is engaged", brake.get("engaged") is True, json.dumps(brake))
    run.common_figures()
    run.check("destructive calls = 0", run.figures["destructive_calls"] == 0, f"{run.figures['destructive_calls']}")


def private_redis(run):
    """A redis-server of this run with AOF (appendfsync everysec, as compose runs it), on a free port."""
    port = free_ports(1)[0]
    data = os.path.join(run.dir, "redis")
    os.makedirs(data, exist_ok=True)
    cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "yes",
           "--appendfsync", "everysec", "--dir", data, "--loglevel", "warning"]
    state = {"proc": None}

    def start():
        state["proc"] = subprocess.Popen(cmd, stdout=open(os.path.join(run.logs, "redis.log"), "ab"), stderr=subprocess.STDOUT,
                                         start_new_session=True)
        with open(os.path.join(run.dir, "pids"), "a") as f:
            f.write(f"{state['proc'].pid}\n")
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise Missed("the private Redis did not start")

    def crash():
        state["proc"].kill()
        state["proc"].wait()

    def stop():
        if state["proc"] and state["proc"].poll() is None:
            state["proc"].terminate()
            state["proc"].wait()
    start()
    return f"redis://127.0.0.1:{port}/0", start, crash, stop


def scenario_redis_restart(run):
    """A private Redis with AOF is killed (SIGKILL) and started again from its AOF twice: once as an outage is
    declared, once in the middle of a re-provision (after its RunInstances)."""
    world = run.make_world(["a", "b"])
    url, start, crash, stop = private_redis(run)
    restarts = [0]

    def restart_redis(why):
        log(f"Redis SIGKILLed ({why}); starting again from its AOF in 3 s")
        crash()
        time.sleep(3)
        start()
        restarts[0] += 1

    fleet = run.make_fleet(redis_url=url)
    run.cleanups.append(stop)
    fleet.start_all()
    world.wait_for("the probes' first checks", lambda: all(n >= 3 for n in world.health_requests.values()), 60)
    fired = threading.Event()

    def after_call(call):
        if call.accepted and call.action == "RunInstances" and not fired.is_set():
            fired.set()
            threading.Thread(target=restart_redis, args=("mid-step, after RunInstances",), daemon=True).start()

    try:
        ladder(run, ["restart", "reprovision"], before={"reprovision": lambda: world.observers.append(after_call)},
               on_declared={"restart": lambda: restart_redis("as the outages are declared")})
    finally:
        run.figures.update(redis_restarts=restarts[0], lease_lost=len(lease_lost_lines(fleet)))
    run.check("Redis restarted twice", restarts[0] == 2, f"{restarts[0]}")
    run.common_figures()


def private_broker(run):
    """A RabbitMQ node of this run (scripts/services.sh with its own ports, node name and folder)."""
    amqp, mgmt, dist = free_ports(3)
    env = dict(os.environ, FLEET_SERVICES_DIR=os.path.join(run.dir, "rabbitmq"), RABBITMQ_PORT=str(amqp),
               RABBITMQ_MGMT_PORT=str(mgmt), RABBITMQ_DIST_PORT=str(dist), RABBITMQ_NODENAME=f"{run.id}@localhost")

    def services(*args):
        out = subprocess.run([SERVICES, *args, "rabbitmq"], env=env, capture_output=True, text=True, timeout=180)
        if out.returncode != 0:
            raise Missed(f"services.sh {' '.join(args)} rabbitmq failed: {out.stderr.strip()[-300:]}")
    services("start")
    return f"amqp://guest:guest@127.0.0.1:{amqp}/%2f", f"http://127.0.0.1:{mgmt}", services


def scenario_broker_restart(run):
    """A private RabbitMQ node restarts (stop, start: about 15 s without a broker) twice: as the outages are
    declared, and in the middle of a re-provision (after its RegisterImage)."""
    world = run.make_world(["a", "b"])
    amqp, mgmt, services = private_broker(run)
    run.cleanups.append(lambda: services("stop"))
    restarts = [0]

    def restart_broker(why):
        log(f"restarting the broker ({why})")
        t0 = time.time()
        services("restart")
        restarts[0] += 1
        log(f"the broker is back after {time.time() - t0:.0f} s")

    fleet = run.make_fleet(amqp_url=amqp, management_url=mgmt)
    fleet.start_all()
    world.wait_for("the probes' first checks", lambda: all(n >= 3 for n in world.health_requests.values()), 60)
    fired = threading.Event()

    def after_call(call):
        if call.accepted and call.action == "RegisterImage" and not fired.is_set():
            fired.set()
            threading.Thread(target=restart_broker, args=("mid-step, after RegisterImage",), daemon=True).start()

    try:
        ladder(run, ["restart", "reprovision"], before={"reprovision": lambda: world.observers.append(after_call)},
               on_declared={"restart": lambda: restart_broker("as the outages are declared")})
    finally:
        run.figures["broker_restarts"] = restarts[0]
    run.check("the broker restarted twice", restarts[0] == 2, f"{restarts[0]}")
    run.common_figures()


def scenario_lock_expiry(run):
    """The target lock expires mid-step (LOCK_TTL=4 s) while its actuator is frozen (SIGSTOP) and the other
    actuator takes over (new fencing token); then the frozen one is resumed (SIGCONT). Phase A freezes it
    between two sub-steps; phase B freezes it inside a mutating call that the proxy answers with a throttling
    error once the successor has moved on, so the stale actor's AWS client retries it. Figure: mutating calls the
    stale actor made after the takeover (target 0)."""
    world = run.make_world(["a", "b"])
    fleet = run.make_fleet(replicas=["probe-1", "probe-2", "decision-1", "decision-2", "actuator-1", "actuator-2",
                                     "notifier-1", "recorder-1"],
                           settings={"actuator": {"LOCK_TTL": "4", "AMQP_HEARTBEAT": "4", "ACTUATOR_CONCURRENCY": "1",
                                                  "RESTART_HEALTH_TIMEOUT": "5"}})
    fleet.start_all()
    world.wait_for("the probes' first checks", lambda: all(n >= 3 for n in world.health_requests.values()), 60)
    stale_calls = []
    phases = []

    def phase(target, mode):
        """mode 'between': SIGSTOP 1 s after the stale actor's RebootInstances was accepted (the record has it);
        mode 'inside': SIGSTOP as its StopInstances reaches the proxy, held there until the successor's
        StartInstances, then answered 503 RequestLimitExceeded."""
        state = {"actor": None, "frozen_at": None, "resumed_at": None, "held": threading.Event(), "release": threading.Event()}
        trigger = "RebootInstances" if mode == "between" else "StopInstances"
        orig_fault = world.fault

        def freeze(name):
            fleet.kill(name, signal.SIGSTOP)
            state["frozen_at"] = time.time()
            log(f"SIGSTOP {name} ({mode} a mutating call of {target})")

        def fault(call):
            name = fleet.actor(call.actor)
            if (mode == "inside" and call.target == target and call.action == trigger and state["actor"] is None
                    and (name or "").startswith("actuator")):
                state["actor"] = name
                freeze(name)
                state["held"].set()
                state["release"].wait(120)
                return "throttle"
            return orig_fault(call) if orig_fault else None

        def after(call):
            name = fleet.actor(call.actor)
            if (mode == "between" and call.accepted and call.target == target and call.action == trigger
                    and state["actor"] is None and (name or "").startswith("actuator")):
                state["actor"] = name
                threading.Timer(1.0, freeze, (name,)).start()

        world.fault = fault
        world.observers.append(after)
        marks = (len(world.notices), len(world.calls))
        world.break_instance(world.sites[target]["instance"], "dead")
        log(f"--- lock expiry ({mode}): {target}'s instance is dead; restart (reboot, stop/start) then re-provision")
        world.wait_for(f"{mode}: an actuator's {trigger}", lambda: state["frozen_at"] is not None, PHASE_TIMEOUT)
        stale = state["actor"]
        other = next(n for n in fleet.replicas if n.startswith("actuator") and n != stale)
        # The successor proves the takeover by a mutating call of its own on the target (after the lock expired
        # and the broker gave it the request of the frozen actor's dead connection).
        successor_action = "StopInstances" if mode == "between" else "StartInstances"
        took = world.wait_for(f"{mode}: {other} takes over ({successor_action})",
                              lambda: world.accepted_call(successor_action, marks[1],
                                                          lambda c: c.target == target and fleet.actor(c.actor) == other),
                              PHASE_TIMEOUT)
        time.sleep(1)
        state["resumed_at"] = time.time()
        fleet.kill(stale, signal.SIGCONT)
        state["release"].set()
        log(f"SIGCONT {stale} ({state['resumed_at'] - state['frozen_at']:.0f} s frozen; {other} took over)")
        world.wait_for(f"{mode}: {target} recovered", lambda: world.sites[target]["up"], PHASE_TIMEOUT)
        wait_states(run, f"{mode}: {target}'s incident closed", lambda s: s.get(target) == "monitoring")
        time.sleep(5)  # the stale actor has woken up; give it time to do whatever it does
        world.observers.remove(after)
        world.fault = orig_fault
        # The stale actor's step: its log line before the call it was frozen at (incident, step, fencing token).
        # Its calls after the takeover for that step and token are stale; calls for a later step are not.
        frozen = [r for r in fleet.calling_lines().get(stale, []) if r[1] == trigger and r[0] is not None
                  and r[0] <= state["frozen_at"] and (r[2] or "").startswith(f"inc-{target}-")]
        frozen = max(frozen, key=lambda r: r[0])[2:] if frozen else None
        with world.lock:
            after_takeover = [c for c in world.calls[marks[1]:] if fleet.actor(c.actor) == stale
                              and c.target == target and c.forwarded and c.t > took.t]
        purposes = attribute(fleet, after_takeover)
        late = [c for c in after_takeover if purposes.get(c.n) is None or purposes[c.n] == frozen]
        log(f"{mode}: {stale} was frozen in {frozen and frozen[1]} of {frozen and frozen[0]} with fencing token "
            f"{frozen and frozen[2]}; {len(after_takeover)} call(s) of its own after the takeover, {len(late)} for that step")
        stale_calls.extend(late)
        phases.append((mode, stale, other, [f"#{c.n} {c.action} {resource(c)} (moto {c.status})" for c in late]))
        return late

    phase(world.targets[0], "between")
    time.sleep(3)
    phase(world.targets[1], "inside")
    run.figures["stale_mutations"] = len(stale_calls)
    run.figures["stale_mutations_by_phase"] = {mode: len(calls) for mode, _, _, calls in phases}
    run.figures["lease_lost"] = len(lease_lost_lines(fleet))
    for mode, stale, other, calls in phases:
        run.check(f"{mode}: no mutation by the stale actor after the takeover", not calls,
                  f"{stale} after {other} took over: " + ", ".join(calls))
    run.figures["incidents"] = run.figures["incidents_terminal"] = 2
    run.common_figures()


SCENARIOS = {
    # name: (function, in the CI subset, hard timeout in s for --ci, for the full run)
    "kills": (scenario_kills, True, 170, 480),
    "aws-faults": (scenario_aws_faults, True, 150, 300),
    "partition": (scenario_partition, True, 150, 210),
    "brake": (scenario_brake, False, 120, 120),
    "broker-restart": (scenario_broker_restart, False, 300, 300),
    "redis-restart": (scenario_redis_restart, False, 240, 240),
    "lock-expiry": (scenario_lock_expiry, False, 300, 300),
}


def run_one(base, name, ci, seed):
    fn, _, ci_timeout, full_timeout = SCENARIOS[name]
    timeout = ci_timeout if ci else full_timeout
    run = Run(base, name, ci, seed)
    log(f"=== {name} ({run.id}, seed {seed}, hard timeout {timeout} s): {' '.join(fn.__doc__.split())}")
    started = time.time()
    error = None

    def on_alarm(*_):
        raise ScenarioTimeout(f"hard timeout: {timeout} s")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    try:
        try:
            fn(run)
        except (Missed, ScenarioTimeout, RuntimeError) as e:
            error = str(e)
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            signal.alarm(0)
        duration = time.time() - started
        if error:
            run.check("scenario ran to its end", False, error)
            if run.fleet and run.world and "dead_letters" not in run.figures:
                try:  # what the figures were when it stopped
                    run.common_figures()
                except Exception as e:
                    run.notes.append(f"figures unavailable: {e}")
    finally:
        signal.alarm(0)
        teardown_started = time.time()
        run.teardown()
    ok = all(c[1] for c in run.checks)
    result = {"scenario": name, "id": run.id, "ok": ok, "seconds": round(duration),
              "teardown_seconds": round(time.time() - teardown_started), "seed": seed, "figures": run.figures,
              "missed": [f"{c[0]}: {c[2]}" for c in run.checks if not c[1]], "notes": run.notes, "dir": run.dir}
    figures = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in run.figures.items())
    print(f"RESULT {name:<15} {'PASS' if ok else 'FAIL'} {round(duration):>4}s  {figures}", flush=True)
    for m in result["missed"]:
        print(f"       missed: {m}", flush=True)
    for n in run.notes:
        print(f"       note: {n}", flush=True)
    return result


SUMMARY_FIGURES = ("incidents", "incidents_terminal", "kills", "dead_letters", "duplicate_destructive_calls", "noop_repeats",
                   "destructive_calls", "stale_step_calls", "stale_mutations", "brake_alerts", "outages_declared")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--ci", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("scenarios", nargs="*")
    args = parser.parse_intermixed_args()
    names = args.scenarios or [n for n, s in SCENARIOS.items() if s[1] or not args.ci]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {' '.join(unknown)}; known: {' '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    results = []
    started = time.time()
    try:
        for i, name in enumerate(names):
            results.append(run_one(args.dir, name, args.ci, seed + i))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    with open(os.path.join(args.dir, "results.json"), "w") as f:
        json.dump({"seed": seed, "ci": args.ci, "seconds": round(time.time() - started), "results": results}, f, indent=1)
    print(f"\nSUMMARY (seed {seed}, {round(time.time() - started)} s):", flush=True)
    for r in results:
        print(f"  {r['scenario']:<15} {'PASS' if r['ok'] else 'FAIL'} {r['seconds']:>4}s  "
              + " ".join(f"{k}={r['figures'][k]}" for k in SUMMARY_FIGURES if k in r["figures"]), flush=True)
    ok = len(results) == len(names) and all(r["ok"] for r in results)
    if ok and not os.environ.get("CHAOS_KEEP"):  # nothing worth keeping
        for r in results:
            shutil.rmtree(r["dir"], ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
