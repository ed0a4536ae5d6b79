"""The kernel's whole decision (docs/decision-path.md) against maglevx, by design.

The decision scenarios (``ipvs_vm/decision.py``) run in the shared campaign on 6.1
and 6.12: every flow's real server (or none, and for UDP whether the packet passed
or was dropped), every one-packet datagram nft saw, and every persistence template
in ``/proc/net/ip_vs_conn`` after each phase must equal maglevx's. Then each branch
the document lists must have been taken, so a generator that stopped reaching one
fails here instead of passing quietly.
"""

from __future__ import annotations

import os

import pytest
from ipvs_vm import compare, decision, kernels, qemu
from ipvs_vm.suite import DECISION_SEEDS

pytestmark = pytest.mark.kernel

CASES = [(key, seed) for key, seeds in DECISION_SEEDS.items() for seed in seeds]


def _name(seed: int) -> str:
    return f"decision{seed}-{decision.THEMES[seed % len(decision.THEMES)]}"


@pytest.mark.parametrize("key,seed", CASES, ids=[f"{k}-{_name(s)}" for k, s in CASES])
def test_decision_scenario_matches_maglevx(campaign, key, seed):
    name = _name(seed)
    bad, tbad, problems, replay = campaign[key].faults(name)
    assert not problems, f"harness problems in {name}: {problems[:5]} {replay}"
    assert not bad, f"{len(bad)} mismatches in {name} on {key}: {bad[:3]} {replay}"
    assert not tbad, f"templates differ in {name} on {key}: {tbad[:3]} {replay}"


@pytest.mark.parametrize("branch", list(decision.BRANCHES))
@pytest.mark.parametrize("key", list(DECISION_SEEDS))
def test_every_branch_is_hit(campaign, key, branch):
    rep = campaign[key]
    assert rep.branches[branch] >= decision.BRANCHES[branch], (
        f"{branch!r} taken {rep.branches[branch]} times on {key} "
        f"(need {decision.BRANCHES[branch]}); all: {dict(rep.branches)}"
    )


def test_templates_were_compared(campaign):
    for key in DECISION_SEEDS:
        assert campaign[key].templates_compared >= 1000, key
        assert campaign[key].template_mismatches == []


IPVSADM_RULES = {
    # command -> (exit status, what ipvsadm 1.31 prints), seen in the guest
    "ipvsadm -A -t 10.1.0.1:0 -s mh": (2, "Zero port specified for non-persistent"),
    "ipvsadm -A -t 10.1.0.2:0 -s mh -p": (0, ""),
    "ipvsadm -E -t 10.1.0.2:0 -s mh": (2, "Zero port specified for non-persistent"),
    "ipvsadm -A -t 10.1.0.3:80 -s mh -o": (2, "One-Packet Scheduling is only for UDP"),
    "ipvsadm -A -f 0x10 -s mh": (2, "invalid fwmark value"),
    "ipvsadm -A -t [fd00:1::1]:80 -s mh -p -M 255.255.255.0": (
        2,
        "illegal ipv6 netmask specified",
    ),
    "ipvsadm -A -t [fd00:1::2]:80 -s mh -p -M 129": (2, "illegal ipv6 netmask"),
    "ipvsadm -A -t 10.1.0.4:80 -s mh -p -M 24": (0, ""),
    "ipvsadm -A -t 10.1.0.5:80 -s mh -p 0": (2, "invalid timeout value"),
}


@pytest.fixture(scope="module")
def ipvsadm_rules(kernel_env):
    cmds = list(IPVSADM_RULES)
    script = (
        "".join(
            f'echo "@@CMD {i}"; {c} 2>&1; echo "@@RC $?"\n' for i, c in enumerate(cmds)
        )
        + "ipvsadm -Ln --nosort\n"
    )
    boot = qemu.boot(kernel_env["6.1"], {"run.sh": script}, timeout=300)
    out, cur = {}, None
    for line in boot.text("run.log").splitlines():
        if line.startswith("@@CMD "):
            cur = cmds[int(line.split()[1])]
            out[cur] = [None, ""]
        elif line.startswith("@@RC ") and cur:
            out[cur][0] = int(line.split()[1])
            cur = None
        elif cur:
            out[cur][1] += line + "\n"
    out["listing"] = boot.text("run.log")
    return out


@pytest.mark.parametrize("cmd", list(IPVSADM_RULES))
def test_ipvsadm_rules(ipvsadm_rules, cmd):
    """What ipvsadm 1.31 refuses (and maglevx refuses the same way)."""
    import maglevx

    rc, text = IPVSADM_RULES[cmd]
    got_rc, got_text = ipvsadm_rules[cmd]
    assert got_rc == rc and text in got_text, (got_rc, got_text)
    line = cmd.removeprefix("ipvsadm ")
    d = maglevx.Director()
    if "-E" in line:
        d.apply("-A -t 10.1.0.2:0 -s mh -p")
    if rc:
        with pytest.raises(maglevx.MaglevxError):
            d.apply(line)
    else:
        d.apply(line)


def test_ipv4_mask_is_inet_aton(ipvsadm_rules):
    """``-M 24`` is the mask 0.0.0.24 (ipvsadm reads it with inet_aton)."""
    assert (
        "TCP  10.1.0.4:80 mh persistent 360 mask 0.0.0.24" in ipvsadm_rules["listing"]
    )
    import maglevx

    d = maglevx.Director()
    d.apply("-A -t 10.1.0.4:80 -s mh -p -M 24")
    svc = d.services[0]
    assert svc.persistence_mask == 24 and svc.persistent == 360


def test_kernel_keys_cover_both():
    assert set(DECISION_SEEDS) <= set(kernels.KERNEL_KEYS)


# -- the same edges on kmod/ (backport semantics); i386: test_arch_kernels.py -----
KMOD_FLOWS = int(os.environ.get("MAGLEVX_KMOD_DECISION_FLOWS", "1000"))


@pytest.fixture(scope="module")
def kmod_decision(kernel_env, kmod_build_of):
    """Every decision theme with kmod/'s ip_vs_mh.ko replacing the in-tree one."""
    plan = []
    for key in DECISION_SEEDS:
        ko = kmod_build_of(key).ko
        plan.append(
            (kernel_env[key], [decision.generate(s, KMOD_FLOWS) for s in range(9)], ko)
        )
    reports = {}
    for k, scs, ko in plan:  # one boot per kernel
        reports[k.key] = compare.run(
            k,
            scs,
            variant="backport",
            extra_modules=[qemu.ExtraModule(ko, "", replaces="ip_vs_mh")],
        )
    return reports


@pytest.mark.parametrize("key", list(DECISION_SEEDS))
def test_kmod_decisions_match_maglevx_backport(kmod_decision, key):
    rep = kmod_decision[key]
    print(rep.summary())
    assert rep.flows >= 9 * KMOD_FLOWS * 0.9
    assert rep.problems == [], rep.problems[:5]
    assert rep.mismatches == [], rep.mismatches[:5]
    assert rep.template_mismatches == [], rep.template_mismatches[:5]
    for branch in ("ftp-data tcp", "FTP lookup", "port-zero catch-all", "fwmark service",
                   "masked client IPv6", "template udp", "one-packet seen by nft"):  # fmt: skip
        assert rep.branches[branch] > 0, branch
