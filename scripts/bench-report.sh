#!/usr/bin/env bash
# The floor report benchmark of the README ("Reports"): one month of a 500-agent site (about
# 500,000 calls, 20,000 incidents; the month before is stored too, for the change) on SQLite and
# on PostgreSQL in a temp cluster. Prints the report's wall time (target <= 10 s), its peak RSS,
# and the ratio to one plain pass over the month's call rows measured in the same run.
#   scripts/bench-report.sh [--calls N] [--only sqlite|postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh fonts-ipafont-gothic postgresql
cargo bench --bench floor_report -- "$@"
