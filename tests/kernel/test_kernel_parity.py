"""Every flow the real kernel scheduled (or refused) equals maglevx's prediction."""

from __future__ import annotations

import ipaddress

import pytest
from ipvs_vm import scenarios
from ipvs_vm.suite import FLOWS_PER_SCENARIO, RANDOM_SEED, SEEDS

pytestmark = pytest.mark.kernel

CASES = [(key, seed) for key, seeds in SEEDS.items() for seed in seeds]


def _name(seed: int) -> str:
    return f"seed{seed}-{scenarios.THEMES[seed % len(scenarios.THEMES)]}"


@pytest.mark.parametrize("key,seed", CASES, ids=[f"{k}-{_name(s)}" for k, s in CASES])
def test_scenario_matches_maglevx(campaign, key, seed):
    name = _name(seed)
    bad, _, problems, replay = campaign[key].faults(name)
    how = (
        f"replay offline: see {replay[0]}/README; in the VM: PYTHONPATH=tests/kernel python -m ipvs_vm "
        f"run -k {key} --seeds {seed} --flows {FLOWS_PER_SCENARIO}"
        if replay
        else ""
    )
    assert not problems, f"harness problems in {name}: {problems[:5]} {how}"
    assert not bad, f"{len(bad)} mismatches in {name} on {key}, e.g. {bad[:3]}. {how}"


@pytest.mark.parametrize(
    "key,min_flows,min_scenarios", [("6.1", 100_000, 40), ("6.12", 20_000, 1)]
)
def test_campaign_size(campaign, key, min_flows, min_scenarios):
    rep = campaign[key]
    print(rep.summary())
    if FLOWS_PER_SCENARIO < 2500:
        pytest.skip(f"MAGLEVX_KERNEL_FLOWS={FLOWS_PER_SCENARIO} shrinks the campaign")
    assert rep.flows >= min_flows
    assert rep.scenarios >= min_scenarios
    assert rep.mismatches == [] and rep.problems == []


def test_kernels_agree_on_shared_seeds(campaign):
    """6.1 and 6.12 make byte-identical decisions for the same history and flows."""

    def choices(rep):
        out = {}
        for res in rep.results:
            for j, ph in enumerate(res.phases):
                for r in ph.results:
                    out[(res.scenario.name, j, r.flow)] = r.choice
        return out

    a, b = choices(campaign["6.1"]), choices(campaign["6.12"])
    shared = set(a) & set(b)
    assert len(shared) >= 3 * FLOWS_PER_SCENARIO * 0.9, "too few shared flows"
    diff = [k for k in shared if a[k] != b[k]]
    assert diff == [], f"6.1 and 6.12 differ (random seed {RANDOM_SEED}): {diff[:5]}"


@pytest.mark.parametrize("key", list(SEEDS))
def test_no_destination_signals(campaign, key):
    """What the client sees: UDP -> EPERM from sendto(), TCP -> ECONNREFUSED."""
    seen = {}
    for res in campaign[key].results:
        if res.scenario.meta.get("decision"):  # passes and -o: test_kernel_decision
            continue
        for ph in res.phases:
            for r in ph.results:
                k = (r.flow.proto, r.choice is None)
                seen.setdefault(k, set()).add(r.status)
    assert seen.get(("udp", True), {"p"}) == {"p"}
    assert seen.get(("tcp", True), {"r"}) == {"r"}
    assert seen[("udp", False)] <= {"s"}
    assert seen[("tcp", False)] <= {"s", "h"}
    assert ("udp", True) in seen and ("tcp", True) in seen


@pytest.mark.parametrize("key", list(SEEDS))
def test_list_order_is_newest_first(campaign, key):
    """``ipvsadm -Ln --nosort`` (the kernel's list) equals the model's list order."""
    import maglevx

    rep = campaign[key]
    assert rep.order_mismatches == []
    checked = expected = 0
    for res in rep.results:
        sc = res.scenario
        if sc.meta.get("decision"):  # FWM listings: test_kernel_decision
            continue
        expected += 1
        for j, ph in enumerate(res.phases):
            listed = scenarios.parse_listing(ph.listing)
            d = maglevx.Director.from_history(sc.history_upto(j))
            model = {
                svc.name: [rs.endpoint for rs in svc.real_servers] for svc in d.services
            }
            assert listed == model, f"{sc.name} phase {j}"
            checked += 1
    assert expected and checked >= expected


def test_ipv6_flows_present(campaign):
    v6 = sum(
        1
        for res in campaign["6.1"].results
        for ph in res.phases
        for r in ph.results
        if ipaddress.ip_address(r.flow.saddr).version == 6
    )
    assert v6 > 1000
