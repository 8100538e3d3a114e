#!/usr/bin/env bash
# Fails when the contract (protos/ with buf.yaml's `breaking` rules) breaks an
# earlier version of itself, so no change silently breaks a generated client.
#
# usage: scripts/buf_breaking.sh [BUF]   (BUF: the buf binary; default .tools/node_modules/.bin/buf)
#
# What it compares against, first that applies:
#   1. $BUF_BREAKING_AGAINST, any buf input (e.g. '.git#branch=main', a folder).
#   2. On a branch other than main, when main (or origin/main) is known: the
#      merge base with main, so the whole branch is checked, committed or not.
#   3. With uncommitted changes to the contract: HEAD.
#   4. Otherwise (a clean main, as in CI's fresh clone): the parent of the
#      latest commit that changed the contract, i.e. that change is checked.
# With no such earlier version (a single commit, a shallow clone that lacks
# the parent, no git at all) it says why and exits 0.
set -euo pipefail

cd "$(dirname "$0")/.."
root="$PWD"
buf="${1:-${BUF:-.tools/node_modules/.bin/buf}}"
main="${BUF_BREAKING_BRANCH:-main}"
contract=(protos buf.yaml buf.lock)

say() { printf 'buf-breaking: %s\n' "$*" >&2; }
skip() {
  say "skipped: $*"
  exit 0
}

if ! command -v "$buf" >/dev/null 2>&1 && [[ ! -x "$buf" ]]; then
  say "buf not found at $buf (make buf-lint installs it)"
  exit 2
fi

run_against() {
  say "checking protos/ against $1"
  "$buf" breaking --against "$2"
  say "no breaking change against $1"
}

if [[ -n "${BUF_BREAKING_AGAINST:-}" ]]; then
  run_against "$BUF_BREAKING_AGAINST" "$BUF_BREAKING_AGAINST"
  exit 0
fi

git rev-parse --is-inside-work-tree >/dev/null 2>&1 || skip "not a git work tree"
git rev-parse -q --verify 'HEAD^{commit}' >/dev/null || skip "no commit yet"

commit_of() { git rev-parse -q --verify "$1^{commit}" 2>/dev/null; }

base="" why=""
branch="$(git symbolic-ref -q --short HEAD || true)"
head="$(commit_of HEAD)"
if [[ "$branch" != "$main" ]]; then
  for ref in "$main" "origin/$main"; do
    tip="$(commit_of "$ref" || true)"
    if [[ -n "$tip" && "$tip" != "$head" ]] && mb="$(git merge-base HEAD "$tip" 2>/dev/null)"; then
      base="$mb" why="the merge base with $ref"
      break
    fi
  done
fi
if [[ -z "$base" && -n "$(git status --porcelain -- "${contract[@]}")" ]]; then
  base="$head" why="HEAD (uncommitted changes)"
fi
if [[ -z "$base" ]]; then
  last="$(git log -1 --format=%H -- "${contract[@]}")"
  [[ -n "$last" ]] || skip "no commit changes the contract"
  parent="$(commit_of "$last^" || true)"
  [[ -n "$parent" ]] || skip "the contract's latest change ${last:0:12} has no parent here (the first commit, or a shallow clone): nothing earlier to compare against"
  base="$parent" why="the parent of ${last:0:12}, the latest commit that changed the contract"
fi

# Export the base's contract with git itself: works in shallow clones and
# worktrees alike, and needs no network.
mapfile -t present < <(git ls-tree --name-only "$base" -- "${contract[@]}")
[[ " ${present[*]} " == *" protos "* ]] || skip "${base:0:12} has no protos/"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
git archive --format=tar "$base" -- "${present[@]}" | tar -x -C "$tmp"
against="$tmp"
[[ -f "$tmp/buf.yaml" ]] || against="$tmp/protos" # before buf.yaml: protos/ was the module
cd "$root"
run_against "$why (${base:0:12})" "$against"
