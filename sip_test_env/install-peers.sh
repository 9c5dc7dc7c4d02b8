#!/bin/sh
# Install the real SIP peers the tests drive (Debian/Ubuntu packages). Idempotent: does nothing
# when every tool is already there. Needs root (or sudo without a password) to install.
#
#   baresip-core  softphone (agents, customers)     sip-tester  SIPp (load, scripted calls)
#   tshark        capture/decode (dumpcap)          sipsak      OPTIONS pings
#   sipvicious    scanner checks                    espeak-ng   spoken prompts
#   sox           audio conversion                chromium    headless browser (dashboard
#                                                               tests drive it with playwright)
#   flite, festival and its voices festvox-kallpc16k, festvox-kdlpc16k, festvox-ru,
#   festvox-us-slt-hts: the other speech engines of the AMD corpus (bench/amd_corpus.py)
#   iptables, iproute2: the NAT the NAT tests build in network namespaces (ip netns, veth, SNAT)
#   kamailio      a SIP provider (registrar, digest auth, proxy) for the provider-trunk tests
#   rtpengine-daemon  the media relay bench/bench_rtpengine.py measures the engine against
#                 (run userspace-only by the bench; the package's own service is not used)
#   linphone-cli  linphonec, a softphone that presses keys as SIP INFO (DTMF interworking)
#   npm           fetches JsSIP for the browser-phone tests (install-web-phones.sh)
set -eu

PACKAGES="baresip-core sip-tester tshark sipsak sipvicious espeak-ng sox chromium flite festival festvox-kallpc16k festvox-kdlpc16k festvox-ru festvox-us-slt-hts iptables iproute2 kamailio rtpengine-daemon linphone-cli npm"

# package -> a file it installs (a command or a module), to tell what is missing.
probe() {
    case "$1" in
        baresip-core) command -v baresip >/dev/null 2>&1 && [ -e /usr/lib/baresip/modules/ctrl_tcp.so ] ;;
        sip-tester) command -v sipp >/dev/null 2>&1 ;;
        tshark) command -v tshark >/dev/null 2>&1 && command -v dumpcap >/dev/null 2>&1 ;;
        sipsak) command -v sipsak >/dev/null 2>&1 ;;
        sipvicious) command -v sipvicious_svmap >/dev/null 2>&1 || command -v svmap >/dev/null 2>&1 ;;
        espeak-ng) command -v espeak-ng >/dev/null 2>&1 ;;
        sox) command -v sox >/dev/null 2>&1 ;;
        chromium) command -v chromium >/dev/null 2>&1 ;;
        flite) command -v flite >/dev/null 2>&1 ;;
        festival) command -v text2wave >/dev/null 2>&1 ;;
        festvox-kallpc16k) [ -d /usr/share/festival/voices/english/kal_diphone ] ;;
        festvox-kdlpc16k) [ -d /usr/share/festival/voices/english/ked_diphone ] ;;
        festvox-ru) [ -d /usr/share/festival/voices/russian/msu_ru_nsh_clunits ] ;;
        festvox-us-slt-hts) [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] ;;
        iptables) command -v iptables >/dev/null 2>&1 ;;
        iproute2) command -v ip >/dev/null 2>&1 ;;
        kamailio) command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] ;;
        rtpengine-daemon) command -v rtpengine >/dev/null 2>&1 ;;
        linphone-cli) command -v linphonec >/dev/null 2>&1 ;;
        npm) command -v npm >/dev/null 2>&1 ;;
        *) return 1 ;;
    esac
}

missing=""
for pkg in $PACKAGES; do
    probe "$pkg" || missing="$missing $pkg"
done
missing="${missing# }"

if [ -z "$missing" ]; then
    echo "install-peers: all SIP test peers present ($PACKAGES)"
    exit 0
fi

echo "install-peers: missing: $missing"

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    {
        echo "install-peers: not root (and no password-less sudo), cannot install."
        echo "Ask an administrator to run:"
        echo ""
        echo "    apt-get update"
        echo "    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing"
        echo ""
        echo "(Tests marked 'peers' need them; run the others with: pytest -m 'not peers')"
    } >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-peers: no apt-get here; install the equivalents of: $missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing

still=""
for pkg in $missing; do
    probe "$pkg" || still="$still $pkg"
done
if [ -n "$still" ]; then
    echo "install-peers: still missing after install:$still" >&2
    exit 1
fi
echo "install-peers: installed $missing"
