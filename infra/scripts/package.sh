#!/usr/bin/env bash
# Builds every Lambda function for release into target/lambda/<function>/bootstrap.zip (what
# infra/template.yaml's CodeUri points at) and prints each zip's size.
#
# Every function ships the same binary, `kickoff-lambda` (infra/lambda), built once with
# `cargo lambda build --release`; its KICKOFF_FUNCTION variable (set per function by the template) says
# which function it is. One link instead of 32 is what keeps this within minutes; docs/packaging.md has
# the trade-off with size and cold start. Fails if a zip is missing or over 8 MB.
#
# usage: bash infra/scripts/package.sh            (x86_64; arm64 is documented in docs/packaging.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash infra/scripts/tools.sh
export PATH="$root/.tools/venv/bin:$PATH"

start=$(date +%s)
out="$root/target/lambda-build"
rm -rf "$out"
# Non-PIE (`-C relocation-model=static`): the loader has no relocations to apply at start, which was
# most of the cold start's excess over a hello world (docs/packaging.md). The flag reaches only the
# x86_64 target's crates (`--x86-64` builds for an explicit target), never the build's proc macros.
# The bench's baseline, the hello world, is built the same way beside it.
export RUSTFLAGS="${RUSTFLAGS:-} -C relocation-model=static"
cargo lambda build --release --compiler cargo --x86-64 -p kickoff-lambda --output-format zip --lambda-dir "$out"
cargo build --release --target x86_64-unknown-linux-gnu -p hello-lambda
zip="$out/kickoff-lambda/bootstrap.zip"
[ -f "$zip" ] || { echo "package: cargo lambda build made no $zip" >&2; exit 1; }

functions=$(ls functions)
limit=$((8 * 1024 * 1024))
count=0
for f in $functions; do
  mkdir -p "target/lambda/$f"
  rm -f "target/lambda/$f/bootstrap.zip"
  ln "$zip" "target/lambda/$f/bootstrap.zip" 2>/dev/null || cp "$zip" "target/lambda/$f/bootstrap.zip"
  size=$(stat -c %s "target/lambda/$f/bootstrap.zip")
  awk -v f="$f" -v s="$size" 'BEGIN { printf "%-26s %6.2f MB\n", f, s / 1048576 }'
  if [ "$size" -gt "$limit" ]; then
    echo "package: $f's zip is over 8 MB" >&2
    exit 1
  fi
  count=$((count + 1))
done
echo "packaged $count functions in $(( $(date +%s) - start )) s (one binary, kickoff-lambda)"
