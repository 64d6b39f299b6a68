#!/usr/bin/env python3
"""Every metric a Grafana dashboard queries exists: in Sources/ (the workers' /metrics), or in the short
list of series other programs export (EXTERNAL). Exit 1 naming each unknown metric.

The workers' names are the labels of (all in Sources/FleetRuntime/FleetMetrics.swift) `Counter(label:`, `FloatingPointCounter(label:`, `Gauge(label:`,
`Meter(label:`, `Recorder(label:` and `Timer(label:` in Sources/. swift-prometheus (PrometheusMetricsFactory)
exports a label unchanged (no `_total` added to counters); a Timer, and a Recorder with aggregate: true,
becomes a histogram queried as `<label>_bucket`, `<label>_sum`, `<label>_count` (never the bare label).

Usage: check-dashboard-metrics.py [dashboard.json ...] (from the repository root).
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARDS = [pathlib.Path(p) for p in sys.argv[1:]] or sorted((ROOT / "compose/grafana").glob("*.json"))

# Series the dashboard may use that the fleet does not export.
EXTERNAL = {
    "up": "Prometheus, per scrape target",
    "rabbitmq_detailed_queue_messages_ready": "RabbitMQ rabbitmq_prometheus, /metrics/detailed?family=queue_coarse_metrics",
    "rabbitmq_detailed_queue_messages_unacked": "same",
    "rabbitmq_detailed_queue_messages": "same",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def code_metrics():
    plain, histograms = set(), set()
    pattern = re.compile(r'\b(Counter|FloatingPointCounter|Gauge|Meter|Recorder|Timer)\(\s*label:\s*"([^"]+)"([^)]*)\)')
    for path in (ROOT / "Sources").rglob("*.swift"):
        for kind, name, rest in pattern.findall(path.read_text()):
            if kind == "Timer" or (kind == "Recorder" and "aggregate: true" in rest):
                histograms.add(name)
            else:
                plain.add(name)
    return plain, histograms


def queries(node, where="dashboard"):
    """(where, PromQL) for every panel target and every query variable."""
    if isinstance(node, dict):
        title = node.get("title") or node.get("name") or where
        for key in ("expr",):
            if isinstance(node.get(key), str):
                yield title, node[key]
        if node.get("type") == "query":
            q = node.get("query")
            yield title, q.get("query", "") if isinstance(q, dict) else (q or "")
        for value in node.values():
            yield from queries(value, title)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item, where)


def metric_names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)              # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)                       # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                      # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\{?\w+\}?", "", expr)                     # Grafana variables
    names = []
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end():].lstrip()
        word = m.group(0)
        if rest.startswith("(") or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d*e\d*", word):
            continue                                            # a function, keyword or exponent
        if m.start() > 0 and (expr[m.start() - 1].isdigit() or expr[m.start() - 1] == "."):
            continue                                            # part of a number (1e-9)
        names.append(word)
    return names


def main():
    plain, histograms = code_metrics()
    problems, used = [], set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for where, expr in queries(dashboard):
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
                problems.append(f"{path.name}: {where}: unbalanced brackets in {expr!r}")
            # A variable's label_values(metric{...}, label): only the first argument is a metric.
            lv = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s*,\s*\w+\s*\)\s*", expr)
            for name in [lv.group(1)] if lv else metric_names(expr):
                used.add((path.name, where, name))
    for file, where, name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in plain or name in EXTERNAL:
            continue
        if base != name and base in histograms:
            continue
        hint = " (a histogram: query _bucket, _sum or _count)" if name in histograms else ""
        problems.append(f"{file}: panel {where!r} queries {name}, which no code exports{hint}")
    if problems:
        for p in problems:
            print(f"check: {p}")
        return 1
    names = {n for _, _, n in used}
    print(f"check: the dashboard's {len(names)} metric names all exist "
          f"({len(names - set(EXTERNAL))} from Sources/, {len(names & set(EXTERNAL))} from Prometheus/RabbitMQ)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
