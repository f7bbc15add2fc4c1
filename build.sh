#!/usr/bin/env bash
# One entry point for building, testing and benchmarking. Installs what it needs; safe to run repeatedly.
#   ./build.sh build   restore and build everything (Release)
#   ./build.sh test    build and run the whole test suite
#   ./build.sh bench   run the BenchmarkDotNet suites (installs OpenBLAS as the SGEMM peer); extra args go to BenchmarkDotNet
#   ./build.sh demo    the built-in demo: pretrain a tiny Llama on a synthetic world, fine-tune it, print the table
set -euo pipefail
cd "$(dirname "$0")"
verb="${1:-build}"
shift || true

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

apt_install() {
  # Installs Debian packages when missing (root on the project's machines; sudo elsewhere).
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

require_dotnet() {
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "error: the .NET 10 SDK is not installed (dotnet not on PATH); install it from your distribution or Microsoft's packages" >&2
    exit 1
  fi
  local major
  major="$(dotnet --version | cut -d. -f1)"
  if [ "$major" -lt 10 ]; then
    echo "error: .NET SDK $(dotnet --version) found; this project needs 10 or later" >&2
    exit 1
  fi
}

build() {
  require_dotnet
  dotnet restore Engine.sln --verbosity quiet
  dotnet build Engine.sln -c Release --no-restore --verbosity quiet -nologo
}

case "$verb" in
  build)
    build
    ;;
  test)
    build
    log="$(mktemp)"
    status=0
    dotnet test tests/Engine.Tests/Engine.Tests.csproj -c Release --no-build --verbosity quiet "$@" 2>&1 | tee "$log" || status=$?
    # One plain closing line that any CI reads: "N passed, N failed, N skipped".
    summary="$(grep -E 'Failed: +[0-9]+, Passed: +[0-9]+' "$log" | tail -1 || true)"
    if [ -n "$summary" ]; then
      failed="$(sed -E 's/.*Failed: +([0-9]+).*/\1/' <<<"$summary")"
      passed="$(sed -E 's/.*Passed: +([0-9]+).*/\1/' <<<"$summary")"
      skipped="$(sed -E 's/.*Skipped: +([0-9]+).*/\1/' <<<"$summary")"
      echo "tests: $passed passed, $failed failed, $skipped skipped"
    fi
    rm -f "$log"
    exit "$status"
    ;;
  bench)
    apt_install libopenblas0-pthread
    build
    [ $# -eq 0 ] && set -- --filter '*'
    dotnet run -c Release --no-build --project bench/Engine.Bench -- "$@"
    ;;
  demo)
    # The main job: synthetic world -> pretrain a tiny Llama (cached in demo-output/) -> fine-tune with each method -> table.
    build
    dotnet run -c Release --no-build --project src/Cli -- demo "$@"
    ;;
  *)
    echo "usage: ./build.sh [build|test|bench|demo]" >&2
    exit 2
    ;;
esac
