#!/usr/bin/env bash
# lint.sh fails when gofmt would change a file, go vet complains, or
# staticcheck reports anything.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))
if [ -n "$unformatted" ]; then
	printf 'gofmt: these files need formatting:\n%s\n' "$unformatted" >&2
	exit 1
fi
export GOWORK=off
go vet ./...
# staticcheck is a tool of the tools module; run its binary on berth's packages.
staticcheck=$(go -C tools tool -n staticcheck)
"$staticcheck" ./...
