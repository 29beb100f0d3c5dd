#!/usr/bin/env bash
# Installs what the DaemonSet manifest check (tests/manifest.rs) needs, only when missing:
# `kubernetes-validate` from PyPI, which ships the Kubernetes JSON schemas and validates
# offline, in a virtual environment at install/.venv. Needs python3 with venv (installed
# from Debian's packages when missing).
set -euo pipefail
cd "$(dirname "$0")"
version=1.37.0
venv=.venv
if [ -x "$venv/bin/kubernetes-validate" ] \
    && "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$version"; then
    echo "ci-deps: kubernetes-validate $version present"
    exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "ci-deps: must run as root to install python3-venv" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv
fi
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$version"
echo "ci-deps: installed kubernetes-validate $version in install/$venv"
