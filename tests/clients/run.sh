#!/usr/bin/env bash
# The cross-library suite: python-telegram-bot, aiogram, grammY and telegraf bots, each in long
# polling and webhook mode, against a telehook-emulator on 127.0.0.1 (see README.md).
#
# Installs what it needs once (a venv from python/requirements.txt, `npm ci` from
# node/package-lock.json; both skipped while unchanged), builds the emulator, runs every
# (library x mode) combination and prints the matrix. Exits non-zero if any combination fails.
#
# Environment: CLIENTS_VENV (venv path, default tests/clients/.venv), CLIENTS_JOBS (combinations
# at once, default 4), CLIENTS_CARGO_FLAGS (e.g. --locked), CLIENTS_HTTPS (both: each webhook
# mode over http and over https, the default; only; off). Arguments go to driver.py, e.g.
# `--only aiogram,grammy:webhook`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

venv="${CLIENTS_VENV:-$here/.venv}"
want="$(sha256sum python/requirements.txt | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "== clients: python venv ($venv)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r python/requirements.txt
  echo "$want" > "$venv/.requirements.sha256"
fi

want="$(sha256sum node/package-lock.json | cut -d' ' -f1)"
if [ "$(cat node/node_modules/.lock.sha256 2>/dev/null)" != "$want" ]; then
  echo "== clients: npm ci"
  (cd node && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" > node/node_modules/.lock.sha256
fi

echo "== clients: building telehook-emulator"
# shellcheck disable=SC2086 # CLIENTS_CARGO_FLAGS is a list of flags
(cd "$root" && cargo build -p telehook-emulator --features cli --bin telehook-emulator ${CLIENTS_CARGO_FLAGS:-})
emulator="${CARGO_TARGET_DIR:-$root/target}/debug/telehook-emulator"

echo "== clients: running the bots"
exec "$venv/bin/python" driver.py --emulator "$emulator" --python "$venv/bin/python" \
  --jobs "${CLIENTS_JOBS:-4}" "$@"
