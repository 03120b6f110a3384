#!/usr/bin/env bash
# Fuzzes every decoder of external input (fuzz/, see docs/fuzzing.md): builds the targets with
# nightly (AddressSanitizer, overflow checks on) and runs each for TALLY_FUZZ_SECONDS seconds.
# Exits non-zero, naming each failing input, when a target panics, crashes, leaks, times out or
# goes over its memory limits. Idempotent: installs cargo-fuzz when missing, rebuilds only what
# changed, and keeps growing the corpus outside the clone.
#
#   deploy/fuzz.sh                                       # every target, 20 s each
#   TALLY_FUZZ_SECONDS=3600 deploy/fuzz.sh api_body      # one target, an hour
#
# TALLY_FUZZ_ARGS adds libFuzzer flags (e.g. "-fork=2"; they win over the defaults below);
# TALLY_FUZZ_TARGET_DIR (build output), TALLY_FUZZ_DIR (corpus and logs) and
# TALLY_FUZZ_TOOLCHAIN (default: nightly) move things elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

seconds="${TALLY_FUZZ_SECONDS:-20}"
toolchain="${TALLY_FUZZ_TOOLCHAIN:-nightly}"
# Never the main workspace's target directory (CI exports CARGO_TARGET_DIR for that one).
target_dir="${TALLY_FUZZ_TARGET_DIR:-$HOME/.cache/tally-fuzz-target}"
state="${TALLY_FUZZ_DIR:-$HOME/.cache/tally-fuzz}"
read -r -a extra <<<"${TALLY_FUZZ_ARGS:-}"
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz: TALLY_FUZZ_SECONDS must be a whole number of seconds, not '$seconds'" >&2; exit 2 ;;
esac

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  if [ -n "${TALLY_FUZZ_TOOLCHAIN:-}" ]; then
    echo "fuzz: the '$toolchain' toolchain is not installed" >&2
    exit 1
  fi
  # No nightly here (none can be fetched on some machines): the stable compiler takes the
  # sanitizer flags cargo fuzz passes once told it may (the same compiler, unstable flags on).
  echo "== no nightly toolchain: building with stable and RUSTC_BOOTSTRAP=1"
  toolchain=stable
  export RUSTC_BOOTSTRAP=1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  # A temporary build directory, not whatever CARGO_TARGET_DIR the caller exported.
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked
fi

# The same flags for build and run, or `cargo fuzz run` would rebuild.
build_flags=(--target-dir "$target_dir" --debug-assertions)

echo "== cargo +$toolchain fuzz build (into $target_dir)"
cargo "+$toolchain" fuzz build "${build_flags[@]}"

# Limits per target. max_len follows the route's body limit where that is practical (16 KiB
# for single events; resources are capped at 64 KiB of their 256 KiB, images at 64 KiB of
# their 10 MiB: bigger inputs only slow the search). A single allocation above malloc_limit_mb
# is a failure: JSON bodies have no business allocating 64 MiB, and the image decoder's budget
# is 256 MiB (tally_media::MAX_ALLOC).
limits_for() {
  local json=(-dict="$root/fuzz/json.dict" -rss_limit_mb=1024 -malloc_limit_mb=64 -timeout=10)
  case "$1" in
    image_upload) limits=(-max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=60) ;;
    resource) limits=(-max_len=65536 "${json[@]}") ;;
    *) limits=(-max_len=16384 "${json[@]}") ;;
  esac
}

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

mkdir -p "$state/logs"
failed=()
for target in "${targets[@]}"; do
  corpus="$state/corpus/$target"
  artifacts="$root/fuzz/artifacts/$target"
  log="$state/logs/$target.log"
  mkdir -p "$corpus" "$artifacts"
  # The committed seeds are read too; new inputs go to the first directory only.
  dirs=("$corpus")
  [ -d "fuzz/seeds/$target" ] && dirs+=("fuzz/seeds/$target")
  marker=$(mktemp)
  echo "== $target: ${seconds}s"
  limits_for "$target"
  if cargo "+$toolchain" fuzz run "${build_flags[@]}" "$target" "${dirs[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 "${limits[@]}" "${extra[@]}" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//; s/[[:space:]]+exec\/s.*//')
    echo "   ok: ${runs:-?} runs, ${rate:-?} exec/s, peak RSS ${rss:-?} MB; ${done_line:-}"
  else
    failed+=("$target")
    echo "!! $target FAILED (full log: $log):"
    # From the first report (a panic, a sanitizer or libFuzzer error) on, else the log's end.
    first=$(grep -n -m1 -E "panicked at|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)" "$log" | cut -d: -f1)
    if [ -n "$first" ]; then
      sed -n "${first},$((first + 40))p" "$log"
    else
      tail -n 40 "$log"
    fi | sed 's/^/   | /'
    found=0
    while IFS= read -r input; do
      found=1
      echo "!! failing input: $input ($(wc -c <"$input") bytes)"
      if [ "$(wc -c <"$input")" -le 4096 ]; then
        echo "   base64: $(base64 -w0 "$input")"
      fi
      echo "   reproduce: cargo +$toolchain fuzz run ${build_flags[*]} $target $input"
    done < <(find "$artifacts" -type f -newer "$marker" | sort)
    [ "$found" -eq 1 ] || echo "!! no input was saved; see $log"
  fi
  rm -f "$marker"
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "FUZZING FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} target(s) ran ${seconds}s each without a failure"
