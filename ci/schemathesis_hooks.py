"""schemathesis hooks for ci/fuzz.sh (SCHEMATHESIS_HOOKS=schemathesis_hooks, PYTHONPATH=ci).

`GET /users/export` answers NDJSON, which schemathesis cannot deserialize by itself. This
deserializer checks the stream as SPEC §12 says a client should: every line JSON with an
`id`, every line but the last a `User` (the first and last SAMPLE users validated against
the committed document's schema: all ~2,000 of every export took minutes of CI), the last
one `{"meta": ...}` with `total` equal to the users streamed. It returns the last line,
which schemathesis then validates against the response schema (`ExportLine`).
"""
import json
import pathlib

import jsonschema
import schemathesis

_DOCUMENT = json.loads((pathlib.Path(__file__).parent.parent / "openapi" / "openapi.json").read_text())
SAMPLE = 50
_USER = jsonschema.Draft202012Validator(
    {"$ref": "#/components/schemas/User", "components": _DOCUMENT["components"]}
)


@schemathesis.deserializer("application/x-ndjson")
def ndjson(ctx, response):
    text = response.content.decode("utf-8")
    if not text.endswith("\n"):
        raise ValueError("an export ends with a newline")
    lines = [json.loads(line) for line in text.splitlines()]
    if not lines or set(lines[-1]) != {"meta"}:
        raise ValueError("the last line is not {\"meta\": ...}: the stream was cut")
    users = lines[:-1]
    for number, user in enumerate(users, 1):
        if not isinstance(user, dict) or "meta" in user or not isinstance(user.get("id"), str):
            raise ValueError(f"line {number}: not a user with an id: {str(user)[:200]}")
        if number <= SAMPLE or number > len(users) - SAMPLE:
            _USER.validate(user)
    ids = [user["id"] for user in users]
    if len(set(ids)) != len(ids):
        raise ValueError("a user is in the export twice")
    if lines[-1]["meta"].get("total") != len(users):
        raise ValueError(f"meta.total is {lines[-1]['meta'].get('total')}, {len(users)} users were streamed")
    return lines[-1]
