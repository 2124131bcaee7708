#!/bin/sh
# Debian packages Knitfab needs: bubblewrap and util-linux (the local runner's sandbox), graphviz
# (lineage pictures, the console's graphs) and python3-venv (to create .venv); for the tests,
# chromium and chromium-driver (the console), the real registry clients skopeo and podman (with
# runc) and busybox-static (the test images' userland); debootstrap for `make demo-images`; wrk
# (the HTTP load of bench/api_bench.py).
# Installs what is missing when run as root; otherwise says what to install.
set -eu
PYTHON=${PYTHON:-python3}
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
# setpriv, prlimit, unshare: the local runner's unprivileged run user and rlimits
for tool in setpriv prlimit unshare; do
    command -v "$tool" >/dev/null 2>&1 || { missing="$missing util-linux"; break; }
done
command -v dot >/dev/null 2>&1 || missing="$missing graphviz"
"$PYTHON" -c 'import ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
command -v make >/dev/null 2>&1 || missing="$missing make"
# The console's tests drive a headless Chromium.
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
command -v skopeo >/dev/null 2>&1 || missing="$missing skopeo"
command -v podman >/dev/null 2>&1 || missing="$missing podman"
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing="$missing runc"
[ -x /bin/busybox ] || missing="$missing busybox-static"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "Knitfab needs these Debian packages: sudo apt-get install$missing" >&2
    exit 1
fi
echo "installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends $missing >/dev/null
}
