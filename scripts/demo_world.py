#!/usr/bin/env python3
"""The simulated world of scripts/demo.sh: one website on EC2 (in moto) that breaks and is repaired only by
what the fleet really does at the AWS API. Demo scaffolding, not product; docs/testing.md has the rules.

It is four things at once:
  1. a reverse proxy in front of moto: the workers' AWS_ENDPOINT_URL points here, every request is
     forwarded unchanged, and the mutating calls that pass are watched (reboot, stop/start, address moves,
     Route 53 changes, e-mails sent);
  2. the website: GET /site/<target>/health answers 200 or 503 from the state of the AWS world;
  3. the Slack incoming webhook: every notice the notifier sends is printed and kept;
  4. the script of the demo: it breaks the site four times, each time after the fleet said "recovered",
     and checks that each rung of the ladder really happened. It writes the verdict to <dir>/result.

The site is "up" when its DNS record (Route 53) points at an address that is associated with a running
instance that is not broken and not in a region that is down. So only real AWS calls can heal it:
  - RebootInstances / StartInstances of an instance whose web server hung heal that instance;
  - AssociateAddress of the site's Elastic IP onto a new, healthy instance makes that one serve;
  - a Route 53 UPSERT pointing the record at an address in the DR region makes that one serve.

Usage: demo_world.py <dir> (environment: MOTO_URL, DEMO_PREFIX, PHASE_TIMEOUT).
"""
import http.client
import http.server
import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse

import boto3

DIR = sys.argv[1]
MOTO = urllib.parse.urlparse(os.environ.get("MOTO_URL", "http://127.0.0.1:5000"))
PREFIX = os.environ["DEMO_PREFIX"]
PHASE_TIMEOUT = float(os.environ.get("PHASE_TIMEOUT", "120"))
PRIMARY, DR = "us-east-1", "us-west-2"
TARGET = f"{PREFIX}-shop"
ZONE_NAME = f"{PREFIX}.example.com"
RECORD = f"www.{PREFIX}.example.com"

lock = threading.Condition()  # guards everything below; notified on every event
broken = {}            # instance id -> "hung" (a reboot fixes it) or "dead" (nothing does)
regions_down = set()   # regions whose instances cannot serve the site
notices = []           # (title, fields, text) of every Slack notice received
calls = []             # (action, region, params) of every watched mutating AWS call
emails_sent = 0
site = {"up": None, "why": "not computed yet", "instance": None, "region": None}
health_requests = 0


def say(kind, text):
    print(f"{time.strftime('%H:%M:%S')}  {kind:<7} {text}", flush=True)


def aws(service, region):
    # The world talks to moto directly, not through its own proxy: its calls are not the fleet's.
    return boto3.client(service, region_name=region, endpoint_url=f"http://{MOTO.netloc}",
                        aws_access_key_id="demo-world", aws_secret_access_key="demo-world")


ec2 = {PRIMARY: aws("ec2", PRIMARY), DR: aws("ec2", DR)}
route53 = aws("route53", PRIMARY)
res = {}  # what setup() created


# ---------------------------------------------------------------- the state of the site

def compute_site():
    """Follows DNS record -> address -> instance in moto, then applies the world's breakages."""
    sets = route53.list_resource_record_sets(HostedZoneId=res["zone_id"])["ResourceRecordSets"]
    ip = next((r["ResourceRecords"][0]["Value"] for r in sets
               if r["Type"] == "A" and r["Name"].rstrip(".") == RECORD), None)
    for region in (PRIMARY, DR):
        for a in ec2[region].describe_addresses()["Addresses"]:
            if a.get("PublicIp") == ip and a.get("InstanceId"):
                iid = a["InstanceId"]
                inst = ec2[region].describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
                state = inst["State"]["Name"]
                if state != "running":
                    return False, f"{iid} is {state}", iid, region
                if region in regions_down:
                    return False, f"{region} is down", iid, region
                if iid in broken:
                    return False, f"the web server on {iid} is {broken[iid]}", iid, region
                return True, f"served by {iid} ({region}) at {ip}", iid, region
    return False, f"no instance holds {ip}", None, None


def refresh_site():
    with lock:
        up, why, iid, region = compute_site()
        if up != site["up"] or iid != site["instance"]:
            say("site", ("UP    " if up else "DOWN  ") + why)
        site.update(up=up, why=why, instance=iid, region=region)
        lock.notify_all()


# ---------------------------------------------------------------- 1. the AWS proxy

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade", "content-length"}


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

    def forward(self):
        body = self.body()
        conn = http.client.HTTPConnection(MOTO.hostname, MOTO.port or 80, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        if 200 <= answer.status < 300:
            try:
                watch(self.command, self.path, self.headers, body, data)
            except Exception as e:  # the demo's bookkeeping must never break the fleet's call
                say("world", f"(could not interpret a call: {e})")
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward


def watch(method, path, headers, body, answer):
    """Reacts to the fleet's real AWS calls (after moto accepted them)."""
    global emails_sent
    scope = re.search(r"Credential=[^/]+/\d+/([^/]+)/", headers.get("Authorization", ""))
    region = scope.group(1) if scope else "?"
    if method == "POST" and path.endswith("/rrset"):
        text = body.decode()
        values = re.findall(r"<Value>([^<]+)</Value>", text)
        action = re.search(r"<Action>(\w+)</Action>", text)
        with lock:
            calls.append(("ChangeResourceRecordSets", region, {"action": action and action.group(1), "values": values}))
        say("aws", f"Route 53 {action and action.group(1)} {RECORD} A {' '.join(values)}")
        refresh_site()
        return
    params = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(errors="replace")).items()}
    action = params.get("Action")
    ids = [v for k, v in sorted(params.items()) if k.startswith("InstanceId")]
    if action == "SendEmail":
        with lock:
            emails_sent += 1
        return
    if action not in ("RebootInstances", "StopInstances", "StartInstances", "RunInstances", "RegisterImage",
                      "AllocateAddress", "AssociateAddress", "CreateTags", "TerminateInstances"):
        return
    if action == "RunInstances":
        ids = re.findall(r"<instanceId>([^<]+)</instanceId>", answer.decode())
    if action == "AllocateAddress":
        ids = re.findall(r"<publicIp>([^<]+)</publicIp>", answer.decode())
    with lock:
        calls.append((action, region, dict(params, ids=ids)))
        healed = [i for i in ids if broken.get(i) == "hung" and action in ("RebootInstances", "StartInstances")]
        for i in healed:
            del broken[i]  # the hung web server comes back with the reboot
    detail = {
        "AssociateAddress": f"{params.get('AllocationId')} -> {params.get('InstanceId')}",
        "RegisterImage": params.get("Name", ""),
        "CreateTags": " ".join(f"{params[k]}={params.get(k.replace('Key', 'Value'), '')}"
                               for k in sorted(params) if k.startswith("Tag.") and k.endswith(".Key")) + f" on {params.get('ResourceId.1', '')}",
    }.get(action, " ".join(ids))
    say("aws", f"{action} {detail} [{region}]" + (" (the hung web server restarts)" if healed else ""))
    refresh_site()


# ---------------------------------------------------------------- 2. the site and 3. the Slack webhook

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
        global health_requests
        if self.path != f"/site/{TARGET}/health":
            return self.reply(404, "no such site")
        with lock:
            health_requests += 1
            up, why = site["up"], site["why"]
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
        with lock:
            notices.append((title, fields, detail))
            lock.notify_all()
        say("notice", title + (f" | {detail[:140]}" if detail else ""))
        if nxt and " is down: " in title:  # the outage notice says what runs when: the grace period
            say("", f"next: {nxt}")
        self.reply(200, "ok")


def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


# ---------------------------------------------------------------- setup and clean-up in moto

def setup(web_port):
    e = ec2[PRIMARY]
    image = e.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*-x86_64-gp2"]}])["Images"][0]
    health_url = f"http://127.0.0.1:{web_port}/site/{TARGET}/health"
    tags = {"Name": TARGET, "AutoRecovery": "enabled", "AutoRecovery:Name": TARGET,
            "AutoRecovery:HealthUrl": health_url, "AutoRecovery:Fleet": PREFIX}
    inst = e.run_instances(ImageId=image["ImageId"], InstanceType="t3.micro", MinCount=1, MaxCount=1,
                           TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    iid = inst["Instances"][0]["InstanceId"]
    eip = e.allocate_address(Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "demo", "Value": PREFIX}]}])
    e.associate_address(AllocationId=eip["AllocationId"], InstanceId=iid)
    # Snapshots tagged for re-provision, in the home region and in the DR region.
    for region in (PRIMARY, DR):
        vol = ec2[region].create_volume(AvailabilityZone=f"{region}a", Size=8)
        ec2[region].create_snapshot(VolumeId=vol["VolumeId"], TagSpecifications=[
            {"ResourceType": "snapshot", "Tags": [{"Key": "AutoRecovery:Name", "Value": TARGET}, {"Key": "demo", "Value": PREFIX}]}])
        res.setdefault("volumes", []).append((region, vol["VolumeId"]))
    zone = route53.create_hosted_zone(Name=ZONE_NAME, CallerReference=PREFIX)["HostedZone"]["Id"].split("/")[-1]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": RECORD, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": eip["PublicIp"]}]}}]})
    aws("ses", PRIMARY).verify_email_identity(EmailAddress=f"fleet@{ZONE_NAME}")
    dynamo = aws("dynamodb", PRIMARY)
    for table in (f"{PREFIX}-recovery-events", f"{PREFIX}-prediction-events"):
        dynamo.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "instance_id", "AttributeType": "S"},
                                                  {"AttributeName": "timestamp", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "instance_id", "KeyType": "HASH"},
                                       {"AttributeName": "timestamp", "KeyType": "RANGE"}])
    # Where a fail-over launches: moto's default subnet and security group in the DR region.
    dr_subnet = ec2[DR].describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]["SubnetId"]
    dr_group = ec2[DR].describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
    res.update(instance=iid, allocation=eip["AllocationId"], ip=eip["PublicIp"], zone_id=zone, dr_subnet=dr_subnet, dr_group=dr_group)
    say("world", f"{TARGET}: {iid} in {PRIMARY}, Elastic IP {eip['PublicIp']}, {RECORD} -> {eip['PublicIp']}, "
                 f"snapshots in {PRIMARY} and {DR}, site {health_url}")
    return health_url


def cleanup():
    """Removes what the demo created in the shared moto (best effort)."""
    try:
        for region in (PRIMARY, DR):
            e = ec2[region]
            filters = [{"Name": "tag:AutoRecovery:Name", "Values": [TARGET]}]
            ids = [i["InstanceId"] for r in e.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
            for a in e.describe_addresses()["Addresses"]:
                tags = {t["Key"]: t["Value"] for t in a.get("Tags", [])}
                if tags.get("demo") == PREFIX or tags.get("AutoRecovery:DrFor") == TARGET:
                    if a.get("AssociationId"):
                        e.disassociate_address(AssociationId=a["AssociationId"])
                    e.release_address(AllocationId=a["AllocationId"])
            if ids:
                e.terminate_instances(InstanceIds=ids)
            for img in e.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [f"autorecovery-{TARGET}-*"]}])["Images"]:
                e.deregister_image(ImageId=img["ImageId"])
            for s in e.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "tag:demo", "Values": [PREFIX]}])["Snapshots"]:
                e.delete_snapshot(SnapshotId=s["SnapshotId"])
        for region, vol in res.get("volumes", []):
            ec2[region].delete_volume(VolumeId=vol)
        if "zone_id" in res:
            for r in route53.list_resource_record_sets(HostedZoneId=res["zone_id"])["ResourceRecordSets"]:
                if r["Type"] == "A":
                    route53.change_resource_record_sets(HostedZoneId=res["zone_id"], ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": r}]})
            route53.delete_hosted_zone(Id=res["zone_id"])
        dynamo = aws("dynamodb", PRIMARY)
        for table in (f"{PREFIX}-recovery-events", f"{PREFIX}-prediction-events"):
            dynamo.delete_table(TableName=table)
    except Exception as e:
        say("world", f"clean-up in moto incomplete: {e}")


# ---------------------------------------------------------------- 4. the script

class Missed(Exception):
    pass


def wait_for(what, predicate, timeout=PHASE_TIMEOUT):
    """Waits until predicate() (called under the lock) is truthy; refreshes the site every 2 s."""
    deadline = time.time() + timeout
    while True:
        with lock:
            found = predicate()
            if found:
                return found
            remaining = deadline - time.time()
            if remaining <= 0:
                raise Missed(f"{what}: not seen within {int(timeout)} s")
            lock.wait(min(2, remaining))
        if not found:
            refresh_site()


def notice(prefix, start):
    """The first notice, after index `start`, whose title starts with `prefix`."""
    return lambda: next((n for n in notices[start:] if n[0].startswith(prefix)), None)


def call(action, start, test=lambda c: True):
    return lambda: next((c for c in calls[start:] if c[0] == action and test(c)), None)


def outage(number, how, step):
    """Breaks the site with `how` and waits for the outage notice naming `step`; returns marks."""
    marks = (len(notices), len(calls))
    with lock:
        victim = site["instance"]
        how(victim)
    say("world", f"--- outage {number}: " + {1: f"the web server on {victim} hangs (a reboot would fix it)",
                                             2: f"the disk of {victim} fails (nothing on that instance fixes it)",
                                             3: f"{PRIMARY} goes down (every instance there is unreachable)",
                                             4: f"a bad deploy breaks {victim} (no automatic step can fix it)"}[number])
    refresh_site()
    wait_for(f"outage {number}: outage notice ({step} next)", notice(f"{TARGET} is down: outage declared ({step} next)", marks[0]))
    return marks


def recovered(step, marks):
    wait_for(f"{step}: 'done' notice", notice(f"{TARGET}: {step} done", marks[0]))
    n = wait_for(f"{step}: 'recovered' notice", notice(f"{TARGET} recovered", marks[0]))
    if n[1].get("Fixed by", "").split(" ")[0] != step:
        raise Missed(f"{step}: the recovered notice says fixed by '{n[1].get('Fixed by')}'")
    wait_for(f"{step}: the site up", lambda: site["up"])
    time.sleep(3)  # let the probes see a few healthy checks before the next break


def script():
    started = time.time()
    summary = []

    def done(text):
        summary.append(f"{int(time.time() - started):>4} s  {text}")
        say("world", "OK  " + text)

    wait_for("the probe's first checks of the site", lambda: health_requests >= 3)

    # 1. The web server hangs: restart.
    first = res["instance"]
    m = outage(1, lambda i: broken.__setitem__(i, "hung"), "restart")
    wait_for("restart: RebootInstances of the serving instance", call("RebootInstances", m[1], lambda c: first in c[2]["ids"]))
    recovered("restart", m)
    done(f"outage 1: restart rebooted {first}; recovered")

    # 2. The disk dies: re-provision from the snapshot, move the Elastic IP.
    m = outage(2, lambda i: broken.__setitem__(i, "dead"), "reprovision")
    moved = wait_for("reprovision: AssociateAddress of the Elastic IP onto a new instance",
                     call("AssociateAddress", m[1], lambda c: c[2].get("AllocationId") == res["allocation"] and c[2].get("InstanceId") != first))
    recovered("reprovision", m)
    new = moved[2]["InstanceId"]
    with lock:
        if site["instance"] != new or site["region"] != PRIMARY:
            raise Missed(f"reprovision: the site is served by {site['instance']}, not by the new instance {new}")
    done(f"outage 2: reprovision launched {new} from the snapshot, Elastic IP {res['ip']} moved to it; recovered")

    # An admin replaces the original's disk and starts it again (directly, not through the fleet): the
    # fleet says the original is back, and changes nothing (the replacement keeps serving).
    marks = (len(notices), len(calls))
    with lock:
        broken.pop(first, None)
    say("world", f"--- an admin repairs {first} (the original) and starts it again")
    ec2[PRIMARY].start_instances(InstanceIds=[first])
    wait_for("the original instance back: notice", notice(f"{TARGET}: the original instance answers again", marks[0]))
    with lock:
        touched = [c for c in calls[marks[1]:] if c[0] in ("RebootInstances", "StopInstances", "StartInstances", "RunInstances",
                                                          "AssociateAddress", "ChangeResourceRecordSets")]
        serving = site["instance"]
    if touched:
        raise Missed(f"the original came back and the fleet acted: {touched[0][0]}")
    if serving != new:
        raise Missed(f"the original came back and the site moved to {serving}")
    done(f"the original {first} runs again: told, nothing changed ({new} keeps serving)")

    # 3. The home region goes down: fail over to the DR region, Route 53 follows.
    m = outage(3, lambda i: regions_down.add(PRIMARY), "failover")
    wait_for("failover: Route 53 UPSERT of the record", call("ChangeResourceRecordSets", m[1], lambda c: c[2]["action"] == "UPSERT"))
    recovered("failover", m)
    with lock:
        if site["region"] != DR:
            raise Missed(f"failover: the record does not lead to an instance in {DR} ({site['why']})")
        dr_instance = site["instance"]
    done(f"outage 3: failover launched {dr_instance} in {DR}, {RECORD} now points at it; recovered")

    # 4. Outage number four within the window: notify only, nothing is touched.
    m = outage(4, lambda i: broken.__setitem__(i, "dead"), "notify_only")
    time.sleep(float(os.environ.get("DEMO_GRACE", "5")) + 5)
    with lock:
        touched = [c for c in calls[m[1]:] if c[0] in ("RebootInstances", "StopInstances", "RunInstances", "AssociateAddress", "ChangeResourceRecordSets")]
    if touched:
        raise Missed(f"outage 4: the fleet acted although only a notice was due: {touched[0][0]}")
    done("outage 4: notify only; no AWS change, a person must act")

    with lock:
        counted = len(notices), emails_sent
    summary.append(f"notices received on the Slack webhook: {counted[0]}; e-mails accepted by moto SES: {counted[1]}")
    return summary


def main():
    aws_port, web_port = serve(AWSProxy), serve(Web)
    health_url = setup(web_port)
    refresh_site()
    with open(os.path.join(DIR, "world.env"), "w") as f:
        f.write(f"WORLD_AWS_URL=http://127.0.0.1:{aws_port}\n"
                f"SLACK_WEBHOOK_URL=http://127.0.0.1:{web_port}/slack/T0DEMO/B0DEMO/{os.urandom(8).hex()}\n"
                f"SITE_URL={health_url}\nDEMO_TARGET={TARGET}\nDEMO_ALLOCATION={res['allocation']}\n"
                f"DEMO_ZONE_ID={res['zone_id']}\nDEMO_RECORD={RECORD}\nDEMO_DR_SUBNET={res['dr_subnet']}\nDEMO_DR_GROUP={res['dr_group']}\nDEMO_EMAIL_FROM=fleet@{ZONE_NAME}\n"
                f"DEMO_EMAIL_TO=oncall@{ZONE_NAME}\n")
    os.rename(os.path.join(DIR, "world.env"), os.path.join(DIR, "world.ready"))
    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), os._exit(0)))
    while not os.path.exists(os.path.join(DIR, "go")):
        time.sleep(0.2)
    try:
        lines = script()
        verdict = "ok\n" + "\n".join(lines) + "\n"
    except Missed as e:
        verdict = f"missed\n{e}\n"
    with open(os.path.join(DIR, "result.tmp"), "w") as f:
        f.write(verdict)
    os.rename(os.path.join(DIR, "result.tmp"), os.path.join(DIR, "result"))
    while True:  # keep serving the site, the proxy and the webhook until demo.sh stops the world
        time.sleep(2)
        refresh_site()


if __name__ == "__main__":
    main()
