#!/usr/bin/env bash
# Regenerate tests/workflows/editor_fixtures with the real editor (see README.md beside this file).
# Needs: chromium on PATH (Debian: apt-get install -y chromium), the repo's .venv (aiohttp).
set -euo pipefail
FRONTEND_VERSION="${FRONTEND_VERSION:-1.27.10}"    # the pin of ComfyUI 0.3.64's requirements.txt
TEMPLATES_VERSION="${TEMPLATES_VERSION:-0.1.95}"   # likewise
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
out="${1:-$repo/tests/workflows/editor_fixtures}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps -d "$work/wheels" \
  "comfyui-frontend-package==$FRONTEND_VERSION" "comfyui-workflow-templates==$TEMPLATES_VERSION"
for wheel in "$work"/wheels/*.whl; do "$python" -m zipfile -e "$wheel" "$work/pkgs"; done
"$python" "$here/oracle.py" \
  --frontend "$work/pkgs/comfyui_frontend_package/static" \
  --templates "$work/pkgs/comfyui_workflow_templates/templates" \
  --out "$out"
# Hand-made edge cases (cases/*.json beside this script): the editor's word on them too.
"$python" "$here/oracle.py" --no-tables \
  --frontend "$work/pkgs/comfyui_frontend_package/static" \
  --templates "$here/cases" \
  --out "$out/cases"
