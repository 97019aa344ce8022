#!/bin/sh
# new-repo.sh makes the git repository the offline example tests,
# widget/ beside this script: a branch main, and a branch fix, one commit
# ahead, for a pull request. Run again, it starts the repository afresh.
# Names and dates are fixed, so the commits are the same everywhere.
set -eu
dir=$(cd "$(dirname "$0")" && pwd)/widget
rm -rf "$dir"
git init -q -b main "$dir"
cd "$dir"
export GIT_AUTHOR_NAME=Octocat GIT_AUTHOR_EMAIL=octocat@example.com GIT_AUTHOR_DATE='2026-01-01T12:00:00Z'
export GIT_COMMITTER_NAME=Octocat GIT_COMMITTER_EMAIL=octocat@example.com GIT_COMMITTER_DATE='2026-01-01T12:00:00Z'
cat > greet.sh <<'SH'
# greet NAME prints a greeting.
greet() { echo "hello, $1"; }
SH
cat > test.sh <<'SH'
. ./greet.sh
test "$(greet world)" = "hello, world"
echo "ok: greet"
SH
git add greet.sh test.sh
git -c commit.gpgSign=false commit -q -m "Greet people"
git checkout -q -b fix
cat > greet.sh <<'SH'
# greet NAME prints a greeting; with no NAME, it greets everyone.
greet() { echo "hello, ${1:-everyone}"; }
SH
cat >> test.sh <<'SH'
test "$(greet)" = "hello, everyone"
echo "ok: greet with no name"
SH
GIT_AUTHOR_DATE='2026-01-02T12:00:00Z' GIT_COMMITTER_DATE='2026-01-02T12:00:00Z' \
	git -c commit.gpgSign=false commit -q -a -m "Greet everyone when no name is given"
git checkout -q main
echo "made $dir: branch main, and branch fix one commit ahead ($(git rev-parse --short fix))"
