"""The demo's webhook receiver: verifies each request's Standard Webhooks signature with the
standardwebhooks package (not steward's code), answers 204 (or 400 when it does not verify), and
prints one line per event. Usage: demo_receiver.py PORT SECRETS.json, where SECRETS.json maps a
path (/acme) to that endpoint's whsec_ secret."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT = int(sys.argv[1])
SECRETS = json.load(open(sys.argv[2]))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        secret = SECRETS.get(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if secret is None:
                raise WebhookVerificationError("no endpoint at this path")
            event = Webhook(secret).verify(body, headers)
        except WebhookVerificationError as e:
            print(f"{self.path}: REFUSED {headers.get('webhook-id')}: {e}", flush=True)
            self.send_response(400)
            self.end_headers()
            return
        data = event.get("data", {})
        print(f"{self.path}: verified {headers['webhook-id']} {event.get('type')} "
              f"tenant={headers.get('steward-tenant')} payload={json.dumps(data.get('payload'))}",
              flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
