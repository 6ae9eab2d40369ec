#!/usr/bin/env bash
# The recipe review of a pull request: what .github/workflows/recipe-review.yml runs, and what
# tests/test_review_workflow.py runs on a temporary git repository, so the test runs what CI runs.
#
#   usage: .github/scripts/recipe-review.sh BASE HEAD OUT.md      (in the repository, HEAD checked out)
#
# Validates every recipe (recipes/*.yaml) the pull request adds or changes, reviews each against its
# version at BASE (`synthvlm-build review BASE:PATH PATH`; a new recipe is reviewed alone), and
# writes one Markdown comment to OUT.md. When a non-recipe file under recipes/ changes (a caption
# file), every recipe is reviewed, so the unpinned-source warnings show up next to that change.
# Exit status: 2 if a recipe is invalid, else 4 if data changed without a version bump, else 1 if a
# command failed otherwise, else 0.
#
# Everything in the comment that a pull request controls (file names, recipe text in validate's output)
# is escaped so it cannot end a code span or fence and render as Markdown or HTML: see md_code and the
# fence below (`synthvlm-build review` escapes its own output, synthvlm_builder/text.py).
set -uo pipefail
if [[ $# -ne 3 ]]; then
  echo "usage: $0 BASE HEAD OUT.md" >&2
  exit 2
fi
base=$1 head=$2 out=$3
recipe_globs=(':(glob)recipes/*.yaml' ':(glob)recipes/*.yml')

# File names are read NUL-separated (-z): a name may hold a newline or a quote, and git would
# otherwise print it C-quoted, a name no command can open.
changed() {  # files under recipes/ that differ between the merge base and HEAD, by git status letters
  git diff -z --name-only --no-renames --diff-filter="$1" "$base...$head" -- "${@:2}"
}
mapfile -t -d '' recipes < <(changed AMT "${recipe_globs[@]}")
mapfile -t -d '' removed < <(changed D "${recipe_globs[@]}")
mapfile -t -d '' data < <(changed ADMT recipes/ | grep -zEv '^recipes/[^/]+\.ya?ml$')
if [[ ${#data[@]} -gt 0 ]]; then
  mapfile -t -d '' recipes < <(git ls-files -z "${recipe_globs[@]}")
fi

md_code() {  # $1 as an inline code span nothing in it can close, as text.md_code makes them:
  # every byte that is not printable ASCII shown as '?', fenced with more backticks than any run inside
  local LC_ALL=C fence='`'
  local text=${1//[^[:print:]]/?}
  while [[ $text == *"$fence"* ]]; do fence+='`'; done
  case $text in '`'* | ' '* | *'`' | *' ' | '') text=" $text " ;; esac  # CommonMark strips one space
  printf '%s%s%s' "$fence" "$text" "$fence"
}

fence_for() {  # a code fence longer than any backtick run in $1 (at least three), so $1 cannot close it
  local fence='```'
  while [[ $1 == *"$fence"* ]]; do fence+='`'; done
  printf '%s' "$fence"
}

status=0
worse() {  # keep the most serious exit status: 2, then 4, then 1; 3 (bumped) is a pass
  local code=$1
  case "$code" in 0|3) ;; 2) status=2 ;; 4) [[ $status == 2 ]] || status=4 ;; *) [[ $status == 0 ]] && status=1 ;; esac
}

{
  echo "<!-- synthvlm-recipe-review -->"
  echo "## Recipe review"
  echo
  echo "Base \`$(git rev-parse --short "$base")\`, head \`$(git rev-parse --short "$head")\`:" \
       "${#recipes[@]} recipe(s) to review."
  for f in "${removed[@]}"; do echo "- removed: $(md_code "$f")"; done
  for f in "${data[@]}"; do echo "- changed input file: $(md_code "$f")"; done
  echo
} > "$out"

if [[ ${#recipes[@]} -gt 0 ]]; then
  validation=$(synthvlm-build validate "${recipes[@]}" 2>&1)
  code=$?
  worse "$code"
  fence=$(fence_for "$validation")
  {
    echo "<details><summary>synthvlm-build validate: $([[ $code == 0 ]] && echo ok || echo "failed (exit $code)")</summary>"
    echo
    echo "${fence}text"
    echo "$validation"
    echo "$fence"
    echo "</details>"
    echo
  } >> "$out"
fi

for f in "${recipes[@]}"; do
  if git cat-file -e "$base:$f" 2>/dev/null; then
    synthvlm-build review "$base:$f" "$f" >> "$out"
  else
    synthvlm-build review "$f" >> "$out"
  fi
  worse $?
  echo >> "$out"
done

echo "_Exit 2 (an invalid recipe) or 4 (the data changes but \`version\` was not bumped) fails this check;" \
     "this run's status: $status._" >> "$out"
exit "$status"
