#!/usr/bin/env bash
# Builds the Debian package from target/release/rowhook, installs it on this
# machine, checks what an operator relies on, then removes and purges it.
# Needs root (or sudo) and cargo-deb (installed here when missing).
# Usage: scripts/deb-check.sh        (after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
fail() { echo "deb-check: $*" >&2; exit 1; }

command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
test -x target/release/rowhook || fail "build first: cargo build --release"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb="target/debian/rowhook_${version}_amd64.deb"
rm -f "$deb"
cargo deb --no-build --output "$deb"
test -f "$deb" || fail "no $deb"
dpkg-deb --info "$deb" | sed -n '1,40p'
dpkg-deb --contents "$deb"

as_root dpkg -i "$deb"
/usr/bin/rowhook version
# The shipped example config validates offline, as the unit's ExecStartPre does.
as_root /usr/bin/rowhook check --offline --config /etc/rowhook/config.yaml
getent passwd rowhook >/dev/null || fail "no rowhook user"
test "$(stat -c %U:%G /var/lib/rowhook)" = rowhook:rowhook || fail "/var/lib/rowhook not owned by rowhook"
test "$(stat -c %a:%G /etc/rowhook/config.yaml)" = 640:rowhook || fail "config.yaml is not 0640 root:rowhook"
unit=$(dpkg -L rowhook | grep '/systemd/system/rowhook.service$') || fail "no unit installed"
grep -q '^ExecStart=/usr/bin/rowhook run' "$unit" || fail "the unit does not start /usr/bin/rowhook"
dpkg-query -W -f='${Conffiles}\n' rowhook | grep -q '/etc/rowhook/config.yaml' || fail "config.yaml is not a conffile"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$unit" || echo "deb-check: systemd-analyze verify complained (see above)"
fi

# The service as systemd would start it (this CI machine has no systemd as
# pid 1): the installed binary as the rowhook user, the installed config, state
# in /var/lib/rowhook. No database listens here, so it says DOWN — but its
# admin server and console answer, and it runs with the package's permissions.
port=18473
overlay=$(mktemp)
printf 'server: {port: %s}\n' "$port" > "$overlay"
chmod 0644 "$overlay"
http_get() {  # path -> body (HTTP/1.0 over bash's /dev/tcp: no curl needed)
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: x\r\n\r\n' "$1" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}
as_root runuser -u rowhook -- env ROWHOOK_STATE_DIR=/var/lib/rowhook \
  /usr/bin/rowhook run --config /etc/rowhook/config.yaml --config "$overlay" > target/deb-run.log 2>&1 &
runner=$!
for _ in $(seq 1 100); do
  http_get /health 2>/dev/null | grep -q '"status"' && break
  sleep 0.1
done
http_get /health | grep -q '"status"' || { cat target/deb-run.log; fail "the installed service's admin server does not answer"; }
http_get / | grep -q '<title>rowhook</title>' || fail "no console at /"
as_root pkill -TERM -u rowhook -f '/usr/bin/rowhook run' || true
wait "$runner" || true
rm -f "$overlay"
grep -q 'admin server listening' target/deb-run.log || { cat target/deb-run.log; fail "no admin server in the log"; }

# An operator's edit survives removal; purge takes config and state.
echo "# edited" | as_root tee -a /etc/rowhook/config.yaml >/dev/null
as_root dpkg -r rowhook
test ! -e /usr/bin/rowhook || fail "dpkg -r left /usr/bin/rowhook"
grep -q '^# edited' /etc/rowhook/config.yaml || fail "dpkg -r lost the edited config"
as_root dpkg -P rowhook
test ! -e /etc/rowhook/config.yaml || fail "dpkg -P left /etc/rowhook/config.yaml"
test ! -e /var/lib/rowhook || fail "dpkg -P left /var/lib/rowhook"
echo "deb-check: $deb installs, checks, removes and purges cleanly"
