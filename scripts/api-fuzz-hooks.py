"""schemathesis hooks of scripts/api-fuzz: what the OpenAPI document cannot state.

JSON Schema has no bound relative to the present: `expiresAt` of a new API key must be in the
future, and `sendAt` of a message at most 30 days ahead (both documented in their
descriptions). A generated date-time is almost never in range, so every generated valid
request would be refused for it. These hooks move such instants into range, leaving any value
that is not a date-time (an invalid one, generated to be refused) as it is.

Nor can it state that an `Idempotency-Key` may come again only with the same body (else 422):
generated keys repeat (the document's example, short strings), so a valid key is replaced with
a fresh one of the same form for each request. The examples phase applies no hooks, and
sends the document's example key with each example body: a 422 `idempotency_mismatch` to a
valid request is the server keeping that promise, so that failure is dropped (and only that
one; the summary counts failures dropped).

Nor can it state that the second half of a sign-in ceremony succeeds only with what its first
half made: a provider's callback with the `state` the server keeps (and the browser's binding
cookie), a passkey's answer signed by an authenticator over the server's challenge. No
generated request can be one, so every one is refused (400, `oauth_failed` or the field named),
and that refusal of a schema-valid request is dropped too, for these three operations only.
Likewise a one-click unsubscribe link (`/u/{token}`) works only with a token the server signed:
every generated one is refused (400 naming `token`).

Nor can it state that a template's strings must be templates that compile: generated text that
happens to open a tag (`{{`, `{%`, `{#`) and never close it is refused, naming the string
(`content.text: syntax error ...`); that refusal is dropped too, for creating a template only.
"""

import re
import uuid
from datetime import datetime, timedelta, timezone

import schemathesis


def _in_range(value, ahead):
    """`value`, when it is an RFC 3339 date-time, replaced by one `ahead` from now."""
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return value
    try:
        datetime.fromisoformat(value[:10])
    except ValueError:
        return value
    return (datetime.now(timezone.utc) + ahead).isoformat()


# RFC 3339's date-time
_DATE_TIME = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


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
        messages = body.get("messages")
        for message in messages if isinstance(messages, list) else []:
            _send_body(message)
    headers = case.headers or {}
    for name, value in list(headers.items()):
        if name.lower() == "idempotency-key" and isinstance(value, str) and _KEY.match(value):
            headers[name] = uuid.uuid4().hex
    return case


# the document's pattern for the header, with its length bounds
_KEY = re.compile(r"^[!-~]([\t !-~]{0,253}[!-~])?$")



# the second halves of sign-in ceremonies and the unsubscribe link: the refusal each gives a
# made-up answer
_CEREMONY_ENDS = {
    ("GET", "/v1/auth/oauth/{providerId}/callback"): "oauth_failed",
    ("POST", "/v1/auth/passkeys/register/finish"): "validation_failed",
    ("POST", "/v1/auth/passkeys/sign-in/finish"): "validation_failed",
    ("GET", "/u/{token}"): "validation_failed",
    ("POST", "/u/{token}"): "validation_failed",
}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if type(failure).__name__ != "RejectedPositiveData":
        return True
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return True
    if response.status_code == 422:
        return code != "idempotency_mismatch"
    operation = (case.operation.method.upper(), case.operation.path)
    if response.status_code == 400 and operation in _CEREMONY_ENDS:
        return code != _CEREMONY_ENDS[operation]
    if response.status_code == 400 and operation == ("POST", "/v1/projects/{projectId}/templates"):
        details = response.json()["error"].get("details") or []
        return not details or not all(
            d.get("field", "").startswith("content.") and d.get("message", "").startswith("syntax error")
            for d in details
        )
    return True
