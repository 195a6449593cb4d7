#!/usr/bin/env bash
# What counting one answered request costs (a counter and a duration histogram by protocol and outcome), on every
# core at once: Hoard's own counters, System.Diagnostics.Metrics under the OpenTelemetry SDK, and prometheus-net.
# Prints a Markdown table (ns per request per thread, million requests/s, bytes allocated per request).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
echo "| way | ns per request | M requests/s (all threads) | bytes allocated per request |"
echo "| --- | ---: | ---: | ---: |"
dotnet run -c Release --project "$here/metrics-cost/metrics-cost.csproj" -- "${1:-$(nproc)}" 2>&1 | grep '^|'
