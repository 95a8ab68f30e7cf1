#!/bin/sh
# Rendered by npm-connector render --mode sidecar. Run once in the pod's network namespace
# (an init container with NET_ADMIN), as istio-init does: the pod's outbound TCP to the
# intercepted ports goes to Envoy's listener; Envoy's own connections (uid 1337) do not.
set -eu
PROXY_PORT="${PROXY_PORT:-15001}"
PROXY_UID="${PROXY_UID:-1337}"
PORTS="${PORTS:-80 443}"
IPTABLES="${IPTABLES:-iptables}"
IP6TABLES="${IP6TABLES:-ip6tables}"

$IPTABLES -t nat -N NPM_CONNECTOR_OUTPUT
# Envoy's own connections (to registries, to original destinations) leave untouched.
$IPTABLES -t nat -A NPM_CONNECTOR_OUTPUT -m owner --uid-owner "$PROXY_UID" -j RETURN
# Loopback stays loopback (the pod's own services, Envoy's admin socket is a unix socket).
$IPTABLES -t nat -A NPM_CONNECTOR_OUTPUT -d 127.0.0.0/8 -j RETURN
for port in $PORTS; do
  $IPTABLES -t nat -A NPM_CONNECTOR_OUTPUT -p tcp --dport "$port" -j REDIRECT --to-ports "$PROXY_PORT"
done
$IPTABLES -t nat -A OUTPUT -p tcp -j NPM_CONNECTOR_OUTPUT

# Envoy listens on IPv4 loopback: the pod's IPv6 to the intercepted ports is refused, so
# clients fall back to IPv4 and nothing bypasses the proxy.
if command -v "$IP6TABLES" >/dev/null 2>&1 && [ -e /proc/net/if_inet6 ]; then
  $IP6TABLES -N NPM_CONNECTOR_OUTPUT
  $IP6TABLES -A NPM_CONNECTOR_OUTPUT -m owner --uid-owner "$PROXY_UID" -j RETURN
  $IP6TABLES -A NPM_CONNECTOR_OUTPUT -d ::1/128 -j RETURN
  for port in $PORTS; do
    $IP6TABLES -A NPM_CONNECTOR_OUTPUT -p tcp --dport "$port" -j REJECT --reject-with tcp-reset
  done
  $IP6TABLES -A OUTPUT -p tcp -j NPM_CONNECTOR_OUTPUT
fi
