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
# Each changed recipe that has a base version is also compared by its data (`synthvlm-build compare`: the
# first REVIEW_COMPARE_CAPTIONS curated captions of each side, default 8, through the real pipeline; 0 turns
# it off, and the comment says nothing of it) when both sides run offline (built-in models, files in the repository); the base side is read from
# a worktree of BASE, so its caption files are BASE's. Each comparison's page (the images) goes to
# review-pages/<recipe>/index.html. Otherwise the comment says why the data comparison is absent.
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

captions=${REVIEW_COMPARE_CAPTIONS:-8}
base_tree=.review/$(git rev-parse --short "$base")
# shellcheck disable=SC2317  # called by the trap
cleanup() {
  [[ -d $base_tree ]] && git worktree remove --force "$base_tree" >/dev/null 2>&1
  rm -rf .review
}
trap cleanup EXIT

compare_data() {  # the data comparison of recipe $1 (its review exited $2), as Markdown on stdout
  local f=$1 reviewed=$2 name code why fence absent
  absent="### Data comparison: $(md_code "$f")"$'\n\n'
  [[ $captions == 0 ]] && return  # turned off
  if [[ $reviewed == 2 ]]; then printf '%sNot run: a recipe does not load.\n\n' "$absent"; return; fi
  if [[ ! -d $base_tree ]] && ! git worktree add --detach "$base_tree" "$base" >/dev/null 2>&1; then
    printf '%sNot run: cannot check out the base in a worktree.\n\n' "$absent"
    return
  fi
  name=$(basename "${f%.*}")
  HF_HUB_OFFLINE=1 synthvlm-build compare "$base_tree/$f" "$f" --captions "$captions" --offline \
    --output "review-pages/$name" > .review/compare.md 2> .review/compare.err
  code=$?
  case "$code" in
    0|3|4)  # its verdict is review's (the same content identities): the review above counts it
      cat .review/compare.md
      echo
      echo "The images side by side: $(md_code "review-pages/$name/index.html") (in CI: the run's" \
           "\`review-pages\` artifact)."
      echo ;;
    *)
      if [[ $code == 2 ]]; then
        printf '%sNot run: the data comparison runs offline, on built-in models and files in the repository only:\n\n' \
          "$absent"
      else
        printf '%sFailed (exit %s):\n\n' "$absent" "$code"
        worse 1
      fi
      why=$(grep -v '^wrote ' .review/compare.err | tail -n 1)
      fence=$(fence_for "$why")
      printf '%stext\n%s\n%s\n\n' "$fence" "$why" "$fence" ;;
  esac
}

for f in "${recipes[@]}"; do
  if git cat-file -e "$base:$f" 2>/dev/null; then
    synthvlm-build review "$base:$f" "$f" >> "$out"
    code=$?
    worse "$code"
    echo >> "$out"
    compare_data "$f" "$code" >> "$out"
  else
    synthvlm-build review "$f" >> "$out"
    worse $?
    echo >> "$out"
  fi
done

echo "_Exit 2 (an invalid recipe) or 4 (the data changes but \`version\` was not bumped) fails this check;" \
     "this run's status: $status._" >> "$out"
exit "$status"
