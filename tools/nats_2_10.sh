#!/usr/bin/env bash
# Fetches Debian trixie's nats-server 2.10 binary into .tools/nats-2.10/ (for the tests of a
# clustered NATS: compare-and-set is unsafe on a clustered 2.9.x before 2.9.21, see DESIGN.md).
# Uses apt with a temporary source list for trixie on the archive this machine's apt already uses;
# installs nothing system-wide. Prints the binary's path; exits non-zero when it cannot get it.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
dest="$root/.tools/nats-2.10"
bin="$dest/usr/sbin/nats-server"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q 'v2\.1[0-9]'; then echo "$bin"; exit 0; fi
archive=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
  2>/dev/null | sed -nE 's/^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)(https?:[^[:space:]]+).*/\3/p' \
  | grep -v security | sed -n 1p || true)
archive=${archive:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/etc"
echo "deb [trusted=yes] $archive trixie main" > "$work/etc/trixie.list"
opts=(-o "Dir::Etc::SourceList=$work/etc/trixie.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
  -o "APT::Get::List-Cleanup=0" -o "Acquire::Check-Valid-Until=false" -qq)
apt-get "${opts[@]}" update >/dev/null 2>&1
(cd "$work" && apt-get "${opts[@]}" download nats-server >/dev/null 2>&1)
deb=$(ls "$work"/nats-server_*.deb | head -1)
mkdir -p "$dest"
dpkg-deb -x "$deb" "$dest"
"$bin" --version >/dev/null
echo "$bin"
