"""schemathesis hooks for ci/fuzz.sh (SCHEMATHESIS_HOOKS=schemathesis_hooks, PYTHONPATH=ci).

`GET /users/export` answers NDJSON, which schemathesis cannot deserialize by itself. This
deserializer checks the stream as SPEC §12 says a client should: every line JSON, every line
but the last a `User` (validated against the committed document's schema), the last one
`{"meta": ...}` with `total` equal to the users streamed. It returns the last line, which
schemathesis then validates against the response schema (`ExportLine`).
"""
import json
import pathlib

import jsonschema
import schemathesis

_DOCUMENT = json.loads((pathlib.Path(__file__).parent.parent / "openapi" / "openapi.json").read_text())
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
        if "meta" in user:
            raise ValueError(f"line {number}: meta before the last line")
        _USER.validate(user)
    if lines[-1]["meta"].get("total") != len(users):
        raise ValueError(f"meta.total is {lines[-1]['meta'].get('total')}, {len(users)} users were streamed")
    return lines[-1]
