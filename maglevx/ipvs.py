"""Names and numbers of Linux IPVS (include/uapi/linux/ip_vs.h, ip_vs_ctl.c).

The lowest layer of maglevx: constants only, shared by the readers (which
check a configuration's syntax) and the model (which applies it).
"""

from __future__ import annotations

# Service flags (IP_VS_SVC_F_*)
SVC_F_PERSISTENT = 0x0001
SVC_F_HASHED = 0x0002
SVC_F_ONEPACKET = 0x0004
SVC_F_SCHED1 = 0x0008  # mh-fallback
SVC_F_SCHED2 = 0x0010  # mh-port
SVC_F_SCHED3 = 0x0020
FLAG_FALLBACK = SVC_F_SCHED1
FLAG_PORT = SVC_F_SCHED2

PROTOCOLS = ("tcp", "udp", "sctp")
FORWARD_METHODS = ("masq", "route", "tunnel")

# The schedulers Linux 6.1 ships (net/netfilter/ipvs/ip_vs_*.c).
SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh",
    "sed", "nq", "fo", "ovf", "mh", "twos",
)  # fmt: skip

MAX_WEIGHT = 65535  # ipvsadm refuses more (the kernel takes any int >= 0)
MAX_THRESHOLD = 2**31 - 1
# ipvsadm 1.31: "-p" alone gives 360 s ("persistent 360" in the guest)
DEFAULT_PERSISTENT_TIMEOUT = 360
MAX_TIMEOUT = 86400 * 31  # ipvsadm's MAX_TIMEOUT

VARIANTS = ("upstream", "backport")
WORD_SIZES = (64, 32)
BYTE_ORDERS = ("little", "big")
