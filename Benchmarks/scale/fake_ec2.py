#!/usr/bin/env python3
"""EC2's DescribeInstances and DescribeInstanceStatus for the scale benchmark (scripts/bench-scale.sh).

moto does not answer a tag-filtered DescribeInstances over 10,000 instances in useful time (measured:
no answer within 6 minutes), so the scale benchmark discovers its targets here instead: COUNT running
instances, each opted in and tagged for FLEET, named scale-<i>, health URL SITE/t/<i % 4>/<i> (the
site's four groups fail independently). Everything else the workers send goes through the real broker
and Redis; only discovery and the probe's status sweep come from this server. Filters are not
evaluated: every instance matches. Pagination follows EC2 (MaxResults, NextToken).

    fake_ec2.py PORT COUNT FLEET SITE
"""
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, COUNT, FLEET, SITE = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


def instance_id(i):
    return "i-%017x" % (0x5CA1E000000 + i)


def instance_xml(i):
    tags = {
        "AutoRecovery": "enabled",
        "AutoRecovery:Fleet": FLEET,
        "AutoRecovery:Name": "scale-%d" % i,
        "AutoRecovery:HealthUrl": "%s/t/%d/%d" % (SITE, i % 4, i),
    }
    tag_xml = "".join("<item><key>%s</key><value>%s</value></item>" % kv for kv in tags.items())
    return (
        "<item><instanceId>%s</instanceId><imageId>ami-5ca1e</imageId><instanceType>t3.micro</instanceType>"
        "<instanceState><code>16</code><name>running</name></instanceState>"
        "<placement><availabilityZone>us-east-1a</availabilityZone></placement>"
        "<launchTime>2026-01-01T00:00:00.000Z</launchTime><tagSet>%s</tagSet></item>" % (instance_id(i), tag_xml)
    )


def status_xml(iid):
    ok = "<status>ok</status><details><item><name>reachability</name><status>passed</status></item></details>"
    return (
        "<item><instanceId>%s</instanceId><availabilityZone>us-east-1a</availabilityZone>"
        "<instanceState><code>16</code><name>running</name></instanceState>"
        "<systemStatus>%s</systemStatus><instanceStatus>%s</instanceStatus></item>" % (iid, ok, ok)
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        started = time.time()
        try:
            self.serve()
        finally:
            # When each answer was served and how long it took: the workers' periodic discovery and status
            # sweeps, to set beside the benchmark's slowest requests.
            sys.stderr.write("fake_ec2: %.3f %.3f s %s\n" % (started, time.time() - started, self.action))

    def serve(self):
        self.action = "?"
        length = int(self.headers.get("Content-Length") or 0)
        params = urllib.parse.parse_qs(self.rfc1738(self.rfile.read(length)))
        action = self.action = params.get("Action", [""])[0]
        if action == "DescribeInstances":
            start = int(params.get("NextToken", ["0"])[0])
            size = int(params.get("MaxResults", ["1000"])[0])
            end = min(COUNT, start + size)
            items = "".join(instance_xml(i) for i in range(start, end))
            token = "<nextToken>%d</nextToken>" % end if end < COUNT else ""
            body = (
                '<DescribeInstancesResponse xmlns="%s"><requestId>r</requestId><reservationSet><item>'
                "<reservationId>r-5ca1e</reservationId><instancesSet>%s</instancesSet></item></reservationSet>%s"
                "</DescribeInstancesResponse>" % (NS, items, token)
            )
            self.answer(200, body)
        elif action == "DescribeInstanceStatus":
            ids = [v[0] for k, v in params.items() if k.startswith("InstanceId.")]
            body = (
                '<DescribeInstanceStatusResponse xmlns="%s"><requestId>r</requestId><instanceStatusSet>%s'
                "</instanceStatusSet></DescribeInstanceStatusResponse>" % (NS, "".join(status_xml(i) for i in ids))
            )
            self.answer(200, body)
        else:
            sys.stderr.write("fake_ec2: unsupported action %s\n" % action)
            self.answer(
                400,
                "<Response><Errors><Error><Code>UnsupportedOperation</Code><Message>%s is not served by the "
                "scale benchmark's fake EC2</Message></Error></Errors><RequestID>r</RequestID></Response>" % action,
            )

    @staticmethod
    def rfc1738(raw):
        return raw.decode("utf-8")

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
