#!/usr/bin/env bash
# Installs the system packages Harbormaster's tests use, when they are missing.
# Network-namespace tests need iproute2 (`ip`) and nftables (`nft`); the
# browser test (crates/cli/tests/browser.rs) also needs Debian's Chromium
# (/usr/bin/chromium), Node.js with npm, and playwright-core from
# crates/cli/tests/browser/package-lock.json; the XML test uses nmap's ndiff; the reverse-proxy
# test (crates/cli/tests/proxy.rs) runs Debian's nginx. These tests run only as root and
# say they were skipped otherwise, so without root this script just reports
# what is missing.
set -euo pipefail

browser_dir="$(cd "$(dirname "$0")/.." && pwd)/crates/cli/tests/browser"

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
# ethtool turns veth offloads off for the emulated paths (crates/testnet/src/path.rs).
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# nmap's ndiff, to check that our XML output is readable by nmap tooling.
command -v ndiff >/dev/null 2>&1 || need+=(ndiff)
# Debian's /etc/services, compared with the knowledge base (crates/knowledge/tests/debian_services.rs).
[ -f /etc/services ] || need+=(netbase)
# nginx, the reverse proxy in front of `serve` in crates/cli/tests/proxy.rs.
[ -x /usr/sbin/nginx ] || need+=(nginx)
# UDP reflectors for crates/probe/tests/udp_daemons.rs, each run in the target
# namespace with a config of the test's own: dnsmasq (a recursing and a refusing
# resolver, and the authority behind them), chrony (NTP server), snmpd
# (`public` community) and memcached (UDP on 11211).
[ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq)
[ -x /usr/sbin/chronyd ] || need+=(chrony)
[ -x /usr/sbin/snmpd ] || need+=(snmpd)
[ -x /usr/bin/memcached ] || need+=(memcached)
# miniupnpd answers SSDP M-SEARCH; avahi-daemon answers mDNS (same test).
[ -x /usr/sbin/miniupnpd ] || need+=(miniupnpd)
[ -x /usr/sbin/avahi-daemon ] || need+=(avahi-daemon)
# libcoap's example coap-server answers CoAP (port 5683) in the same test.
[ -x /usr/bin/coap-server-notls ] || need+=(libcoap3-bin)
# rpcbind answers the portmapper (port 111) in the same test.
[ -x /usr/sbin/rpcbind ] || need+=(rpcbind)
# tftpd-hpa answers TFTP (port 69) in the same test.
[ -x /usr/sbin/in.tftpd ] || need+=(tftpd-hpa)
# OpenVPN (port 1194) with a throwaway certificate made by the openssl CLI.
[ -x /usr/sbin/openvpn ] || need+=(openvpn)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# Kamailio answers SIP OPTIONS (port 5060) in the same test.
[ -x /usr/sbin/kamailio ] || need+=(kamailio)
# OpenIPMI's BMC simulator answers IPMI over RMCP (port 623) in the same test.
[ -x /usr/bin/ipmi_sim ] || need+=(openipmi)

# playwright-core is (re)installed from the lock file when it is missing or the
# lock file changed since the last install (npm ci writes node_modules/.package-lock.json).
npm_ci=0
if [ ! -f "$browser_dir/node_modules/playwright-core/package.json" ] ||
  [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules/.package-lock.json" ]; then
  npm_ci=1
fi

if [ "$(id -u)" -ne 0 ]; then
  missing=("${need[@]}")
  [ -x /var/lib/harbormaster/ntpsec/usr/sbin/ntpd ] || missing+=("ntpsec (unpacked)")
  [ "$npm_ci" -eq 0 ] || missing+=("crates/cli/tests/browser/node_modules")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: missing ${missing[*]} (not root, not installing; namespace tests will be skipped)" >&2
  fi
  exit 0
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Packages with a service (nginx) must not start it on the host: the tests run
  # their own instances in namespaces. policy-rc.d exit 101 = "do not start".
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$made_policy" -eq 0 ] || rm -f /usr/sbin/policy-rc.d
fi
# ntpsec's ntpd, for the NTP mode-6 test: Debian's ntpsec conflicts with chrony
# (both provide time-daemon), so its package is unpacked, not installed, into
# $ntpsec_dir; the test runs that ntpd without CAP_SYS_TIME (it cannot touch the
# clock). Its libraries (libbsd0, libcap2, libssl3) come with the base system.
ntpsec_dir=/var/lib/harbormaster/ntpsec
if [ ! -x "$ntpsec_dir/usr/sbin/ntpd" ]; then
  echo "deps: unpacking ntpsec into $ntpsec_dir" >&2
  tmp="$(mktemp -d)"
  chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq ntpsec 2>/dev/null || { apt-get update -qq && apt-get download -qq ntpsec; })
  mkdir -p "$ntpsec_dir"
  dpkg-deb -x "$tmp"/ntpsec_*.deb "$ntpsec_dir"
  rm -rf "$tmp"
fi
if [ "$npm_ci" -eq 1 ]; then
  echo "deps: installing playwright-core (npm ci in crates/cli/tests/browser)" >&2
  (cd "$browser_dir" && npm ci --no-audit --no-fund)
fi
