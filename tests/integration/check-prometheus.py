#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Strict checks of layerd's Prometheus text and of the Grafana dashboard's queries.

    check-prometheus.py exposition METRICS_FILE
    check-prometheus.py dashboard DASHBOARD_JSON METRICS_FILE

exposition: METRICS_FILE (a /metrics answer) is valid text exposition format
0.0.4, checked more strictly than Prometheus' own parser does: every line is a
HELP, a TYPE, a comment or a sample of valid syntax; HELP and TYPE at most once
per family, TYPE before the family's first sample; a family's samples in one
group; no sample twice; counters not negative; each histogram series has its
buckets in ascending le with counts that never decrease, a +Inf bucket equal to
its _count, and a _sum.

dashboard: every PromQL expression of DASHBOARD_JSON (panels' targets, nested
rows' panels, templating queries) names only metrics METRICS_FILE has (a
histogram's family name with _bucket, _sum or _count).

Prints the problems, one a line; exits 0 when there are none.
"""
import json
import math
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s(?:,%s)*,?)?\})? (\S+)( -?[0-9]+)?$" % (NAME, LABEL, LABEL))
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def value(text):
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    if text == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", text):
        raise ValueError(text)
    return float(text)


def parse(path, problems):
    """Returns {family: type}, the sample names, and the samples (name, labels dict, value)."""
    types, helps, samples, names = {}, set(), [], set()
    seen_families, current, keys = set(), None, set()

    def family_of(name):
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[: -len(suffix)] if name.endswith(suffix) else None
            if base and types.get(base) in ("histogram", "summary") and (suffix != "_bucket" or types[base] == "histogram"):
                return base
        return name

    with open(path) as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        problems.append("the text does not end with a newline")
    for no, line in enumerate(lines, 1):
        where = "line %d" % no
        if line == "":
            continue
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s)(?: (.*))?$" % NAME, line)
            if not m:
                if re.match(r"^# ?(HELP|TYPE)\b", line):
                    problems.append("%s: malformed %s" % (where, line[:60]))
                continue
            kind, fam, rest = m.group(1), m.group(2), m.group(3) or ""
            if fam in seen_families and fam != current:
                problems.append("%s: %s of %s after its samples ended" % (where, kind, fam))
            if kind == "HELP":
                if fam in helps:
                    problems.append("%s: a second HELP for %s" % (where, fam))
                helps.add(fam)
            else:
                if fam in types:
                    problems.append("%s: a second TYPE for %s" % (where, fam))
                if rest not in TYPES:
                    problems.append("%s: unknown type %r for %s" % (where, rest, fam))
                if fam in seen_families:
                    problems.append("%s: TYPE of %s after its first sample" % (where, fam))
                types[fam] = rest
            continue
        m = SAMPLE.match(line)
        if not m:
            problems.append("%s: not a sample: %s" % (where, line[:80]))
            continue
        name, labels_text, val = m.group(1), m.group(2) or "", m.group(3)
        labels = dict(LABEL_RE.findall(labels_text))
        if len(labels) != len(LABEL_RE.findall(labels_text)):
            problems.append("%s: a label twice: %s" % (where, line[:80]))
        try:
            v = value(val)
        except ValueError:
            problems.append("%s: not a value: %r" % (where, val))
            continue
        fam = family_of(name)
        if fam != current:
            if fam in seen_families:
                problems.append("%s: %s's samples are not in one group" % (where, fam))
            seen_families.add(fam)
            current = fam
        key = (name, tuple(sorted(labels.items())))
        if key in keys:
            problems.append("%s: the same sample twice: %s" % (where, line[:80]))
        keys.add(key)
        if types.get(fam) == "counter" and not v >= 0:
            problems.append("%s: a negative counter: %s" % (where, line[:80]))
        names.add(name)
        samples.append((name, labels, v, fam))
    return types, names, samples


def check_histograms(types, samples, problems):
    series = {}
    for name, labels, v, fam in samples:
        if types.get(fam) != "histogram":
            continue
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        s = series.setdefault((fam, rest), {"buckets": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            if "le" not in labels:
                problems.append("%s%s: a bucket without le" % (fam, dict(rest)))
                continue
            try:
                s["buckets"].append((value(labels["le"]), v))
            except ValueError:
                problems.append("%s%s: le %r is no number" % (fam, dict(rest), labels["le"]))
        elif name == fam + "_sum":
            s["sum"] = v
        elif name == fam + "_count":
            s["count"] = v
        else:
            problems.append("%s: a sample %s that is no bucket, sum or count" % (fam, name))
    for (fam, rest), s in series.items():
        what = "%s%s" % (fam, dict(rest))
        b = s["buckets"]
        if not b or b[-1][0] != math.inf:
            problems.append("%s: no +Inf bucket last" % what)
            continue
        if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
            problems.append("%s: le not ascending" % what)
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            problems.append("%s: bucket counts decrease" % what)
        if s["count"] is None or s["count"] != b[-1][1]:
            problems.append("%s: _count %s is not the +Inf bucket's %s" % (what, s["count"], b[-1][1]))
        if s["sum"] is None:
            problems.append("%s: no _sum" % what)
    return len(series)


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def expressions(dashboard):
    """Every PromQL text of the dashboard: targets' expr, templating queries."""
    out = []

    def panels(ps):
        for p in ps or []:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append(t["expr"])
            panels(p.get("panels"))

    panels(dashboard.get("panels"))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if q:
                out.append(q)
    return out


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings (label values)
    e = re.sub(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)", r"\1", e)  # its label
    e = re.sub(r"\{[^}]*\}", "", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                       # ranges, subqueries
    e = re.sub(r"\$\{?\w+\}?", "", e)                      # Grafana variables
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def main():
    problems = []
    if sys.argv[1] == "exposition":
        types, names, samples = parse(sys.argv[2], problems)
        n = check_histograms(types, samples, problems)
        if n == 0:
            problems.append("no histogram in the text")
    elif sys.argv[1] == "dashboard":
        with open(sys.argv[2]) as f:
            dash = json.load(f)
        types, names, samples = parse(sys.argv[3], [])
        exprs = expressions(dash)
        if not exprs:
            problems.append("no expression in the dashboard")
        for e in exprs:
            found = metric_names(e)
            if not found:
                problems.append("no metric in %r" % e)
            for name in sorted(found):
                if name not in names:
                    problems.append("%s (in %r) is not in layerd's /metrics" % (name, e))
    else:
        sys.exit("usage: check-prometheus.py exposition FILE | dashboard JSON FILE")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
