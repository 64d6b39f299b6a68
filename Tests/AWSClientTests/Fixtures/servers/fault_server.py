"""Fault-injection server for the AWS client's retry tests.

Requests go to /<scenario>/<run-id>/... (the client's endpoint URL carries that base path).
Every request is recorded per run id: GET /__requests/<run-id> returns them as JSON.
POST /__config/<run-id> with a text body sets the error message returned by the "echo" scenario.

Scenarios:
  flaky      503 (EC2 XML, Unavailable) twice, then 200
  html503    503 with an HTML page once, then 200
  throttle   always 400 Throttling (ErrorResponse XML)
  ec2limit   always 503 RequestLimitExceeded (EC2 XML)
  badrequest always 400 InvalidParameterValue (EC2 XML)
  authfail   always 401 AuthFailure (EC2 XML)
  denied     always 403 UnauthorizedOperation (EC2 XML)
  echo       400 InvalidParameterValue whose message is the configured text plus the session token
  skew       403 RequestTimeTooSkewed unless X-Amz-Date is within 5 minutes of this server's clock
  slowfirst  the first request waits 3 s before answering 200; later ones answer at once
  jsonthrottle  400 ThrottlingException (JSON) once, then 200 {"Parameter": {...}}
"""
import json
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import LOCK, QuietHandler, serve

REQUESTS = {}
MESSAGES = {}

OK_XML = """<?xml version="1.0" encoding="UTF-8"?>
<DescribeRegionsResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>ok-request</requestId>
    <regionInfo><item><regionName>us-east-1</regionName><regionEndpoint>ec2.us-east-1.amazonaws.com</regionEndpoint></item></regionInfo>
</DescribeRegionsResponse>"""


def ec2_error(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>req-{code}</RequestID></Response>")


def query_error(code, message):
    return (f'<ErrorResponse xmlns="http://monitoring.amazonaws.com/doc/2010-08-01/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-{code}</RequestId></ErrorResponse>")


class Handler(QuietHandler):
    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "__requests":
            with LOCK:
                return self.reply(200, json.dumps(REQUESTS.get(parts[1], [])), "application/json")
        self.reply(404)

    def do_POST(self):
        body = self.body()
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "__config":
            with LOCK:
                MESSAGES[parts[1]] = body.decode()
            return self.reply(200, "ok")
        if len(parts) < 2:
            return self.reply(404)
        scenario, run = parts[0], parts[1]
        with LOCK:
            seen = REQUESTS.setdefault(run, [])
            seen.append({"path": self.path, "headers": dict(self.headers.items()), "body": body.decode(errors="replace")})
            n = len(seen)
            message = MESSAGES.get(run, "")
        xml = "text/xml"
        if scenario == "flaky":
            if n <= 2:
                return self.reply(503, ec2_error("Unavailable", "try again"), xml)
            return self.reply(200, OK_XML, xml)
        if scenario == "html503":
            if n == 1:
                return self.reply(503, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>", "text/html")
            return self.reply(200, OK_XML, xml)
        if scenario == "throttle":
            return self.reply(400, query_error("Throttling", "Rate exceeded"), xml)
        if scenario == "ec2limit":
            return self.reply(503, ec2_error("RequestLimitExceeded", "Request limit exceeded."), xml)
        if scenario == "badrequest":
            return self.reply(400, ec2_error("InvalidParameterValue", "Value (x) for parameter y is invalid"), xml)
        if scenario == "authfail":
            return self.reply(401, ec2_error("AuthFailure", "AWS was not able to validate the provided access credentials"), xml)
        if scenario == "denied":
            return self.reply(403, ec2_error("UnauthorizedOperation", "You are not authorized to perform this operation."), xml)
        if scenario == "echo":
            token = self.headers.get("X-Amz-Security-Token", "")
            return self.reply(400, ec2_error("InvalidParameterValue", f"{message} token={token}"), xml)
        if scenario == "skew":
            stamp = self.headers.get("X-Amz-Date", "")
            try:
                sent = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()
            except ValueError:
                sent = 0
            if abs(sent - time.time()) > 300:
                return self.reply(403, query_error("RequestTimeTooSkewed", "The difference between the request time and the current time is too large."),
                                  xml)  # send_response adds the Date header
            return self.reply(200, OK_XML, xml)
        if scenario == "slowfirst":
            if n == 1:
                time.sleep(3)
            return self.reply(200, OK_XML, xml)
        if scenario == "jsonthrottle":
            if n == 1:
                return self.reply(400, json.dumps({"__type": "com.amazonaws.ssm#ThrottlingException", "message": "Rate exceeded"}),
                                  "application/x-amz-json-1.1")
            return self.reply(200, json.dumps({"Parameter": {"Name": "n", "Value": "v", "Version": 1}}), "application/x-amz-json-1.1")
        self.reply(404, "unknown scenario")


serve(Handler)
