#!/usr/bin/env bash
# The Debian package under a real systemd, every promise of issue 14 checked at its step:
#   build     deploy/build-deb.sh twice from the dev build the tests already made (a release
#             build would add minutes and test nothing more here): version 0.1.0-1 and a
#             higher 0.1.0-1+ci1 for the upgrade; lintian: no error, and each warning listed
#             with its reason in deploy/README.md.
#   install   `apt install ./tls-echo_*.deb` in Debian 12 booted in systemd-nspawn (the rootfs
#             that 40-nspawn.sh caches): the message says where the certificate and key go;
#             no unit failed, none started or enabled; binary, man page, completions, docs and
#             the conffile in place; no key material in the package.
#   start     certificate and key where the message says, its `systemctl enable --now`, echo
#             from the host with `openssl s_client -verify_return_error`; reload; echo.
#   upgrade   to the higher version: the running service is restarted (new MainPID), stays
#             enabled, keeps the edited conffile, echoes.
#   remove    service stopped, nothing listening, configuration kept.
#   purge     the conffile and the package's systemd state gone.
# Closing line: "deb: N passed, N failed"; exit 1 on a failed step, 2 on a setup problem.
set -uo pipefail
cd "$(dirname "$0")/../.."
TOP=$PWD
export PATH="$TOP/.venv/bin:$PATH"
CHECK=deb
STEP_TIMEOUT=60          # seconds any one apt/systemctl/openssl step may take
W=$(mktemp -d)
source .ci/checks/lib/nspawn.bash
trap 'nspawn_cleanup; rm -rf "$W"' EXIT
START=$(now)
nspawn_rootfs lintian cargo-deb
check() { local what=$1; shift; if "$@"; then ok "$what"; else ko "$what"; fi; }

# --- build
V1=0.1.0-1 V2=0.1.0-1+ci1
t=$(now)
timeout 1200 bash deploy/build-deb.sh --profile dev --fast -o "$W/v1.deb" >"$W/build1.log" 2>&1 \
  || { tail -20 "$W/build1.log"; die "deploy/build-deb.sh failed"; }
timeout 600 bash deploy/build-deb.sh --profile dev --fast --deb-version "$V2" -o "$W/v2.deb" >"$W/build2.log" 2>&1 \
  || { tail -20 "$W/build2.log"; die "deploy/build-deb.sh --deb-version failed"; }
ok "deploy/build-deb.sh: $V1 and $V2 ($(since "$t"))"
TARGET=$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/debug/tls-echo

t=$(now)
lintian --fail-on none "$W/v1.deb" 2>&1 | grep -v 'running with root privileges' >"$W/lintian.txt"
errors=$(grep -c '^E: ' "$W/lintian.txt"); warnings=$(grep '^W: ' "$W/lintian.txt" | awk '{print $3}' | sort -u)
sed 's/^/      /' "$W/lintian.txt"
[ "$errors" = 0 ] && ok "lintian: no error ($(since "$t"))" || ko "lintian: $errors error(s)"
for tag in $warnings; do
  grep -q -- "\`$tag\`" deploy/README.md && ok "lintian warning $tag: reason given in deploy/README.md" \
    || ko "lintian warning $tag is not explained in deploy/README.md"
done
listing=$(dpkg-deb -c "$W/v1.deb")
! grep -qE '\.(pem|key|crt|p12)$' <<<"$listing" && ok "no key material or certificate in the package" \
  || ko "the package holds key material: $(grep -E '\.(pem|key|crt|p12)$' <<<"$listing")"

PORT=$(free_port)
"$BIN" gen-certs --out "$W/pki" >/dev/null || die "gen-certs failed"

# --- boot
nspawn_boot --bind-ro="$W:/opt/deb"
APT() { IN env DEBIAN_FRONTEND=noninteractive apt "$@" -y -q -o Dpkg::Use-Pty=0; }

UNITS="tls-echo.service tls-echo-activated.service tls-echo-activated.socket tls-echo-activated-metrics.socket"
show() { IN systemctl show -p "$2" --value "$1"; }
# echo_ok: one line through openssl s_client, verified against the test CA.
echo_ok() {
  s_client_echo "$PORT" "$W/pki/ca.pem" "hello through the package" || { tr '\n' ' ' <"$W/s_client.err"; return 1; }
}
nothing_listens() { ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=2)" 2>/dev/null; }
no_unit_failed() { [ -z "$(IN systemctl list-units --failed --plain --no-legend 'tls-echo*')" ]; }
none_active_or_enabled() {
  local u
  for u in $UNITS; do
    [ "$(show "$u" ActiveState)" = inactive ] || { echo "      $u: $(show "$u" ActiveState)"; return 1; }
    [ "$(IN systemctl is-enabled "$u" 2>/dev/null)" = disabled ] || { echo "      $u: $(IN systemctl is-enabled "$u")"; return 1; }
  done
}
installed_version() { IN dpkg-query -W -f '${Version} ${db:Status-Abbrev}' tls-echo 2>/dev/null; }

# --- install
echo "--- install"
t=$(now)
if APT install /opt/deb/v1.deb >"$W/install.log" 2>&1; then ok "apt install ./tls-echo_${V1}_amd64.deb ($(since "$t"))"
else ko "apt install"; tail -20 "$W/install.log"; fi
sed -n '/installed but not started/,/Guide:/p' "$W/install.log" | sed 's/^/      /'
grep -q 'install -m 600 .* /etc/tls-echo/cert.pem' "$W/install.log" && grep -q '/etc/tls-echo/key.pem' "$W/install.log" \
  && grep -q 'systemctl enable --now tls-echo.service' "$W/install.log" \
  && ok "post-install message: where the certificate and key go, the enable --now command" \
  || ko "post-install message missing or incomplete"
check "no tls-echo unit failed after installing without a certificate" no_unit_failed
check "no unit started or enabled before the certificate is in place" none_active_or_enabled
missing=()
for f in /usr/bin/tls-echo /usr/share/man/man1/tls-echo.1.gz /usr/share/man/man1/tls-echo-check.1.gz \
         /usr/share/bash-completion/completions/tls-echo /usr/share/zsh/vendor-completions/_tls-echo \
         /usr/share/fish/vendor_completions.d/tls-echo.fish /usr/share/doc/tls-echo/README.md \
         /usr/share/doc/tls-echo/SECURITY.md /usr/share/doc/tls-echo/DEPLOY.md /etc/tls-echo/tls-echo.toml \
         /usr/lib/systemd/system/tls-echo.service /usr/lib/systemd/system/tls-echo-activated.socket; do
  IN test -s "$f" || missing+=("$f")
done
[ ${#missing[@]} = 0 ] && ok "installed: binary, man pages, completions (bash, zsh, fish), docs, units, config" \
  || ko "installed: missing ${missing[*]}"
IN dpkg-query -W -f '${Conffiles}' tls-echo | grep -q '/etc/tls-echo/tls-echo.toml' \
  && ok "/etc/tls-echo/tls-echo.toml is a conffile" || ko "/etc/tls-echo/tls-echo.toml is not a conffile"
IN zcat /usr/share/man/man1/tls-echo.1.gz | grep -q 'max\\-line' \
  && ok "man page documents --max-line" || ko "man page"

# --- start, as the message says
echo "--- start"
IN install -m 600 /opt/deb/pki/server.pem /etc/tls-echo/cert.pem
IN install -m 600 /opt/deb/pki/server.key /etc/tls-echo/key.pem
# The test's port (the host network is shared): edit the conffile as an operator would.
IN sed -i "s#^listen = .*#listen = [\"127.0.0.1:$PORT\"]#" /etc/tls-echo/tls-echo.toml
IN mkdir -p /etc/systemd/system/tls-echo.service.d
printf '[Service]\nSocketBindAllow=tcp:%s\n' "$PORT" | IN tee /etc/systemd/system/tls-echo.service.d/port.conf >/dev/null
t=$(now)
if IN systemctl enable --now tls-echo.service >/dev/null 2>&1; then ok "systemctl enable --now tls-echo.service ($(since "$t"))"
else ko "systemctl enable --now tls-echo.service"; IN journalctl -u tls-echo --no-pager -n 20; fi
[ "$(show tls-echo.service ActiveState)" = active ] && ok "tls-echo.service active (READY=1 after the self-test)" \
  || ko "tls-echo.service is $(show tls-echo.service ActiveState)"
check "echo through the packaged service (openssl s_client -verify_return_error)" echo_ok
t=$(now)
IN systemctl reload tls-echo.service && ok "systemctl reload ($(since "$t"))" || ko "systemctl reload"
status=""
for _ in $(seq 40); do status=$(show tls-echo.service StatusText); case "$status" in *reload*) break;; esac; sleep 0.25; done
case "$status" in *"reload applied"*) ok "reload applied: status '$status'";; *) ko "status after reload: '$status'";; esac
check "echo after reload" echo_ok

# --- upgrade
echo "--- upgrade"
pid1=$(show tls-echo.service MainPID)
t=$(now)
if APT install /opt/deb/v2.deb >"$W/upgrade.log" 2>&1; then ok "apt install ./tls-echo_${V2}_amd64.deb ($(since "$t"))"
else ko "upgrade"; tail -20 "$W/upgrade.log"; fi
[ "$(installed_version)" = "$V2 ii " ] && ok "dpkg: $V2 installed" || ko "dpkg says '$(installed_version)'"
pid2=$(show tls-echo.service MainPID)
[ "$(show tls-echo.service ActiveState)" = active ] && [ "$pid2" != "$pid1" ] && [ "$pid2" != 0 ] \
  && ok "upgrade restarted the running service (MainPID $pid1 -> $pid2)" \
  || ko "after the upgrade: $(show tls-echo.service ActiveState), MainPID $pid1 -> $pid2"
[ "$(IN systemctl is-enabled tls-echo.service)" = enabled ] && ok "still enabled after the upgrade" || ko "not enabled after the upgrade"
IN grep -q "127.0.0.1:$PORT" /etc/tls-echo/tls-echo.toml && ok "the edited conffile survived the upgrade" || ko "conffile lost its edit"
check "echo after the upgrade" echo_ok

# --- remove
echo "--- remove"
t=$(now)
if APT remove tls-echo >"$W/remove.log" 2>&1; then ok "apt remove tls-echo ($(since "$t"))"
else ko "apt remove"; tail -20 "$W/remove.log"; fi
[ "$(show tls-echo.service ActiveState)" = inactive ] && [ -z "$(IN pgrep -x tls-echo)" ] \
  && ok "apt remove stopped the service (no tls-echo process)" || ko "still running after apt remove"
check "nothing listens on the port any more" nothing_listens
IN test -e /etc/tls-echo/tls-echo.toml && ok "apt remove keeps the configuration" || ko "apt remove deleted the configuration"

# --- purge
echo "--- purge"
t=$(now)
if APT purge tls-echo >"$W/purge.log" 2>&1; then ok "apt purge tls-echo ($(since "$t"))"
else ko "apt purge"; tail -20 "$W/purge.log"; fi
! IN test -e /etc/tls-echo/tls-echo.toml && ok "apt purge removed /etc/tls-echo/tls-echo.toml" \
  || ko "/etc/tls-echo/tls-echo.toml still there after purge"
left=$(IN sh -c 'ls /etc/tls-echo 2>/dev/null | tr "\n" " "')
[ "$left" = "cert.pem key.pem " ] && grep -q 'still holds files the package did not install' "$W/purge.log" && ok "purge left only the administrator's cert.pem and key.pem (and said so)" \
  || ko "/etc/tls-echo after purge: '$left'"
state_left=$(IN sh -c 'grep -rl tls-echo /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked 2>/dev/null; find /etc/systemd/system -name "tls-echo*" ! -path "*tls-echo.service.d*" 2>/dev/null')
[ -z "$state_left" ] && ok "purge removed the package's systemd state (enablement, masks)" \
  || ko "systemd state left after purge: $state_left"
[ -z "$(installed_version | grep -v '^ *$' | grep -v 'un ')" ] && ok "dpkg: tls-echo not installed" \
  || ko "dpkg after purge: '$(installed_version)'"

echo "deb: total $(since "$START")"
echo "deb: $pass passed, $fail failed"
[ $fail = 0 ]
