"""Named EditConfig overrides given on a benchmark's command line.

    parse_variant("wd-exact-w0.1=wd:true,wd_mode:exact,wd_weight:0.1")
        -> ("wd-exact-w0.1", {"wd": True, "wd_mode": "exact", "wd_weight": 0.1})

Values are parsed as JSON where they can be (numbers, true/false), else kept as strings.
"""

from __future__ import annotations

import json


def parse_variant(spec: str) -> tuple[str, dict]:
    name, _, body = spec.partition("=")
    overrides = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition(":")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return name, overrides
