"""A fake EC2 instance metadata service (IMDSv2) for the credential-provider tests.

PUT  /latest/api/token                               needs X-aws-ec2-metadata-token-ttl-seconds
GET  /latest/meta-data/iam/security-credentials/     role name (needs a valid token unless v1only)
GET  /latest/meta-data/iam/security-credentials/ROLE keys; generation n gives ASIAFAKE<n>/secret-<n>/token-<n>
POST /__control  JSON: expiration (ISO 8601), role ("" = no profile), fail (bool), v1only (bool),
                 forget_tokens (bool)
GET  /__stats    JSON counters
"""
import json
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import LOCK, QuietHandler, serve

STATE = {"expiration": "2030-01-01T00:00:00Z", "role": "fleet-role", "fail": False, "v1only": False}
TOKENS = set()
STATS = {"token_puts": 0, "list_gets": 0, "cred_gets": 0, "unauthorized": 0, "generation": 0}


class Handler(QuietHandler):
    def do_PUT(self):
        self.body()
        if self.path != "/latest/api/token":
            return self.reply(404)
        with LOCK:
            if STATE["v1only"]:
                return self.reply(405)
            if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self.reply(400, "missing TTL header")
            STATS["token_puts"] += 1
            token = f"imds-token-{STATS['token_puts']}"
            TOKENS.add(token)
        self.reply(200, token)

    def do_POST(self):
        data = self.body()
        if self.path != "/__control":
            return self.reply(404)
        with LOCK:
            update = json.loads(data or b"{}")
            if update.pop("forget_tokens", False):
                TOKENS.clear()
            STATE.update(update)
        self.reply(200, "ok")

    def do_GET(self):
        if self.path == "/__stats":
            with LOCK:
                return self.reply(200, json.dumps(STATS), "application/json")
        prefix = "/latest/meta-data/iam/security-credentials/"
        with LOCK:
            if not STATE["v1only"] and self.headers.get("X-aws-ec2-metadata-token") not in TOKENS:
                STATS["unauthorized"] += 1
                return self.reply(401)
            if self.path == prefix:
                STATS["list_gets"] += 1
                if not STATE["role"]:
                    return self.reply(404)
                return self.reply(200, STATE["role"])
            if self.path == prefix + STATE["role"]:
                STATS["cred_gets"] += 1
                if STATE["fail"]:
                    return self.reply(500, "boom")
                STATS["generation"] += 1
                n = STATS["generation"]
                doc = {
                    "Code": "Success",
                    "LastUpdated": "2026-01-01T00:00:00Z",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": f"ASIAFAKE{n}",
                    "SecretAccessKey": f"secret-{n}",
                    "Token": f"token-{n}",
                    "Expiration": STATE["expiration"],
                }
                return self.reply(200, json.dumps(doc), "text/plain")
        self.reply(404)


serve(Handler)
