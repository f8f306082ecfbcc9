#!/usr/bin/env python3
"""Parses a Prometheus text page with the reference parser (Debian python3-prometheus-client) and
prints its samples as JSON lines: {"name":..., "labels":{...}, "value":...}. Exit 3 when the
parser is not installed (the test skips), 1 when the page does not parse.

  control_metrics.py metrics.txt > samples.jsonl
"""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("python3-prometheus-client is not installed", file=sys.stderr)
    sys.exit(3)

text = open(sys.argv[1], encoding="utf-8").read()
try:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            print(json.dumps({"family": family.name, "type": family.type, "name": s.name,
                              "labels": s.labels, "value": s.value}))
except Exception as e:  # the parser raises ValueError and friends on any format error
    print(f"metrics do not parse: {e}", file=sys.stderr)
    sys.exit(1)
