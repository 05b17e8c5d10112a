#!/usr/bin/env bash
# Create (or reuse) the BigQuery emulator's own virtualenv: bqemulator 1.4.0 pins duckdb and
# sqlglot versions that do not belong in the project's environment.
#
#   scripts/bq-emulator-venv.sh [VENV_DIR]     (default: .venv-bqemulator beside this folder)
#
# Idempotent: a stamp holding the requirements' hash skips the work when nothing changed.
# DuckDB's extensions come from PyPI wheels (duckdb-extension-*) and are installed into
# VENV_DIR/duckdb-home/.duckdb, so the emulator must run with HOME=VENV_DIR/duckdb-home
# (tests/support/gcp_emulators.py does); DuckDB never downloads anything.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/../.venv-bqemulator}"
python="${PYTHON:-python3}"
requirements="$here/bq-emulator-requirements.txt"
stamp="$venv/.installed"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/bqemulator" ]]; then
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
mkdir -p "$venv/duckdb-home"
HOME="$venv/duckdb-home" "$venv/bin/python" - <<'PY'
import glob, os, sys
import duckdb
con = duckdb.connect()
files = sorted(glob.glob(os.path.join(sys.prefix, "lib", "python*", "site-packages",
                                      "duckdb_extension_*", "extensions", "v*", "*.duckdb_extension")))
if not files:
    sys.exit("no duckdb-extension-* wheel found in the emulator's venv")
for path in files:
    con.execute("INSTALL ?".replace("?", "'" + path.replace("'", "''") + "'"))
fresh = duckdb.connect()
fresh.execute("LOAD spatial")  # bqemulator refuses to start without it
print("duckdb extensions ready:", ", ".join(os.path.basename(f).split(".")[0] for f in files))
PY
echo "$want" > "$stamp"
