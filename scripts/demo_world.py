#!/usr/bin/env python3
"""The simulated world of scripts/demo.sh: one website on EC2 (in moto) that breaks and is repaired only by
what the fleet really does at the AWS API. Demo scaffolding, not product; docs/testing.md has the rules.

The world itself (the proxy in front of moto that watches the fleet's AWS calls, the website, the Slack
webhook, what is created in moto) is scripts/fleet_world.py, shared with the chaos suite. This file is the
script of the demo: it breaks the site four times, each time after the fleet said "recovered", and checks that
each rung of the ladder really happened. It writes the verdict to <dir>/result.

Usage: demo_world.py <dir> (environment: MOTO_URL, DEMO_PREFIX, PHASE_TIMEOUT).
"""
import os
import signal
import sys
import time

from fleet_world import PRIMARY, DR, Missed, World

DIR = sys.argv[1]
PREFIX = os.environ["DEMO_PREFIX"]
PHASE_TIMEOUT = float(os.environ.get("PHASE_TIMEOUT", "120"))
world = World(PREFIX, os.environ.get("MOTO_URL", "http://127.0.0.1:5000"), {"shop": "www"})
TARGET = world.targets[0]
RECORD = world.records[TARGET]
lock = world.lock


def say(kind, text):
    world.say(kind, text)


def wait_for(what, predicate, timeout=PHASE_TIMEOUT):
    return world.wait_for(what, predicate, timeout)


def site():
    return world.sites[TARGET]


def notice(prefix, start):
    return lambda: world.notice(prefix, start)


def call(action, start, test=lambda c: True):
    return lambda: world.accepted_call(action, start, test)


def outage(number, how, step):
    """Breaks the site with `how` and waits for the outage notice naming `step`; returns marks."""
    marks = (len(world.notices), len(world.calls))
    with lock:
        victim = site()["instance"]
    how(victim)
    say("world", f"--- outage {number}: " + {1: f"the web server on {victim} hangs (a reboot would fix it)",
                                             2: f"the disk of {victim} fails (nothing on that instance fixes it)",
                                             3: f"{PRIMARY} goes down (every instance there is unreachable)",
                                             4: f"a bad deploy breaks {victim} (no automatic step can fix it)"}[number])
    wait_for(f"outage {number}: outage notice ({step} next)", notice(f"{TARGET} is down: outage declared ({step} next)", marks[0]))
    return marks


def recovered(step, marks):
    wait_for(f"{step}: 'done' notice", notice(f"{TARGET}: {step} done", marks[0]))
    n = wait_for(f"{step}: 'recovered' notice", notice(f"{TARGET} recovered", marks[0]))
    if n.fields.get("Fixed by", "").split(" ")[0] != step:
        raise Missed(f"{step}: the recovered notice says fixed by '{n.fields.get('Fixed by')}'")
    wait_for(f"{step}: the site up", lambda: site()["up"])
    time.sleep(3)  # let the probes see a few healthy checks before the next break


TOUCHING = ("RebootInstances", "StopInstances", "StartInstances", "RunInstances", "AssociateAddress", "ChangeResourceRecordSets")


def script():
    started = time.time()
    summary = []

    def done(text):
        summary.append(f"{int(time.time() - started):>4} s  {text}")
        say("world", "OK  " + text)

    wait_for("the probe's first checks of the site", lambda: world.health_requests[TARGET] >= 3)

    # 1. The web server hangs: restart.
    first = world.res["instances"][TARGET]
    allocation, ip = world.res["allocations"][TARGET], world.res["ips"][TARGET]
    m = outage(1, lambda i: world.break_instance(i, "hung"), "restart")
    wait_for("restart: RebootInstances of the serving instance", call("RebootInstances", m[1], lambda c: first in c.ids))
    recovered("restart", m)
    done(f"outage 1: restart rebooted {first}; recovered")

    # 2. The disk dies: re-provision from the snapshot, move the Elastic IP.
    m = outage(2, lambda i: world.break_instance(i, "dead"), "reprovision")
    moved = wait_for("reprovision: AssociateAddress of the Elastic IP onto a new instance",
                     call("AssociateAddress", m[1], lambda c: c.params.get("AllocationId") == allocation and c.params.get("InstanceId") != first))
    recovered("reprovision", m)
    new = moved.params["InstanceId"]
    with lock:
        if site()["instance"] != new or site()["region"] != PRIMARY:
            raise Missed(f"reprovision: the site is served by {site()['instance']}, not by the new instance {new}")
    done(f"outage 2: reprovision launched {new} from the snapshot, Elastic IP {ip} moved to it; recovered")

    # An admin replaces the original's disk and starts it again (directly, not through the fleet): the
    # fleet says the original is back, and changes nothing (the replacement keeps serving).
    marks = (len(world.notices), len(world.calls))
    with lock:
        world.broken.pop(first, None)
    say("world", f"--- an admin repairs {first} (the original) and starts it again")
    world.ec2[PRIMARY].start_instances(InstanceIds=[first])
    wait_for("the original instance back: notice", notice(f"{TARGET}: the original instance answers again", marks[0]))
    with lock:
        touched = [c for c in world.calls[marks[1]:] if c.accepted and c.action in TOUCHING]
        serving = site()["instance"]
    if touched:
        raise Missed(f"the original came back and the fleet acted: {touched[0].action}")
    if serving != new:
        raise Missed(f"the original came back and the site moved to {serving}")
    done(f"the original {first} runs again: told, nothing changed ({new} keeps serving)")

    # 3. The home region goes down: fail over to the DR region, Route 53 follows.
    m = outage(3, lambda i: world.region_down(PRIMARY), "failover")
    wait_for("failover: Route 53 UPSERT of the record", call("ChangeResourceRecordSets", m[1], lambda c: c.params["ChangeAction"] == "UPSERT"))
    recovered("failover", m)
    with lock:
        if site()["region"] != DR:
            raise Missed(f"failover: the record does not lead to an instance in {DR} ({site()['why']})")
        dr_instance = site()["instance"]
    done(f"outage 3: failover launched {dr_instance} in {DR}, {RECORD} now points at it; recovered")

    # 4. Outage number four within the window: notify only, nothing is touched.
    m = outage(4, lambda i: world.break_instance(i, "dead"), "notify_only")
    time.sleep(float(os.environ.get("DEMO_GRACE", "5")) + 5)
    with lock:
        touched = [c for c in world.calls[m[1]:] if c.accepted and c.action in TOUCHING and c.action != "StartInstances"]
    if touched:
        raise Missed(f"outage 4: the fleet acted although only a notice was due: {touched[0].action}")
    done("outage 4: notify only; no AWS change, a person must act")

    with lock:
        counted = len(world.notices), world.emails_sent
    summary.append(f"notices received on the Slack webhook: {counted[0]}; e-mails accepted by moto SES: {counted[1]}")
    return summary


def main():
    aws_port, _, _ = world.start()
    world.setup()
    r = world.res
    say("world", f"{TARGET}: {r['instances'][TARGET]} in {PRIMARY}, Elastic IP {r['ips'][TARGET]}, {RECORD} -> {r['ips'][TARGET]}, "
                 f"snapshots in {PRIMARY} and {DR}, site {world.health_url(TARGET)}")
    with open(os.path.join(DIR, "world.env"), "w") as f:
        f.write(f"WORLD_AWS_URL=http://127.0.0.1:{aws_port}\nSLACK_WEBHOOK_URL={world.slack_url()}\n"
                f"SITE_URL={world.health_url(TARGET)}\nDEMO_TARGET={TARGET}\nDEMO_ALLOCATION={r['allocations'][TARGET]}\n"
                f"DEMO_ZONE_ID={r['zone_id']}\nDEMO_RECORD={RECORD}\nDEMO_DR_SUBNET={r['dr_subnet']}\nDEMO_DR_GROUP={r['dr_group']}\n"
                f"DEMO_EMAIL_FROM=fleet@{world.zone_name}\nDEMO_EMAIL_TO=oncall@{world.zone_name}\n")
    os.rename(os.path.join(DIR, "world.env"), os.path.join(DIR, "world.ready"))
    signal.signal(signal.SIGTERM, lambda *_: (world.cleanup(), os._exit(0)))
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


if __name__ == "__main__":
    main()
