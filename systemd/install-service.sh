#!/bin/sh
# Installs vggvoxd's units for the checkout at PREFIX (`make install-service` runs it):
#   install-service.sh PREFIX            the group, the units, the config
#   install-service.sh --check PREFIX PYTHON
#                                        only whether the service can see them
# The units are sandboxed with ProtectHome=yes: /home, /root and /run/user do not
# exist for them. A checkout there, or a virtual environment whose interpreter
# lives there (pyenv's is under ~/.pyenv), would make every start fail with
# status 203/EXEC, so both are refused here, before anything is written.
set -eu

refuse() {
    echo "install-service: $*" >&2
    exit 2
}

# Whether a path lies where ProtectHome=yes hides it from the service.
hidden() {
    case "$1/" in
        /home/* | /root/* | /run/user/*) return 0 ;;
    esac
    return 1
}

# The interpreter's real file and its standard library, each outside the homes.
check_python() {
    where=$("$1" -c 'import os, sys; print(os.path.realpath(sys.executable)); print(os.path.realpath(sys.base_prefix))') ||
        refuse "cannot run the interpreter $1"
    for path in $where; do
        if hidden "$path"; then
            refuse "the interpreter $1 lives in $path, which the service cannot see (ProtectHome=yes hides /home, /root and /run/user); build the venv with a system Python: rm -rf .venv && make install-service PYTHON=/usr/bin/python3"
        fi
    done
}

check_prefix() {
    prefix=$(realpath -m "$1")
    if hidden "$prefix"; then
        refuse "$prefix is under /home, /root or /run/user, which the service cannot see (ProtectHome=yes); clone vggvox to /opt/vggvox and install from there"
    fi
}

if [ "${1:-}" = "--check" ]; then
    [ $# -eq 3 ] || refuse "usage: install-service.sh --check PREFIX PYTHON"
    check_prefix "$2"
    check_python "$(command -v "$3" || echo "$3")"
    exit 0
fi
[ $# -eq 1 ] || refuse "usage: install-service.sh PREFIX"
check_prefix "$1"
check_python "$prefix/.venv/bin/python"
[ "$(id -u)" = 0 ] || refuse "run it as root (sudo make install-service)"

here=$(dirname "$0")
install -D -m 0644 "$here/vggvox.sysusers" /etc/sysusers.d/vggvox.conf
systemd-sysusers /etc/sysusers.d/vggvox.conf
for unit in vggvoxd vggvox-mqtt vggvox-web vggvox-bridge@; do
    sed "s|/opt/vggvox|$prefix|g" "$here/$unit.service" > "/etc/systemd/system/$unit.service"
done
install -d /etc/vggvox
[ -f /etc/vggvox/vggvoxd.yaml ] || install -m 0644 "$here/../config/vggvoxd.yaml" /etc/vggvox/vggvoxd.yaml
systemctl daemon-reload
echo "now: systemctl enable --now vggvoxd; journalctl -u vggvoxd -f"
echo "MQTT bridge (Home Assistant): write /etc/vggvox/mqtt.env (see systemd/vggvox-mqtt.service),"
echo "  then systemctl enable --now vggvox-mqtt; web page: /etc/vggvox/web.env, vggvox-web;"
echo "  any other bridge, e.g. webhook: /etc/vggvox/bridge-webhook.env, vggvox-bridge@webhook"
echo "let a user use vggvox-client: usermod -aG vggvox USER (then log in again)"
