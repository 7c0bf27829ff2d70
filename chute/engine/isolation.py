"""The ``isolated`` network of run containers: the internet yes, this machine's ports no.

On the engine's default bridge a container reaches every port of the host through
the bridge's gateway address and the host's own addresses, including a chute server
listening on 0.0.0.0 and the ports other containers publish. The ``isolated``
network is a bridge network of its own (``chute-isolated``) plus an nftables table
(``inet chute_isolated``) that, for traffic coming in from that bridge:

* rejects everything addressed to the host itself (the *input* hook), except DNS to
  the bridge's gateway (podman's aardvark-dns answers there) and the TCP ports listed
  in ``CHUTE_RUN_ALLOW_HOST_PORTS`` (e.g. ``8080,9000-9010``);
* rejects what the host would forward to other container bridges (``podman*``,
  ``cni-podman*``, ``docker*``, ``br-*``: other containers and their published ports)
  and to link-local addresses (169.254.0.0/16: cloud metadata services);
* lets everything else through: outbound connections, with the engine's NAT.

The rejection is immediate (ICMP "administratively prohibited"), so a step that tries
fails at once instead of hanging. The table is written atomically before each run
(``nft -f``: create, delete, define), so a flushed ruleset is restored and two agents
on one machine never see it half-written.

It needs root (nftables) and a local engine. Where that is not the case (rootless
podman, no ``nft``, a remote docker daemon) :func:`ensure_isolated` returns ``none``
with the reason: the step then runs with no network at all, never with an open one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

NETWORK = "chute-isolated"
TABLE = "chute_isolated"
ALLOW_PORTS_ENV = "CHUTE_RUN_ALLOW_HOST_PORTS"
OTHER_BRIDGES = ("podman*", "cni-podman*", "docker*", "br-*")

_PORTS = re.compile(r"^\d{1,5}(-\d{1,5})?$")
_IFACE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_lock = threading.Lock()


class IsolationUnavailable(Exception):
    """The isolated network cannot be set up here; the message says why."""


@dataclass(frozen=True)
class Bridge:
    interface: str
    gateways: tuple[str, ...]


def allowed_ports(environ: Mapping[str, str]) -> list[str]:
    """``CHUTE_RUN_ALLOW_HOST_PORTS`` as nft port items; raises ValueError naming a bad item."""
    out = []
    for item in (environ.get(ALLOW_PORTS_ENV) or "").replace(" ", "").split(","):
        if not item:
            continue
        if not _PORTS.match(item) or any(not 0 < int(p) < 65536 for p in item.split("-")):
            raise ValueError(f"{ALLOW_PORTS_ENV}: {item!r} is not a port or a range like 9000-9010")
        out.append(item)
    return out


def ruleset(bridge: Bridge, ports: list[str]) -> str:
    """The nftables script that (re)defines the table for ``bridge``."""
    iif = f'iifname "{bridge.interface}"'
    reject = "reject with icmpx type admin-prohibited"
    lines = [f"table inet {TABLE}", f"delete table inet {TABLE}", f"table inet {TABLE} {{",
             "  chain input {", "    type filter hook input priority -10; policy accept;"]
    for gw in bridge.gateways:
        family = "ip6" if ":" in gw else "ip"
        lines += [f"    {iif} {family} daddr {gw} udp dport 53 accept",
                  f"    {iif} {family} daddr {gw} tcp dport 53 accept"]
    if ports:
        lines.append(f"    {iif} tcp dport {{ {', '.join(ports)} }} accept")
    lines += [f"    {iif} {reject}", "  }",
              "  chain forward {", "    type filter hook forward priority -10; policy accept;"]
    lines += [f'    {iif} oifname "{pattern}" {reject}' for pattern in OTHER_BRIDGES]
    lines += [f"    {iif} ip daddr 169.254.0.0/16 {reject}", f"    {iif} ip6 daddr fe80::/10 {reject}",
              "  }", "}"]
    return "\n".join(lines) + "\n"


def _bridge_from_inspect(data: Any) -> Bridge:
    if isinstance(data, list):
        data = data[0] if data else {}
    if "network_interface" in data:  # podman (netavark)
        iface = str(data.get("network_interface") or "")
        gateways = tuple(str(s["gateway"]) for s in data.get("subnets") or [] if s.get("gateway"))
    else:  # docker
        opts = data.get("Options") or {}
        iface = str(opts.get("com.docker.network.bridge.name") or f"br-{str(data.get('Id', ''))[:12]}")
        gateways = tuple(str(c["Gateway"]) for c in (data.get("IPAM") or {}).get("Config") or [] if c.get("Gateway"))
    if not _IFACE.match(iface):
        raise IsolationUnavailable(f"network {NETWORK} has no usable bridge interface ({iface!r})")
    return Bridge(iface, gateways)


def ensure_isolated(capture: Callable[..., Any], engine_name: str, environ: Mapping[str, str],
                    nft: str | None = None) -> Bridge:
    """Create the network if needed and (re)write its firewall; raises IsolationUnavailable."""
    nft = nft or shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
    if os.geteuid() != 0:
        raise IsolationUnavailable("the isolated network needs root (nftables rules); this process is not root")
    if nft is None:
        raise IsolationUnavailable("the isolated network needs nftables: apt-get install nftables")
    if engine_name == "docker" and not (environ.get("DOCKER_HOST") or "unix://").startswith("unix://"):
        raise IsolationUnavailable("the docker daemon is remote (DOCKER_HOST); its bridges are not on this machine")
    try:
        ports = allowed_ports(environ)
    except ValueError as err:
        raise IsolationUnavailable(str(err)) from None
    with _lock:
        found = capture("network", "inspect", NETWORK)
        if found.returncode != 0:
            made = capture("network", "create", "--label", "chute.managed=1", NETWORK)
            if made.returncode != 0 and "exists" not in (made.stderr or "").lower():
                raise IsolationUnavailable(f"cannot create network {NETWORK}: {made.error_line()}")
            found = capture("network", "inspect", NETWORK)
            if found.returncode != 0:
                raise IsolationUnavailable(f"cannot inspect network {NETWORK}: {found.error_line()}")
        try:
            bridge = _bridge_from_inspect(json.loads(found.stdout or "[]"))
        except (ValueError, KeyError, TypeError) as err:
            raise IsolationUnavailable(f"cannot read network {NETWORK}: {err}") from None
        proc = subprocess.run([nft, "-f", "-"], input=ruleset(bridge, ports), capture_output=True, text=True,
                              timeout=30, check=False)
        if proc.returncode != 0:
            raise IsolationUnavailable(f"nft refused the rules of network {NETWORK}: "
                                       f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return bridge
