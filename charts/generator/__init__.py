"""Generates the chart's derived files: the CRD copy, the Grafana dashboards and the Prometheus rules.

A development tool, not part of the operator: it needs grafana-foundation-sdk (the dev extra). Run
`python -m charts.generator` from the repository root to write the files, `--check` to fail on drift
(tests/unit/test_chart_generated.py does the same).
"""
