"""Verifies webhook requests with the standardwebhooks package (PyPI): the oracle the relay's
tests hold steward's signer to, written by others. Reads one JSON object a line on stdin
({secret, body, headers}); for each, the request must verify as sent (within the package's own
timestamp tolerance) and must fail once its body, id or timestamp is changed. Prints
"verified N" and exits 0, or names the first request that does not and exits 1."""

import json
import sys
from datetime import datetime, timedelta, timezone

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def refused(wh, body, headers):
    try:
        wh.verify(body, headers)
    except WebhookVerificationError:
        return True
    return False


def main():
    n = 0
    for line in sys.stdin:
        if not line.strip():
            continue
        r = json.loads(line)
        wh = Webhook(r["secret"])
        headers = r["headers"]
        body = r["body"]
        try:
            wh.verify(body, headers)
        except WebhookVerificationError as e:
            print(f"request {n} ({headers.get('webhook-id')}) does not verify: {e}")
            return 1
        if not refused(wh, body + " ", headers):
            print(f"request {n}: a changed body still verifies")
            return 1
        if not refused(wh, body, {**headers, "webhook-id": headers["webhook-id"] + "x"}):
            print(f"request {n}: a changed id still verifies")
            return 1
        old = str(int((datetime.now(timezone.utc) - timedelta(hours=1)).timestamp()))
        if not refused(wh, body, {**headers, "webhook-timestamp": old}):
            print(f"request {n}: a timestamp an hour old still verifies")
            return 1
        n += 1
    print(f"verified {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
