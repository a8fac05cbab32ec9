# Sourced by scripts/test.sh and .ci/test-python.sh: make a test virtualenv.
#
#   make_test_venv PYTHON VENV [REQUIREMENT...]
#
# VENV gets kannon[test] (editable), the example third-party plugin and any extra REQUIREMENTs. With uv (UV, else
# `uv` on PATH) the install takes ~10 s instead of pip's ~130 s, which is 8 minutes of a CI run that makes four of
# them (issue 19); without it, pip does the same. VENV is made by PYTHON's own venv module either way, so it has
# pip for a developer's later use.

make_test_venv() {
    local python=$1 venv=$2 uv=${UV:-$(command -v uv || true)}
    shift 2
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    if [ -n "$uv" ]; then
        # --compile-bytecode, as pip does: the Docker tests mount the venv read-only, and without its .pyc files
        # every container compiles gokart and pandas afresh (minutes of CPU, and ~100 MB more memory per import).
        "$uv" pip install -q --compile-bytecode --python "$venv/bin/python" -e ".[test]" -e tests/plugin_example "$@"
    else
        "$venv/bin/python" -m pip install -q --upgrade pip
        "$venv/bin/python" -m pip install -q -e ".[test]" -e tests/plugin_example "$@"
    fi
}

# uv_for VENV: install uv into VENV with its pip (a few seconds: one wheel) and print its path; prints nothing when
# that fails, and make_test_venv then uses pip.
uv_for() {
    "$1/bin/python" -m pip install -q uv >&2 && echo "$1/bin/uv" || true
}
