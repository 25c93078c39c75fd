#!/usr/bin/env bash
# tidy.sh fails when `go mod tidy` would change go.mod or go.sum of berth or
# of the tools module, and prints the difference.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOWORK=off

status=0
for dir in . tools; do
	if ! diff=$(go -C "$dir" mod tidy -diff 2>&1); then
		printf 'tidy: %s/go.mod is not tidy; run `GOWORK=off go -C %s mod tidy`:\n%s\n' "$dir" "$dir" "$diff" >&2
		status=1
	fi
done
exit $status
