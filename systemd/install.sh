#!/usr/bin/env bash
# Installs ticketd as a systemd service: the binary, the units and (only if absent) the env file,
# then reloads systemd. Starts nothing: see docs/operations.md for systemctl enable --now.
#
# Usage: systemd/install.sh [--dry-run] [--prefix /usr/local] [--bin PATH]
#   --dry-run   print each step and change nothing
#   --prefix    where bin/ticketd goes (default /usr/local; the units expect /usr/local/bin)
#   --bin       the binary to install (default target/release/ticketd)
# Environment: DESTDIR is prepended to every installed path (packaging); SYSTEMCTL overrides
# the systemctl command.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
dry_run=0
prefix=/usr/local
bin="$repo/target/release/ticketd"
destdir="${DESTDIR:-}"
systemctl="${SYSTEMCTL:-systemctl}"

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --prefix)
      [[ $# -ge 2 ]] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
      prefix="$2"
      shift
      ;;
    --bin)
      [[ $# -ge 2 ]] || { echo "install.sh: --bin needs a path" >&2; exit 2; }
      bin="$2"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Runs a step, or in a dry run only says what it would do.
step() {
  echo "+ $*"
  if ((dry_run == 0)); then
    "$@"
  fi
}

if [[ ! -x "$bin" ]]; then
  if ((dry_run)); then
    echo "note: $bin is not built yet (cargo build --release -p ticketd); a real run would stop here"
  else
    echo "install.sh: $bin is not an executable; build it: cargo build --release -p ticketd" >&2
    exit 1
  fi
fi
if ((dry_run == 0)) && [[ -z "$destdir" ]] && [[ $EUID -ne 0 ]]; then
  echo "install.sh: writing to /etc and $prefix needs root: sudo $0 $*" >&2
  exit 1
fi

unit_dir="$destdir/etc/systemd/system"
etc_dir="$destdir/etc/ticketd"
bin_dir="$destdir$prefix/bin"

if ((dry_run)); then
  echo "# installing ticketd (dry run: nothing is changed)"
else
  echo "# installing ticketd"
fi
step install -d -m 0755 "$bin_dir"
step install -m 0755 "$bin" "$bin_dir/ticketd"

step install -d -m 0755 "$unit_dir"
for unit in ticketd.service ticketd@.service; do
  if [[ "$prefix" == /usr/local ]]; then
    step install -m 0644 "$here/$unit" "$unit_dir/$unit"
  else
    # The units name /usr/local/bin/ticketd; point them at the binary where it really goes.
    echo "+ sed 's|/usr/local/bin/ticketd|$prefix/bin/ticketd|' $here/$unit > $unit_dir/$unit"
    if ((dry_run == 0)); then
      sed "s|/usr/local/bin/ticketd|$prefix/bin/ticketd|" "$here/$unit" >"$unit_dir/$unit"
      chmod 0644 "$unit_dir/$unit"
    fi
  fi
done

step install -d -m 0755 "$etc_dir"
if [[ -e "$etc_dir/ticketd.env" ]]; then
  echo "# keeping $etc_dir/ticketd.env (never overwritten); the current example is $etc_dir/ticketd.env.example"
else
  step install -m 0644 "$here/ticketd.env.example" "$etc_dir/ticketd.env"
fi
step install -m 0644 "$here/ticketd.env.example" "$etc_dir/ticketd.env.example"

if [[ -z "$destdir" ]]; then
  step "$systemctl" daemon-reload
else
  echo "# DESTDIR is set: skipping systemctl daemon-reload"
fi
echo "# done. Next: systemctl enable --now ticketd (or ticketd@vacancy ticketd@ticket)"
