#!/usr/bin/env bash
# The Debian packages, as a user gets them: scripts/package builds them from
# a copy of the source tree (under WORK_DIR; the tree itself is untouched),
# they are installed, and then, against /usr alone:
#   (a) the package host (tests/package/host, find_package(iocm), no prefix
#       given), shared and static, built and run;
#   (b) the C++ example host examples/echo.cpp, compiled and linked with
#       pkg-config's iocm flags;
#   (c) the C example host examples/c_host.c, compiled as C11 with warnings
#       as errors and pkg-config's iocm flags, and run;
#   (d) the installed programs answer (iocm-echo --help, iocm-bench --help,
#       iocm-bench topology), and libiocm0 holds the shared library alone.
# Then the packages, and whatever installing them pulled in, are purged.
# Installing needs root: without root or passwordless sudo it is skipped
# (exit 77), as it is where the iocm packages are installed already (it
# would replace and then remove them).
#
#   deb_test.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1
work=$2
packages=(libiocm0 libiocm-dev iocm-tools)

skip() {
  echo "SKIPPED: $*"
  exit 77
}
step() { echo "=== deb_test: $*"; }

if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  skip "installing the .debs needs root or passwordless sudo"
fi
if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
  skip "not a Debian system (no dpkg, apt-get)"
fi
installed() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 ~ /^.i/ {print $2}' | sort; }
already=$(installed | grep -Fx -f <(printf '%s\n' "${packages[@]}") || true)
[ -z "$already" ] || skip "iocm packages are installed already ($(tr '\n' ' ' <<<"$already")); purge them to run this test"

started=$(date +%s)
rm -rf "$work"
mkdir -p "$work"
step "build the packages (scripts/package --no-lintian; log: $work/package.log)"
if ! "$src/scripts/package" --no-lintian --out "$work/deb" >"$work/package.log" 2>&1; then
  tail -n 60 "$work/package.log"
  echo "deb_test: scripts/package failed (the whole log: $work/package.log)"
  exit 1
fi
grep '^package: ' "$work/package.log"

before=$(installed)
cleanup() {
  local status=$?
  step "purge the packages and what they pulled in"
  local new
  new=$(comm -13 <(echo "$before") <(installed) | tr '\n' ' ')
  if [ -n "$new" ]; then
    # shellcheck disable=SC2086
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $new >/dev/null ||
      { echo "deb_test: could not purge: $new" >&2; status=1; }
  fi
  local left
  left=$(installed | grep -Fx -f <(printf '%s\n' "${packages[@]}") || true)
  if [ -n "$left" ]; then
    echo "deb_test: still installed: $left" >&2
    status=1
  fi
  # Any failure is 1: a command's own 77 must not read as a skip.
  if [ "$status" = 0 ]; then echo "deb_test: passed in $(($(date +%s) - started)) s"; else
    echo "deb_test: FAILED in $(($(date +%s) - started)) s"; status=1
  fi
  exit "$status"
}
trap cleanup EXIT

step "install ${packages[*]}"
debs=()
for p in "${packages[@]}"; do debs+=("$work/deb/${p}_"*.deb); done
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${debs[@]}"

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
libdir=/usr/lib/$multiarch

# (a) find_package(iocm) from /usr, no prefix given.
for target in iocm iocm_static; do
  step "(a) tests/package/host against iocm::$target"
  dir=$work/cmake-host-$target
  cmake -S "$src/tests/package/host" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DIOCM_TARGET=iocm::$target
  cmake --build "$dir"
  "$dir/host"
  loaded=$(ldd "$dir/host" | awk '$1 == "libiocm.so.0" {print $3}')
  if [ "$target" = iocm ]; then
    if [ -z "$loaded" ] || [ "$(realpath "$loaded")" != "$(realpath "$libdir/libiocm.so.0")" ]; then
      echo "deb_test: host does not load $libdir/libiocm.so.0:"; ldd "$dir/host"; exit 1
    fi
  elif readelf -d "$dir/host" | grep -q libiocm; then
    echo "deb_test: host was to link libiocm statically"; exit 1
  fi
done

# (b) The C++ example host, with pkg-config's flags.
step "(b) examples/echo.cpp with pkg-config iocm"
mkdir -p "$work/echo"
cp "$src/examples/echo.cpp" "$src/examples/server.h" "$work/echo/"
# shellcheck disable=SC2046
c++ -std=c++20 "$work/echo/echo.cpp" -o "$work/echo/echo" $(pkg-config --cflags --libs iocm)

# (c) The C example host, as C11, warnings as errors.
step "(c) examples/c_host.c with pkg-config iocm"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$src/examples/c_host.c" -o "$work/c-host" \
  $(pkg-config --cflags --libs iocm) -pthread
"$work/c-host"

# (d) The installed programs, and what libiocm0 holds.
step "(d) the installed programs"
/usr/bin/iocm-echo --help >/dev/null
/usr/bin/iocm-plaintext --help >/dev/null
/usr/bin/iocm-topology --help >/dev/null
help=$(/usr/bin/iocm-bench --help)
echo "${help%%$'\n'*}"
/usr/bin/iocm-bench topology
# One cheap benchmark through the installed layout: the script's modules,
# its program, its report.
/usr/bin/iocm-bench queue --quick --no-plots --filter '^queue/single_thread/iocm$' --out "$work/bench" \
  >"$work/bench.log"
tail -n 3 "$work/bench.log"
[ -s "$work/bench/queue.json" ] && [ -s "$work/bench/report.md" ]
[ -x /usr/bin/iocm-c-host ]
step "(d) dpkg -L libiocm0"
files=$(dpkg -L libiocm0 | while read -r f; do
  if [ ! -d "$f" ] && [[ $f != /usr/share/doc/* ]]; then echo "$f"; fi
done | sort)
expected=$(printf '%s\n' "$libdir/libiocm.so.0" "$libdir"/libiocm.so.0.*.* | sort)
if [ "$files" != "$expected" ] || [ "$(echo "$files" | wc -l)" != 2 ]; then
  echo "deb_test: libiocm0 holds:"; echo "$files"; echo "expected:"; echo "$expected"; exit 1
fi
echo "$files"
