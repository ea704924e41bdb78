"""Evaluates a batch of flags through the real OpenFeature Python SDK and its OFREP
provider, as an application would, and prints what the SDK reported.

Same input (stdin) and output (stdout) JSON as client.mjs; "integer" and "float" use
the SDK's separate integer and float calls.
"""

import json
import sys
from importlib.metadata import version

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def main() -> None:
    request = json.load(sys.stdin)
    headers = dict(request.get("headers") or {})
    # The provider resolves every call with one HTTP request (no cache to defeat).
    api.set_provider_and_wait(OFREPProvider(request["url"], headers_factory=lambda: headers))
    client = api.get_client()
    methods = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "integer": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }
    results = []
    for e in request["evaluations"]:
        method = methods.get(e["type"])
        if method is None:
            raise SystemExit(f"unknown flag type {e['type']!r} in evaluation {e['id']}")
        attributes = dict(e.get("context") or {})
        targeting_key = attributes.pop("targetingKey", None)
        d = method(e["flag"], e["default"], EvaluationContext(targeting_key, attributes))
        results.append(
            {
                "id": e["id"],
                "value": d.value,
                "variant": d.variant,
                "reason": None if d.reason is None else str(d.reason),
                "errorCode": None if d.error_code is None else str(d.error_code),
                "errorMessage": d.error_message,
            }
        )
    api.shutdown()
    names = ["openfeature-sdk", "openfeature-provider-ofrep", "requests"]
    client_name = " ".join(f"{n}=={version(n)}" for n in names)
    json.dump({"client": client_name, "results": results}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
