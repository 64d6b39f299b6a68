"""The simulated world that scripts/demo_world.py and scripts/chaos_world.py put the fleet in: websites on
EC2 (in moto) that break and are repaired only by what the fleet really does at the AWS API. Scaffolding for
the demo and the chaos suite, not product; docs/testing.md has the rules, docs/reliability.md the chaos use.

A World is three servers and the state behind them:
  1. a reverse proxy in front of moto: the workers' AWS_ENDPOINT_URL points here; every request is forwarded
     unchanged, and each mutating call is logged with who sent it (each worker process has its own access key
     id) and its parameters. A fault hook may refuse a mutating call before it reaches moto (throttling, 5xx,
     a dropped connection, a timeout) or lose moto's answer after it. RunInstances with a ClientToken moto
     already saw is answered from the first answer, as AWS does (moto ignores client tokens).
  2. the websites: GET /site/<target>/health answers 200 or 503 from the state of the AWS world;
  3. the Slack incoming webhook: every notice the notifier sends is kept (and printed when `verbose`).

A site is "up" when its DNS record (Route 53) points at an address that is associated with a running instance
that is not broken and not in a region that is down. So only real AWS calls can heal it:
  - RebootInstances / StartInstances of an instance whose web server hung heal that instance;
  - AssociateAddress of the site's Elastic IP onto a new, healthy instance makes that one serve;
  - a Route 53 UPSERT pointing the record at an address in the DR region makes that one serve.

Imported from scripts/ (python3 puts the script's folder first on sys.path); no package of this name is on PyPI
that the scripts use.
"""
import http.client
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import urllib.parse

import boto3

PRIMARY, DR = "us-east-1", "us-west-2"

# Calls that change what runs, where traffic goes or what is paid for. "Destructive" in the chaos figures.
DESTRUCTIVE = {
    "RebootInstances", "StopInstances", "StartInstances", "TerminateInstances", "RunInstances",
    "AssociateAddress", "DisassociateAddress", "AllocateAddress", "ReleaseAddress", "RegisterImage",
    "DeregisterImage", "ChangeResourceRecordSets", "SendCommand", "CreateVolume", "AttachVolume",
    "DetachVolume", "DeleteVolume", "CreateSnapshot",
}
# Mutating EC2/Route 53/SSM calls the proxy logs (and may inject faults into): the destructive ones and tags.
MUTATING = DESTRUCTIVE | {"CreateTags", "DeleteTags"}
# A stop of an instance already stopping or stopped (and so on) changes nothing: the previous state says so.
NO_OP_STATES = {"StopInstances": ("stopped", "stopping"), "StartInstances": ("running", "pending"),
                "TerminateInstances": ("terminated", "shutting-down")}
FAULTS = ("throttle", "error500", "error503", "drop", "timeout", "lost")


def say(kind, text):
    print(f"{time.strftime('%H:%M:%S')}  {kind:<7} {text}", flush=True)


class Call:
    """One mutating AWS call that reached the proxy (one HTTP attempt)."""

    def __init__(self, n, actor, action, region, params):
        self.n, self.t, self.actor, self.action, self.region, self.params = n, time.time(), actor, action, region, params
        self.ids = [v for k, v in sorted(params.items()) if k.startswith("InstanceId")]
        self.target = None      # the world's target it concerns (None: not one of ours)
        self.fault = None       # the fault injected, if any
        self.status = None      # moto's HTTP status, None when not forwarded
        self.forwarded = False  # reached moto
        self.replayed = False   # answered by the proxy from an earlier RunInstances with the same ClientToken
        self.effect = None      # accepted: whether it changed anything (False: a stop of a stopped instance, an
                                # address moved where it already was, a record set to the value it had)

    @property
    def accepted(self):
        """Reached moto and moto carried it out (whether or not the answer reached the caller)."""
        return self.forwarded and self.status is not None and 200 <= self.status < 300

    def as_json(self):
        return {"n": self.n, "t": round(self.t, 3), "actor": self.actor, "action": self.action, "region": self.region,
                "target": self.target, "ids": self.ids, "fault": self.fault, "status": self.status,
                "forwarded": self.forwarded, "replayed": self.replayed, "effect": self.effect,
                "params": {k: v for k, v in self.params.items() if k not in ("Action", "Version", "UserData")}}


class Notice:
    def __init__(self, title, fields, detail):
        self.title, self.fields, self.detail, self.t = title, fields, detail, time.time()


class Missed(Exception):
    """An expected event did not happen in time (the demo's and the chaos suite's failure)."""


HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade", "content-length"}


class QuietServer(http.server.ThreadingHTTPServer):
    """A caller that goes away mid-answer (a worker SIGKILLed by the chaos suite) is not an error."""
    daemon_threads = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class World:
    """`sites` maps a short name to its DNS label: {"shop": "www"} gives target <prefix>-shop and record
    www.<prefix>.example.com. `site_host` is where the websites listen (chaos: 127.0.0.2, so one process can
    be cut off from the sites by a proxy setting while its AWS and Slack traffic to 127.0.0.1 stays direct)."""

    def __init__(self, prefix, moto_url, sites, site_host="127.0.0.1", verbose=True, calls_log=None):
        """`calls_log`: a file to append every mutating call and every notice to, as JSON lines."""
        self.prefix = prefix
        self.moto = urllib.parse.urlparse(moto_url)
        self.zone_name = f"{prefix}.example.com"
        self.targets = [f"{prefix}-{name}" for name in sites]
        self.records = {f"{prefix}-{name}": f"{label}.{self.zone_name}" for name, label in sites.items()}
        self.site_host = site_host
        self.verbose = verbose
        self.calls_log = open(calls_log, "a") if calls_log else None
        self.lock = threading.Condition()  # guards everything below; notified on every event
        self.broken = {}            # instance id -> "hung" (a reboot fixes it) or "dead" (nothing does)
        self.regions_down = set()   # regions whose instances cannot serve
        self.notices = []           # Notice of every Slack notice received
        self.calls = []             # Call of every mutating AWS call that reached the proxy
        self.sequence = 0           # numbers the calls in the order they arrived (Call.n)
        self.emails_sent = 0
        self.infra = {t: (False, "not computed yet", None, None) for t in self.targets}  # from moto
        self.sites = {t: {"up": None, "why": "not computed yet", "instance": None, "region": None} for t in self.targets}
        self.health_requests = {t: 0 for t in self.targets}
        self.owner = {}             # instance id / allocation id / image name -> target
        self.associations = {}      # allocation id -> the instance moto has it on (from accepted calls)
        self.record_values = {}     # record name -> its value (from accepted changes)
        self.tokens = {}            # RunInstances ClientToken -> (status, headers, body) of moto's first answer
        self.fault = None           # hook(call) -> a FAULTS name or None, asked before forwarding a mutating call
        self.observers = []         # fn(call), called after each mutating call (accepted or not)
        self.timeout_seconds = 35   # how long a "timeout" fault holds the request (the client's attempt: 30 s)
        self.res = {}               # what setup() created
        self._refresh = threading.Event()
        self._servers = []
        self.stopped = False
        self.ec2 = {PRIMARY: self.aws("ec2", PRIMARY), DR: self.aws("ec2", DR)}
        self.route53 = self.aws("route53", PRIMARY)

    def aws(self, service, region):
        # The world talks to moto directly, not through its own proxy: its calls are not the fleet's.
        return boto3.client(service, region_name=region, endpoint_url=f"http://{self.moto.netloc}",
                            aws_access_key_id="demo-world", aws_secret_access_key="demo-world")

    def say(self, kind, text):
        if self.verbose:
            say(kind, text)

    # ------------------------------------------------------------ the state of the sites

    def compute_infra(self):
        """Follows each DNS record -> address -> instance in moto (a handful of calls for all targets)."""
        sets = self.route53.list_resource_record_sets(HostedZoneId=self.res["zone_id"])["ResourceRecordSets"]
        ips = {r["Name"].rstrip("."): r["ResourceRecords"][0]["Value"] for r in sets if r["Type"] == "A"}
        holders = {}
        for region in (PRIMARY, DR):
            for a in self.ec2[region].describe_addresses()["Addresses"]:
                if a.get("InstanceId"):
                    holders[a["PublicIp"]] = (a["InstanceId"], region)
        wanted = {}
        for t in self.targets:
            held = holders.get(ips.get(self.records[t]))
            if held:
                wanted.setdefault(held[1], set()).add(held[0])
        states = {}
        for region, ids in wanted.items():
            for r in self.ec2[region].describe_instances(InstanceIds=sorted(ids))["Reservations"]:
                for i in r["Instances"]:
                    states[i["InstanceId"]] = i["State"]["Name"]
        infra = {}
        for t in self.targets:
            ip = ips.get(self.records[t])
            held = holders.get(ip)
            if not held:
                infra[t] = (False, f"no instance holds {ip}", None, None)
            elif states.get(held[0]) != "running":
                infra[t] = (False, f"{held[0]} is {states.get(held[0], 'gone')}", held[0], held[1])
            else:
                infra[t] = (True, f"served by {held[0]} ({held[1]}) at {ip}", held[0], held[1])
        return infra

    def site_state(self, t):
        """(up, why, instance, region) now: moto's view, then the world's breakages (applied at once)."""
        ok, why, iid, region = self.infra[t]
        if ok and region in self.regions_down:
            return False, f"{region} is down", iid, region
        if ok and iid in self.broken:
            return False, f"the web server on {iid} is {self.broken[iid]}", iid, region
        return ok, why, iid, region

    def refresh(self):
        infra = self.compute_infra()
        with self.lock:
            self.infra = infra
            self.update_sites()

    def update_sites(self):
        """Under the lock: recomputes every site from the cached infra and the breakages."""
        for t in self.targets:
            up, why, iid, region = self.site_state(t)
            site = self.sites[t]
            if up != site["up"] or iid != site["instance"]:
                self.say("site", f"{t}: " + ("UP    " if up else "DOWN  ") + why)
            site.update(up=up, why=why, instance=iid, region=region)
        self.lock.notify_all()

    def request_refresh(self):
        self._refresh.set()

    def refresher(self):
        while not self.stopped:
            self._refresh.wait(2)
            self._refresh.clear()
            if self.stopped:
                return
            try:
                self.refresh()
            except Exception as e:  # moto busy: try again at the next turn
                self.say("world", f"(could not read the world from moto: {e})")

    def break_instance(self, iid, how):
        with self.lock:
            self.broken[iid] = how
            self.update_sites()

    def region_down(self, region):
        with self.lock:
            self.regions_down.add(region)
            self.update_sites()

    # ------------------------------------------------------------ 1. the AWS proxy

    def proxy_handler(world):
        class AWSProxy(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def answer(self, status, headers, data):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def hang_up(self):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def forward(self):
                body = self.body()
                call = world.classify(self.command, self.path, self.headers, body)
                fault = None
                if call is not None:
                    if world.fault:
                        try:
                            fault = world.fault(call)
                        except Exception as e:
                            world.say("world", f"(fault hook failed: {e})")
                    call.fault = fault
                    if fault in ("throttle", "error500", "error503"):
                        world.record(call)
                        return self.answer(*world.error_answer(call, fault))
                    if fault in ("drop", "timeout"):
                        world.record(call)
                        if fault == "timeout":
                            time.sleep(world.timeout_seconds)
                        return self.hang_up()
                    token = call.params.get("ClientToken") if call.action == "RunInstances" else None
                    if token and token in world.tokens:
                        call.replayed = True
                        call.status = world.tokens[token][0]
                        world.record(call)
                        return self.answer(*world.tokens[token])
                conn = http.client.HTTPConnection(world.moto.hostname, world.moto.port or 80, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                if call is not None:
                    call.forwarded, call.status = True, answer.status
                    if call.accepted:
                        if token:
                            world.tokens[token] = (answer.status, answer.getheaders(), data)
                        try:
                            world.watch(call, data)
                        except Exception as e:  # the world's bookkeeping must never break the fleet's call
                            world.say("world", f"(could not interpret a call: {e})")
                    world.record(call)
                elif 200 <= answer.status < 300 and b"Action=SendEmail" in body:
                    with world.lock:
                        world.emails_sent += 1
                if fault == "lost":
                    return self.hang_up()  # moto did it; the caller never hears so
                self.answer(answer.status, answer.getheaders(), data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

        return AWSProxy

    def classify(self, method, path, headers, body):
        """A Call for a mutating EC2/Route 53/SSM call, else None."""
        scope = re.search(r"Credential=([^/]+)/\d+/([^/]+)/", headers.get("Authorization", ""))
        actor, region = (scope.group(1), scope.group(2)) if scope else ("?", "?")
        if method == "POST" and path.endswith("/rrset"):
            text = body.decode(errors="replace")
            action = re.search(r"<Action>(\w+)</Action>", text)
            name = re.search(r"<Name>([^<]+)</Name>", text)
            params = {"ChangeAction": action and action.group(1), "Name": name and name.group(1).rstrip("."),
                      "Values": " ".join(re.findall(r"<Value>([^<]+)</Value>", text)), "Zone": path.split("/")[-2]}
            return self.new_call(actor, "ChangeResourceRecordSets", region, params)
        target = headers.get("X-Amz-Target", "")
        if target.endswith(".SendCommand"):
            params = json.loads(body or b"{}")
            return self.new_call(actor, "SendCommand", region, {
                "DocumentName": params.get("DocumentName", ""), "InstanceIds": ",".join(params.get("InstanceIds", []))})
        params = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()}
        if params.get("Action") in MUTATING:
            return self.new_call(actor, params["Action"], region, params)
        return None

    def new_call(self, actor, action, region, params):
        with self.lock:
            self.sequence += 1
            call = Call(self.sequence, actor, action, region, params)
            call.target = self.owner_of(call)
            return call

    def owner_of(self, call):
        p = call.params
        for iid in call.ids:
            if iid in self.owner:
                return self.owner[iid]
        if call.action == "RunInstances" or call.action == "AllocateAddress":
            tags = {p[k]: p.get(k[:-3] + "Value") for k in p if k.startswith("TagSpecification.") and k.endswith(".Key")}
            return tags.get("AutoRecovery:Name") or tags.get("AutoRecovery:DrFor")
        if call.action == "RegisterImage":
            return next((t for t in self.targets if p.get("Name", "").startswith(f"autorecovery-{t}-")), None)
        if call.action == "AssociateAddress":
            return self.owner.get(p.get("AllocationId"))
        if call.action == "ChangeResourceRecordSets":
            return next((t for t, r in self.records.items() if r == p.get("Name")), None)
        if call.action == "CreateTags":
            return self.owner.get(p.get("ResourceId.1"))
        return None

    def record(self, call):
        with self.lock:
            self.calls.append(call)
            if self.calls_log:
                self.calls_log.write(json.dumps(call.as_json()) + "\n")
                self.calls_log.flush()
            self.lock.notify_all()
        for observer in list(self.observers):
            try:
                observer(call)
            except Exception as e:
                self.say("world", f"(observer failed: {e})")

    def error_answer(self, call, fault):
        """AWS's own error documents: EC2's Query XML, Route 53's REST XML, SSM's JSON."""
        status, code, message = {"throttle": (503, "RequestLimitExceeded", "Request limit exceeded."),
                                 "error500": (500, "InternalError", "An internal error has occurred."),
                                 "error503": (503, "Unavailable", "The server is overloaded.")}[fault]
        request_id = os.urandom(16).hex()
        if call.action == "ChangeResourceRecordSets":
            if fault == "throttle":
                status, code = 400, "Throttling"
            data = (f'<?xml version="1.0"?><ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
                    f"<Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                    f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
            return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], data
        if call.action == "SendCommand":
            code = {"throttle": "ThrottlingException", "error500": "InternalServerError"}.get(fault, "ServiceUnavailable")
            data = json.dumps({"__type": code, "message": message}).encode()
            return (400 if fault == "throttle" else status), [("Content-Type", "application/x-amz-json-1.1")], data
        data = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>").encode()
        return status, [("Content-Type", "text/xml;charset=UTF-8")], data

    def watch(self, call, answer):
        """Reacts to the fleet's real AWS calls after moto accepted them: who owns new resources, heals."""
        text = answer.decode(errors="replace")
        p = call.params
        if call.action == "RunInstances":
            call.ids = re.findall(r"<instanceId>([^<]+)</instanceId>", text)
        if call.action == "AllocateAddress":
            call.ids = re.findall(r"<publicIp>([^<]+)</publicIp>", text)
            alloc = re.search(r"<allocationId>([^<]+)</allocationId>", text)
            if alloc and call.target:
                call.params["AllocationId"] = alloc.group(1)
        call.effect = True
        if call.action in NO_OP_STATES:
            previous = re.findall(r"<previousState>.*?<name>([\w-]+)</name>", text, re.S)
            call.effect = not previous or any(state not in NO_OP_STATES[call.action] for state in previous)
        with self.lock:
            if call.action == "AssociateAddress":
                call.effect = self.associations.get(p.get("AllocationId")) != p.get("InstanceId")
                self.associations[p.get("AllocationId")] = p.get("InstanceId")
            if call.action == "ChangeResourceRecordSets" and p.get("ChangeAction") in ("UPSERT", "CREATE"):
                call.effect = self.record_values.get(p.get("Name")) != p.get("Values")
                self.record_values[p.get("Name")] = p.get("Values")
            if call.target:
                for iid in call.ids:
                    self.owner.setdefault(iid, call.target)
                if call.action == "AllocateAddress" and p.get("AllocationId"):
                    self.owner.setdefault(p["AllocationId"], call.target)
            healed = [i for i in call.ids if self.broken.get(i) == "hung" and call.action in ("RebootInstances", "StartInstances")]
            for i in healed:
                del self.broken[i]  # the hung web server comes back with the reboot
        if call.action == "ChangeResourceRecordSets":
            self.say("aws", f"Route 53 {p['ChangeAction']} {p['Name']} A {p['Values']}")
        elif call.action not in ("CreateTags", "DeleteTags") or self.verbose:
            detail = {
                "AssociateAddress": f"{p.get('AllocationId')} -> {p.get('InstanceId')}",
                "RegisterImage": p.get("Name", ""),
                "CreateTags": " ".join(f"{p[k]}={p.get(k.replace('Key', 'Value'), '')}"
                                       for k in sorted(p) if k.startswith("Tag.") and k.endswith(".Key")) + f" on {p.get('ResourceId.1', '')}",
            }.get(call.action, " ".join(call.ids))
            self.say("aws", f"{call.action} {detail} [{call.region}]" + (" (the hung web server restarts)" if healed else ""))
        self.request_refresh()
        with self.lock:
            self.update_sites()

    # ------------------------------------------------------------ 2. the sites and 3. the Slack webhook

    def web_handler(world):
        class Web(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, text):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                m = re.fullmatch(r"/site/([^/]+)/health", self.path)
                if not m or m.group(1) not in world.sites:
                    return self.reply(404, "no such site")
                with world.lock:
                    world.health_requests[m.group(1)] += 1
                    up, why, _, _ = world.site_state(m.group(1))
                self.reply(200 if up else 503, "OK\n" if up else f"DOWN: {why}\n")

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not self.path.startswith("/slack/"):
                    return self.reply(404, "no such hook")
                title, fields, text = payload.get("text", ""), {}, []
                for block in payload.get("blocks", []):
                    for f in block.get("fields", []):
                        label, _, value = f["text"].partition("\n")
                        fields[label.strip("*")] = value
                    if block.get("type") == "section" and "text" in block:
                        text.append(block["text"]["text"])
                detail = " / ".join(text[0].splitlines()) if text and not text[0].startswith("*") else ""
                nxt = next((t[len("*Next:* "):] for t in text if t.startswith("*Next:* ")), None)
                with world.lock:
                    world.notices.append(Notice(title, fields, detail))
                    if world.calls_log:  # beside the calls, for the record
                        world.calls_log.write(json.dumps({"notice": title, "t": round(time.time(), 3), "fields": fields}) + "\n")
                        world.calls_log.flush()
                    world.lock.notify_all()
                world.say("notice", title + (f" | {detail[:140]}" if detail else ""))
                if nxt and " is down: " in title:  # the outage notice says what runs when: the grace period
                    world.say("", f"next: {nxt}")
                self.reply(200, "ok")

        return Web

    def start(self):
        """Starts the refresher and the servers; returns the proxy's, the webhook's and the sites' ports."""
        def serve(handler, host):
            server = QuietServer((host, 0), handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
            return server.server_address[1]
        self.aws_port = serve(self.proxy_handler(), "127.0.0.1")
        self.web_port = serve(self.web_handler(), "127.0.0.1")
        self.site_port = self.web_port if self.site_host == "127.0.0.1" else serve(self.web_handler(), self.site_host)
        threading.Thread(target=self.refresher, daemon=True).start()
        return self.aws_port, self.web_port, self.site_port

    def stop(self):
        """Stops the servers and the refresher (the demo never does: its world lives until it is killed)."""
        self.stopped = True
        self._refresh.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        with self.lock:
            if self.calls_log:
                self.calls_log.close()
                self.calls_log = None

    def health_url(self, t):
        return f"http://{self.site_host}:{self.site_port}/site/{t}/health"

    def slack_url(self):
        return f"http://127.0.0.1:{self.web_port}/slack/T0DEMO/B0DEMO/{os.urandom(8).hex()}"

    # ------------------------------------------------------------ setup and clean-up in moto

    def setup(self):
        """Creates each target in PRIMARY (instance, Elastic IP, snapshots in both regions, DNS record), the
        hosted zone, the SES identity and the recorder's tables. Call after start()."""
        e = self.ec2[PRIMARY]
        image = e.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*-x86_64-gp2"]}])["Images"][0]
        zone = self.route53.create_hosted_zone(Name=self.zone_name, CallerReference=self.prefix)["HostedZone"]["Id"].split("/")[-1]
        self.res.update(zone_id=zone, instances={}, allocations={}, ips={}, volumes=[])
        for t in self.targets:
            tags = {"Name": t, "AutoRecovery": "enabled", "AutoRecovery:Name": t,
                    "AutoRecovery:HealthUrl": self.health_url(t), "AutoRecovery:Fleet": self.prefix}
            inst = e.run_instances(ImageId=image["ImageId"], InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                   TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
            iid = inst["Instances"][0]["InstanceId"]
            eip = e.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "demo", "Value": self.prefix}]}])
            e.associate_address(AllocationId=eip["AllocationId"], InstanceId=iid)
            # Snapshots tagged for re-provision, in the home region and in the DR region.
            for region in (PRIMARY, DR):
                vol = self.ec2[region].create_volume(AvailabilityZone=f"{region}a", Size=8)
                self.ec2[region].create_snapshot(VolumeId=vol["VolumeId"], TagSpecifications=[
                    {"ResourceType": "snapshot", "Tags": [{"Key": "AutoRecovery:Name", "Value": t}, {"Key": "demo", "Value": self.prefix}]}])
                self.res["volumes"].append((region, vol["VolumeId"]))
            self.route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": self.records[t], "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": eip["PublicIp"]}]}}]})
            self.res["instances"][t], self.res["allocations"][t], self.res["ips"][t] = iid, eip["AllocationId"], eip["PublicIp"]
            self.owner[iid] = self.owner[eip["AllocationId"]] = t
            self.associations[eip["AllocationId"]] = iid
            self.record_values[self.records[t]] = eip["PublicIp"]
        self.aws("ses", PRIMARY).verify_email_identity(EmailAddress=f"fleet@{self.zone_name}")
        dynamo = self.aws("dynamodb", PRIMARY)
        for table in (f"{self.prefix}-recovery-events", f"{self.prefix}-prediction-events"):
            dynamo.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"},
                                                      {"AttributeName": "timestamp", "AttributeType": "S"}],
                                KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"},
                                           {"AttributeName": "timestamp", "KeyType": "RANGE"}])
        # Where a fail-over launches: moto's default subnet and security group in the DR region.
        self.res["dr_subnet"] = self.ec2[DR].describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]["SubnetId"]
        self.res["dr_group"] = self.ec2[DR].describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
        self.refresh()

    def targets_file(self, defaults):
        """The TARGETS_FILE document for these targets: `defaults`, plus each target's Elastic IP and DR settings."""
        return {"defaults": defaults, "targets": {t: {
            "elastic_ip_allocation_id": self.res["allocations"][t],
            "dr": {"hosted_zone_id": self.res["zone_id"], "record_name": self.records[t], "record_ttl": 60,
                   "instance_type": "t3.small", "subnet_id": self.res["dr_subnet"], "security_group_ids": [self.res["dr_group"]]}}
            for t in self.targets}}

    def cleanup(self):
        """Removes what the world created in the shared moto, and what the fleet created for its targets (best effort)."""
        try:
            for region in (PRIMARY, DR):
                e = self.ec2[region]
                ids = [i["InstanceId"]
                       for r in e.describe_instances(Filters=[{"Name": "tag:AutoRecovery:Name", "Values": self.targets}])["Reservations"]
                       for i in r["Instances"]]
                for a in e.describe_addresses()["Addresses"]:
                    tags = {x["Key"]: x["Value"] for x in a.get("Tags", [])}
                    if tags.get("demo") == self.prefix or tags.get("AutoRecovery:DrFor") in self.targets:
                        if a.get("AssociationId"):
                            e.disassociate_address(AssociationId=a["AssociationId"])
                        e.release_address(AllocationId=a["AllocationId"])
                if ids:
                    e.terminate_instances(InstanceIds=ids)
                names = [f"autorecovery-{t}-*" for t in self.targets]
                for img in e.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": names}])["Images"]:
                    e.deregister_image(ImageId=img["ImageId"])
                for s in e.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:demo", "Values": [self.prefix]}])["Snapshots"]:
                    e.delete_snapshot(SnapshotId=s["SnapshotId"])
            for region, vol in self.res.get("volumes", []):
                self.ec2[region].delete_volume(VolumeId=vol)
            if "zone_id" in self.res:
                for r in self.route53.list_resource_record_sets(HostedZoneId=self.res["zone_id"])["ResourceRecordSets"]:
                    if r["Type"] == "A":
                        self.route53.change_resource_record_sets(HostedZoneId=self.res["zone_id"], ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": r}]})
                self.route53.delete_hosted_zone(Id=self.res["zone_id"])
            dynamo = self.aws("dynamodb", PRIMARY)
            for table in (f"{self.prefix}-recovery-events", f"{self.prefix}-prediction-events"):
                dynamo.delete_table(TableName=table)
        except Exception as e:
            say("world", f"clean-up in moto incomplete: {e}")

    # ------------------------------------------------------------ waiting

    def wait_for(self, what, predicate, timeout):
        """Waits until predicate() (called under the lock) is truthy; refreshes the sites every 2 s."""
        deadline = time.time() + timeout
        while True:
            with self.lock:
                found = predicate()
                if found:
                    return found
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise Missed(f"{what}: not seen within {int(timeout)} s")
                self.lock.wait(min(2, remaining))
            self.request_refresh()

    def notice(self, prefix, start):
        """Under the lock: the first notice, after index `start`, whose title starts with `prefix`."""
        return next((n for n in self.notices[start:] if n.title.startswith(prefix)), None)

    def accepted_call(self, action, start, test=lambda c: True):
        """Under the lock: the first call moto accepted, after index `start`, of `action` that passes `test`."""
        return next((c for c in self.calls[start:] if c.action == action and c.accepted and test(c)), None)
