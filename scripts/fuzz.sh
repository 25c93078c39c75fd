#!/usr/bin/env bash
# fuzz.sh runs each fuzz target briefly. Add one line per target:
#
#	fuzz FuzzParseHost ./domain
#
# A target that does not exist (yet) is reported and skipped, so a line can be
# added before the target lands; a package that does not compile fails.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-5s}

fuzz() {
	local target=$1 pkg=$2
	local listed
	listed=$(go test -list "^${target}\$" "$pkg")
	if ! grep -qx "$target" <<<"$listed"; then
		printf 'fuzz: %s not found in %s, skipped\n' "$target" "$pkg" >&2
		return 0
	fi
	printf 'fuzz: %s %s for %s\n' "$pkg" "$target" "$FUZZTIME" >&2
	go test -run='^$' -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg"
}

# One line per fuzz target:
fuzz FuzzHost ./domain
fuzz FuzzName ./domain
fuzz FuzzGitURL ./domain
fuzz FuzzGitRef ./domain
fuzz FuzzPathPrefix ./domain
fuzz FuzzImageRef ./domain
fuzz FuzzCreateApp ./webui
fuzz FuzzPreviewLabel ./domain
fuzz FuzzPullRequestPayload ./webui
fuzz FuzzParse ./handlers/compose
printf 'fuzz: done\n' >&2
