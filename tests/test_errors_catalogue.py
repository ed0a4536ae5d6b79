"""Every user-facing error of docs/errors.md: its text names file, line, field.

Each case feeds one bad input and checks the start of the one-line message,
``FILE:LINE: field 'F': message``. The ids are the catalogue's: a meta-test
keeps docs/errors.md and this list in step.
"""

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maglevx import Director
from maglevx.captures import parse_conntrack, parse_ip_vs_conn, parse_ipvsadm_conn
from maglevx.errors import MaglevxError
from maglevx.predict import predict_lines

ROOT = Path(__file__).resolve().parent.parent
H = "-A -t 10.0.0.1:80 -s mh\n-a -t 10.0.0.1:80 -r 10.1.0.1:80 -m -w 1\n"
S = "TCP  10.0.0.1:80 mh\n  -> 10.1.0.1:80  Masq  1  0  0\n"
F = "tcp,192.0.2.1,1,10.0.0.1,80\n"
C = "tcp 6 1 ESTABLISHED src=192.0.2.1 dst=10.0.0.1 sport=1 dport=80\n"
V = "TCP C0000201 0001 0A000001 0050 0A010001 0050 ESTABLISHED 10\n"
L = "TCP 14:59  ESTABLISHED 192.0.2.1:40000    10.0.0.1:80        10.1.0.1:80\n"

HISTORY = {
    "H-number": (H + "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -w 1x", "cfg:3: field '-w': weight '1x' is not a number"),
    "H-range": (H + "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -w 70000", "cfg:3: field '-w': weight 70000 is outside 0..65535"),
    "H-digits": (H + "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -w " + "7" * 30, "cfg:3: field '-w': weight 77777777777777777777... (30 digits) is outside"),
    "H-brackets": ("-A -t [10.0.0.1]:80 -s mh", "cfg:1: field '-t': '10.0.0.1' in brackets is not IPv6"),
    "H-zone": ("-A -t [fe80::1%2]:80 -s mh", "cfg:1: field '-t': 'fe80::1%2': IPv6 zone indices"),
    "H-v6port": ("-A -t [2001:db8::1]80 -s mh", "cfg:1: field '-t': '[2001:db8::1]80' is not [IPv6-address]:port"),
    "H-address": ("-A -t 10.0.0.x:80 -s mh", "cfg:1: field '-t': '10.0.0.x' is not a numeric IP address"),
    "H-host": ("-A -t www.example:80 -s mh", "cfg:1: field '-t': 'www.example' is a host name: save with `ipvsadm -Sn`"),
    "H-port-name": ("-A -t 10.0.0.1:nosuch -s mh", "cfg:1: field '-t': port 'nosuch' is no service name of tcp that ipvsadm prints"),
    "H-null": (H + "-a -t 10.0.0.1:80 -r 10.1.0.2:80 (null) -w 100", "cfg:3: field '(null)': `ipvsadm -S` could not name this real server's forwarding method"),
    "H-listing-line": ("TCP  10.0.0.1:80 mh", "cfg:1: field 'TCP': a line must start with a command (-A, -E, -D, -C, -a, -e, -d), not 'TCP': this is an `ipvsadm -L` listing, given with --snapshot"),
    "H-flag": ("-A -t 10.0.0.1:80 -s mh -b mh-prot", "cfg:1: field '-b': invalid scheduler flag 'mh-prot'"),
    "H-flag-sched": ("-A -t 10.0.0.1:80 -s wlc -b mh-port", "cfg:1: field '-b': scheduler flag 'mh-port' needs scheduler 'mh'"),
    "H-split": ("-A -t '10.0.0.1:80 -s mh", "cfg:1: cannot split line: No closing quotation"),
    "H-empty": ("ipvsadm", "cfg:1: empty command"),
    "H-not-config": ("-L -n", "cfg:1: field '-L': -L does not change the configuration"),
    "H-command": ("-t 10.0.0.1:80", "cfg:1: field '-t': a line must start with a command"),
    "H-second-command": ("-A -a -t 10.0.0.1:80", "cfg:1: field '-a': a second command '-a' on one line"),
    "H-option": ("-A -t 10.0.0.1:80 -s mh -z", "cfg:1: field '-z': unknown option '-z'"),
    "H-twice": ("-A -t 10.0.0.1:80 -s mh -s mh", "cfg:1: field '-s': option -s given twice"),
    "H-needs-value": ("-A -t 10.0.0.1:80 -s", "cfg:1: field '-s': option -s needs a value"),
    "H-no-value": (H + "-e -t 10.0.0.1:80 -r 10.1.0.1:80 --masquerading=1", "cfg:3: field '--masquerading': option --masquerading takes no value"),
    "H-second-service": ("-A -t 10.0.0.1:80 -u 10.0.0.1:53", "cfg:1: field '-u': a second virtual service -u on one line"),
    "H-scheduler": ("-A -t 10.0.0.1:80 -s maglev", "cfg:1: field '-s': unknown scheduler 'maglev'"),
    "H-forward": (H + "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -m -g", "cfg:3: field '-g': -g conflicts with -m"),
    "H-ipv6-flag": ("-A -6 -f 1 -s mh", "cfg:1: field '-6': -6 used before -f"),
    "H-zero-port": ("-A -t 10.0.0.1 -s mh", "cfg:1: field '-t': zero port specified for non-persistent service"),
    "H-netmask-v6": ("-A -t [2001:db8::1]:80 -s mh -p -M 255.255.255.0", "cfg:1: field '-M': illegal ipv6 netmask '255.255.255.0': a prefix length 1..128"),
    "H-netmask-v4": ("-A -t 10.0.0.1:80 -s mh -p -M 255.255.255.256", "cfg:1: field '-M': illegal virtual server persistent mask '255.255.255.256'"),
    "H-ops": ("-A -t 10.0.0.1:80 -s mh -o", "cfg:1: field '-o': one-packet scheduling is only for UDP"),
    "H-family": (H + "-a -t 10.0.0.1:80 -r [2001:db8::1]:80", "cfg:3: field '-r': real server 2001:db8::1 is not IPv4 like the service"),
    "H-clear-option": ("-C -t 10.0.0.1:80", "cfg:1: field '-t': option -t is not allowed with -C"),
    "H-no-service": ("-A -s mh", "cfg:1: no virtual service given"),
    "H-no-server": (H + "-a -t 10.0.0.1:80 -w 1", "cfg:3: no real server given (-r)"),
    "H-not-allowed": ("-A -t 10.0.0.1:80 -s mh -w 1", "cfg:1: field '-w': option -w is not allowed with add-service"),
    "H-exists": (H + "-A -t 10.0.0.1:80 -s mh", "cfg:3: service TCP 10.0.0.1:80 already exists"),
    "H-no-such-service": ("-D -t 10.0.0.1:80", "cfg:1: no such service TCP 10.0.0.1:80"),
    "H-too-many": ("-A -t 10.0.0.1:80 -s wlc\n" + "".join(f"-a -t 10.0.0.1:80 -r 10.1.{i // 250}.{i % 250 + 1}:80\n" for i in range(252)) + "-E -t 10.0.0.1:80 -s mh", "cfg:254: TCP 10.0.0.1:80 has 252 real servers, more than the 251 table slots"),
    "H-thresholds": (H + "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -x 1 -y 2", "cfg:3: field '-y': lower threshold is higher than upper threshold"),
    "H-server-exists": (H + "-a -t 10.0.0.1:80 -r 10.1.0.1:80", "cfg:3: real server 10.1.0.1:80 in TCP 10.0.0.1:80 already exists"),
    "H-no-such-server": (H + "-d -t 10.0.0.1:80 -r 10.1.0.2:80", "cfg:3: no such real server 10.1.0.2:80 in TCP 10.0.0.1:80"),
}  # fmt: skip

SNAPSHOT = {
    "S-server-first": ("  -> 10.1.0.1:80  Masq  1  0  0", "cfg:1: real server line before any service"),
    "S-line": (S + "HTTP 10.0.0.1:80 mh", "cfg:3: not a line of `ipvsadm -Ln --nosort`"),
    "S-fwmark": ("FWM  0 mh", "cfg:1: field 'FWM': fwmark 0 is outside 1..4294967295"),
    "S-address": ("TCP  10.0.0.x:80 mh", "cfg:1: field 'LocalAddress:Port': '10.0.0.x' is not a numeric IP address"),
    "S-host": ("TCP  lb.example:http mh", "cfg:1: field 'LocalAddress:Port': 'lb.example' is a host name: list with `ipvsadm -Ln --nosort`"),
    "S-redacted": ("TCP  <vip>.20:80 mh", "cfg:1: field 'LocalAddress:Port': '<vip>.20' is not an IP address (redacted?)"),
    "S-port-name": ("TCP  10.0.0.1:nosuch mh", "cfg:1: field 'LocalAddress:Port': port 'nosuch' is no service name of tcp that ipvsadm prints"),
    "S-stats": ("Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes", "cfg:1: this is `ipvsadm -L --stats` output, which shows no scheduler, flags or weights: list with `ipvsadm -Ln --nosort`"),
    "S-rate": ("Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS", "cfg:1: this is `ipvsadm -L --rate` output"),
    "S-thresholds": ("Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn", "cfg:1: this is `ipvsadm -L --thresholds` output, which shows no weights"),
    "S-counters": ("TCP  10.0.0.1:80          2515932  125426K        0   13034M        0", "cfg:1: field 'Scheduler': a number ('2515932') where the scheduler goes"),
    "S-no-forward": (S + "  -> 10.1.0.2:80             0          0          0          0", "cfg:3: real server line without a forwarding method"),
    "S-forward": (S + "  -> 10.1.0.2:80  FullNat  100  0  0", "cfg:3: field 'Forward': forwarding method 'FullNat' is a patched IPVS's"),
    "S-dpvs": ("MATCH tcp,from=172.16.0.0-172.16.255.254:0-0,oif=dpdk1 rr", "cfg:1: this is DPVS's (a `MATCH` SNAT service) listing, not Linux IPVS's"),
    "S-l7vsd": ("Layer-7 Virtual Server version 3.0.0", "cfg:1: this is l7vsd's (UltraMonkey-L7 `l7vsadm -l`) listing"),
    "S-quoted": ("> TCP  10.0.0.1:80 mh", "cfg:1: the line starts with '>' (mail quoting)"),
    "S-several": (">>> lb1\n" + S, "cfg:1: '>>> lb1' starts another director's output"),
    "S-prompt": (S + "[root@lb1 ~]# ipvsadm -Ln --stats", "cfg:3: a shell prompt or command ('ipvsadm -Ln --stats') after the listing"),
    "S-history-line": ("-A -t 10.0.0.1:80 -s mh", "cfg:1: this line is an `ipvsadm -R` command: a history (rule file) is given with --history"),
    "S-scheduler": ("TCP  10.0.0.1:80 maglev", "cfg:1: field 'Scheduler': unknown scheduler 'maglev'"),
    "S-flags": ("TCP  10.0.0.1:80 mh (mh-prot)", "cfg:1: field 'Flags': invalid scheduler flag 'mh-prot'"),
    "S-persistent": ("TCP  10.0.0.1:80 mh persistent " + "9" * 30, "cfg:1: field 'persistent': timeout 99999999999999999999... (30 digits)"),
    "S-attributes": ("TCP  10.0.0.1:80 mh sticky", "cfg:1: unexpected service attributes 'sticky'"),
    "S-service-twice": (S + S, "cfg:3: service TCP 10.0.0.1:80 listed twice"),
    "S-server-line": (S + "  -> 10.1.0.2:80  Masq  x", "cfg:3: not a real server line"),
    "S-server-address": (S + "  -> 10.1.0.x:80  Masq  1  0  0", "cfg:3: field 'RemoteAddress:Port': '10.1.0.x' is not a numeric IP address"),
    "S-weight": (S + "  -> 10.1.0.2:80  Masq  70000  0  0", "cfg:3: field 'Weight': weight 70000 is outside 0..65535"),
    "S-weight-negative": (S + "  -> 10.1.0.2:80  Masq  -1  0  0", "cfg:3: field 'Weight': weight -1 is outside 0..65535"),
    "S-server-twice": (S + "  -> 10.1.0.1:80  Masq  1  0  0", "cfg:3: real server 10.1.0.1:80 listed twice in TCP 10.0.0.1:80"),
    "S-too-many": ("TCP  10.0.0.1:80 mh\n" + "".join(f"  -> 10.1.{i // 250}.{i % 250 + 1}:80  Masq  1  0  0\n" for i in range(252)), "cfg:253: TCP 10.0.0.1:80 lists more than 251 real servers"),
}  # fmt: skip

D = Director.from_history(
    H + "-A -t 10.0.0.9:80 -s wlc\n-A -u [2001:db8::1]:53 -s mh\n", table_size=251
)

FLOWS = {
    "F-fields": (F + "tcp,192.0.2.1,1,10.0.0.1", "cfg:2: expected 5 fields"),
    "F-fwmark": (F + "tcp,192.0.2.1,1,10.0.0.1,80,0xfwm", "cfg:2: field 'fwmark': fwmark '0xfwm' is not a number 0..0xffffffff"),
    "F-proto": (F + "gre,192.0.2.1,1,10.0.0.1,80", "cfg:2: field 'proto': unknown protocol 'gre'"),
    "F-daddr": (F + "tcp,192.0.2.1,1,10.0.0.x,80", "cfg:2: field 'daddr': '10.0.0.x' is not an IP address"),
    "F-dport": (F + "tcp,192.0.2.1,1,10.0.0.1,8o", "cfg:2: field 'dport': '8o' is not a port"),
    "F-dport-range": (F + "tcp,192.0.2.1,1,10.0.0.1,65536", "cfg:2: field 'dport': port 65536 is outside 0..65535"),
    "F-service": (F + "tcp,192.0.2.1,1,10.0.0.2,80", "cfg:2: field 'daddr': no virtual service for tcp 10.0.0.2 port 80"),
    "F-not-mh": (F + "tcp,192.0.2.1,1,10.0.0.9,80", "cfg:2: TCP 10.0.0.9:80 uses scheduler 'wlc', not mh"),
    "F-saddr": (F + "tcp,192.0.2.1x,1,10.0.0.1,80", "cfg:2: field 'saddr': '192.0.2.1x' is not an IPv4 address like TCP 10.0.0.1:80"),
    "F-saddr-family": (F + "udp,192.0.2.1,1,2001:db8::1,53", "cfg:2: field 'saddr': '192.0.2.1' is not an IPv6 address"),
    "F-sport": (F + "tcp,192.0.2.1,x,10.0.0.1,80", "cfg:2: field 'sport': 'x' is not a port"),
    "F-header": ("proto,saddr,daddr,dport\n" + F, "cfg:1: field 'header': header names no column for sport"),
    "F-header-twice": ("proto,src,saddr,sport,daddr,dport\n" + F, "cfg:1: field 'header': header names two columns for saddr: 'src' and 'saddr'"),
}  # fmt: skip

CAPTURES = {
    "C-conn-fields": (parse_ip_vs_conn, V + "TCP C0000201 0001", "cfg:2: expected at least 9 fields"),
    "C-conn-expires": (parse_ip_vs_conn, V + V.replace(" 10\n", " x\n"), "cfg:2: field 'Expires': 'x' is not a number"),
    "C-conn-address": (parse_ip_vs_conn, V + V.replace("C0000201", "C00002"), "cfg:2: field 'FromIP': 'C00002' is not an address"),
    "C-conn-port": (parse_ip_vs_conn, V + V.replace("0001", "x001"), "cfg:2: field 'FPrt': 'x001' is not a hex port"),
    "C-ct-proto": (parse_conntrack, C + "bogus 9 1 src=192.0.2.1 dst=10.0.0.1", "cfg:2: field 'proto': unknown protocol 'bogus'"),
    "C-ct-src": (parse_conntrack, C + "tcp 6 1 ESTABLISHED dst=10.0.0.1 sport=1 dport=80", "cfg:2: no src=/dst= in the original direction"),
    "C-ct-address": (parse_conntrack, C + C.replace("192.0.2.1", "192.0.2.x"), "cfg:2: field 'src': '192.0.2.x' is not an IP address"),
    "C-ct-port": (parse_conntrack, C + C.replace("sport=1", "sport=x"), "cfg:2: field 'sport': 'x' is not a port"),
    "C-ct-cut": (parse_conntrack, C + "cp      6 1 ESTABLISHED src=192.0.2.1 dst=10.0.0.1", "cfg:2: field 'proto': unknown protocol 'cp' (protocol number 6 is tcp: is the line cut?)"),
    "C-lnc-fields": (parse_ipvsadm_conn, L + "TCP 14:59 ESTABLISHED 192.0.2.1:1", "cfg:2: expected at least 6 fields"),
    "C-lnc-expire": (parse_ipvsadm_conn, L + L.replace("14:59", "14h"), "cfg:2: field 'expire': '14h' is not minutes:seconds"),
    "C-lnc-state": (parse_ipvsadm_conn, L + L.replace("ESTABLISHED", "C0A8C86D"), "cfg:2: field 'state': 'C0A8C86D' is not an IPVS connection state"),
    "C-lnc-name": (parse_ipvsadm_conn, L + L.replace("192.0.2.1", "client.example"), "cfg:2: field 'source': 'client.example' is not a numeric address: capture with `ipvsadm -Lnc`"),
    "C-lnc-port": (parse_ipvsadm_conn, L + L.replace(":80 ", ":http "), "cfg:2: field 'virtual': port 'http' is not a number: capture with `ipvsadm -Lnc`"),
}  # fmt: skip


def _raises(fn, expected):
    with pytest.raises(MaglevxError) as exc:
        fn()
    text = str(exc.value)
    assert text.startswith(expected), text
    assert len(text.splitlines()) == 1 and text.isprintable()
    m = re.match(r"cfg:(\d+): ", text)
    assert m and exc.value.source == "cfg" and exc.value.line == int(m.group(1))
    if "field '" in expected:
        assert exc.value.field is not None
    return exc.value


@pytest.mark.parametrize("eid", list(HISTORY))
def test_history_error(eid):
    text, expected = HISTORY[eid]
    _raises(lambda: Director.from_history(text, source="cfg", table_size=251), expected)


@pytest.mark.parametrize("eid", list(SNAPSHOT))
def test_snapshot_error(eid):
    text, expected = SNAPSHOT[eid]
    _raises(
        lambda: Director.from_snapshot(text, source="cfg", table_size=251), expected
    )


@pytest.mark.parametrize("eid", list(FLOWS))
def test_flow_error_keeps_lines_before(eid):
    text, expected = FLOWS[eid]
    out = io.StringIO()
    strict = eid == "F-service"  # without --strict: empty fields, counted
    _raises(
        lambda: predict_lines(
            D, io.StringIO(text + "\n" + F), out, source="cfg", strict=strict
        ),
        expected,
    )
    # the good line 1, nothing after (a bad header: nothing at all)
    assert out.getvalue().count("\n") == (0 if eid.startswith("F-header") else 1)


@pytest.mark.parametrize("eid", list(CAPTURES))
def test_capture_error(eid):
    parse, text, expected = CAPTURES[eid]
    _raises(lambda: list(parse(io.StringIO(text), source="cfg")), expected)


CLI = {
    "CLI-read": (["predict", "--history", "{tmp}/missing.txt", "-"], "maglevx: error: {tmp}/missing.txt: cannot read: No such file or directory"),
    "CLI-port-hash": (["predict", "--history", "{tmp}/h.txt", "--no-port-hash", "-"], "maglevx: error: --no-port-hash applies to --variant backport only"),
    "CLI-table-size": (["predict", "--history", "{tmp}/h.txt", "--table-size", "4000", "-"], "maglevx predict: error: argument --table-size: 4000 is not one of the kernel's primes"),
    "CLI-history": (["predict", "--history", "{tmp}/bad.txt", "-"], "maglevx: error: {tmp}/bad.txt:3: field '-w': weight 70000 is outside 0..65535"),
    "CLI-flows": (["predict", "--history", "{tmp}/h.txt", "{tmp}/f.csv"], "maglevx: error: {tmp}/f.csv:2: field 'sport': 'x' is not a port"),
    "CLI-service": (["table", "--history", "{tmp}/h.txt", "--service", "tcp 10.0.0.9:80"], "maglevx: error: field '--service': no mh service 'tcp 10.0.0.9:80' (mh services: 'TCP 10.0.0.1:80')"),
    "CLI-no-service": (["predict", "--history", "{tmp}/h.txt", "--strict", "{tmp}/g.csv"], "maglevx: error: {tmp}/g.csv:1: field 'daddr': no virtual service for tcp 10.0.0.2 port 80"),
    "CLI-last-weight": (["table", "--snapshot", "{tmp}/s.txt", "--last-weight", "10.1.0.1:80"], "maglevx: error: field '--last-weight': '10.1.0.1:80' is not ADDR:PORT=WEIGHT"),
    "CLI-last-weight-server": (["table", "--snapshot", "{tmp}/s.txt", "--last-weight", "10.1.0.1:80=5"], "maglevx: error: {tmp}/s.txt: field '--last-weight': 10.1.0.1:80 is no weight-0 real server"),
    "CLI-last-weight-history": (["table", "--history", "{tmp}/h.txt", "--assume-drained-by-edit"], "maglevx: error: {tmp}/h.txt: --last-weight and --assume-drained-by-edit are for listings"),
    "CLI-conn-format": (["verify", "--history", "{tmp}/h.txt", "--conn", "{tmp}/f.csv", "--no-kmod"], "maglevx: error: {tmp}/f.csv: not a connection listing"),
    "CLI-nothing-verified": (["verify", "--history", "{tmp}/h.txt", "--conn", "{tmp}/c.txt", "--no-kmod"], "maglevx: error: {tmp}/c.txt: nothing verified: none of the 1 connections is to an mh service"),
}  # fmt: skip


@pytest.mark.parametrize("eid", list(CLI))
def test_cli_error_one_line_exit_2(eid, tmp_path):
    (tmp_path / "h.txt").write_text(H)
    (tmp_path / "bad.txt").write_text(H + "-e -t 10.0.0.1:80 -r 10.1.0.1:80 -w 70000\n")
    (tmp_path / "f.csv").write_text(F + "tcp,192.0.2.1,x,10.0.0.1,80\n" + F)
    (tmp_path / "g.csv").write_text("tcp,192.0.2.1,1,10.0.0.2,80\n")
    (tmp_path / "s.txt").write_text(S)
    (tmp_path / "c.txt").write_text(V.replace("0A000001 0050", "0A000009 0050"))
    argv, expected = CLI[eid]
    r = subprocess.run(
        [sys.executable, "-m", "maglevx", *(a.format(tmp=tmp_path) for a in argv)],
        input="", capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.startswith(expected.format(tmp=tmp_path)), r.stderr
    assert len(r.stderr.splitlines()) == 1
    if eid == "CLI-flows":  # stdout: every flow before the bad line, none after
        assert r.stdout.splitlines() == [r.stdout.splitlines()[0]]
        assert r.stdout.startswith(F.strip() + ",")


ALL = [*HISTORY, *SNAPSHOT, *FLOWS, *CAPTURES, *CLI]


def test_catalogue_lists_exactly_these_errors():
    doc = (ROOT / "docs" / "errors.md").read_text()
    ids = re.findall(r"^\| `([A-Z]+-[a-z0-9-]+)` \|", doc, re.M)
    assert sorted(ids) == sorted(ALL)


def test_catalogue_names_code_that_exists():
    # "where" cells name FILE.py `function` (or `Class.method`): after code
    # moves, a stale name sends a reader to nothing
    import ast

    doc = (ROOT / "docs" / "errors.md").read_text()
    missing = []
    for file, name in sorted(set(re.findall(r"([\w/]+\.py) `([\w.]+)`", doc))):
        paths = [ROOT / "maglevx" / file, ROOT / "maglevx" / "tools" / file]
        source = next((p.read_text() for p in paths if p.exists()), "")
        defs = {
            n.name
            for n in ast.walk(ast.parse(source))
            if isinstance(n, (ast.FunctionDef, ast.ClassDef))
        }
        if name.split(".")[-1] not in defs:
            missing.append(f"{file} {name}")
    assert not missing
