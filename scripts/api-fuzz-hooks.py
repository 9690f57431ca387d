"""schemathesis hooks of scripts/api-fuzz: what the OpenAPI document cannot state.

JSON Schema has no bound relative to the present: `expiresAt` of a new API key must be in the
future, and `sendAt` of a message at most 30 days ahead (both documented in their
descriptions). A generated date-time is almost never in range, so every generated valid
request would be refused for it. These hooks move such instants into range, leaving any value
that is not a date-time (an invalid one, generated to be refused) as it is.
"""

from datetime import datetime, timedelta, timezone

import schemathesis


def _in_range(value, ahead):
    """`value`, when it is an RFC 3339 date-time, replaced by one `ahead` from now."""
    if not isinstance(value, str):
        return value
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return value
    return (datetime.now(timezone.utc) + ahead).isoformat()


def _send_body(body):
    if isinstance(body, dict) and "sendAt" in body:
        body["sendAt"] = _in_range(body["sendAt"], timedelta(hours=1))


@schemathesis.hook
def map_case(context, case):
    operation = (case.operation.method.upper(), case.operation.path)
    body = case.body
    if operation == ("POST", "/v1/api-keys") and isinstance(body, dict) and "expiresAt" in body:
        body["expiresAt"] = _in_range(body["expiresAt"], timedelta(days=1))
    elif operation == ("POST", "/v1/send"):
        _send_body(body)
    elif operation == ("POST", "/v1/send/batch") and isinstance(body, dict):
        for message in body.get("messages") or []:
            _send_body(message)
    return case

