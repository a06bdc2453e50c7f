#!/usr/bin/env bash
# The test command: set up .venv from scratch if needed, lint, and run the whole test suite
# (slow tests included). Extra arguments go to pytest, e.g. `bash tools/test.sh -m "not slow"`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash tools/bootstrap.sh
echo "test: ruff"
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check . >/dev/null || {
  .venv/bin/python -m ruff format --diff . | head -40
  echo "test: ruff format would change files (run: .venv/bin/ruff format .)"
  exit 1
}
echo "test: shellcheck"
find recipes tools -name '*.sh' -exec .venv/bin/shellcheck {} +
echo "test: pytest"
exec .venv/bin/python -m pytest "$@"
