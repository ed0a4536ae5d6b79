#!/usr/bin/env python3
"""Count the lines of maglevx/ that serve the features it had before issue 16.

Issue 16 asks that the redesigned package do "at least the same with fewer
lines for the old features".  The old features are what maglevx/ did at
BASE, where its .py/.pyx/.pyi/.pxd files had 5,813 lines.  Today those files,
and the modules split out of them, also hold the features of issues 11-15
and 17.  `git blame` gives every line the commit that last wrote it; a line
written by a commit of another issue (listed below, by hand, from their
messages) is that issue's.  Every other line counts as the old features':
the lines from before BASE, issue 16's own commits, merges and clean-ups.
That is the conservative side: an ambiguous line counts against us.

A clean-up that rewrites another issue's line makes it ours.  With
--refactors SINCE, the non-merge commits after SINCE (a simplifying pass,
no features) are given to `git blame --ignore-rev`, so that a rewritten
line keeps the issue of the line it replaced; a line only they wrote still
counts as ours.

Issue 16 also asked for an API the old package did not have ("So the API
must offer": snapshots, editing methods, copy/==/pickling, checked bulk
input and constructors, a director-level bulk lookup).  With --new-api, the
old-feature lines inside the definitions listed in NEW_API are counted as
that API's, and the definitions of BASE that it replaced (REPLACED: the
global change counter, the list subclass, the table caches, ipvsadm's
apply_command) are subtracted from it: what the new API costs is what it
added, net.  Definitions are found by name with `ast`; a name that is not
there is an error, so the lists cannot go stale silently.

Usage: python3 scripts/old-feature-lines.py [--refactors SINCE] [--new-api] [REV]
"""

from __future__ import annotations

import ast
import collections
import subprocess
import sys

BASE = "e4621dc"  # main when issue 16 was filed
SPLIT_OUT = ["maglevx/addresses.py", "maglevx/ipvs.py", "maglevx/listing.py"]
SPLIT_OUT += ["maglevx/_version.py"]
SOURCE = (".py", ".pyx", ".pyi", ".pxd")

# Commits that wrote another issue's feature into these files.  A merge is
# listed when it merged that issue's branch: the lines it wrote are the
# branch's feature fitted to main (f299937: realinputs, 2710849: decision).
OTHER_ISSUES = {
    "11": "a186717 db8560f 2f7d3cc 29293aa 2710849",
    "12": "c6c19d1 4bc955f 5e62764 5995df7 53da815 80c27ed c4feb7d 86d03c9 "
    "fcc859d 222c632 073c55d f299937 e23eea6",
    "13": "f961698 9f6742e 5b56d2b",
    "14": "109dabc e5402e6 ddff569 c70b52b 664e9e4 6cf075a b1dbb70",
    "15": "8444379",
    "17": "a894838 001ff0f 1265b5d ed7cebc ba9218c",
}

# Issue 16's new API, by the bullet of "So the API must offer" it answers.
# A "-" before a name leaves that definition out of the one listed before it.
NEW_API = {
    "maglevx/model.py": {
        "immutable table snapshots, swapped atomically; read-only arrays": (
            "_Build TableSnapshot -TableSnapshot.lookup_many _endpoints "
            "VirtualService.snapshot VirtualService._make_snapshot"
        ),
        "editing methods with the kernel's semantics": (
            "VirtualService.add_server VirtualService.edit_server "
            "VirtualService.set_overloaded VirtualService.remove_server "
            "VirtualService._existing VirtualService._swap "
            "Director.add_service Director.edit_service Director.remove_service "
            "Director.clear Director.apply"
        ),
        "copy(), __eq__, and pickling": (
            "VirtualService.__eq__ VirtualService.__reduce__ VirtualService._state "
            "Director.__eq__ Director.__getstate__ "
            "Director.__setstate__ Director.copy"
        ),
        "strict validation of bulk input, string address arrays, out=": (
            "_integers bulk_addresses _bulk_column bulk_ports bulk_marks _bulk_out"
        ),
        "constructors that check (negative weights, family=6 with IPv4...)": (
            "RealServer.__post_init__ ServiceConfig.__post_init__ VirtualService._check_family "
            "_check_text"
        ),
        "a director-level bulk lookup over whole 5-tuple columns": (
            "Director.lookup_many _mh_service"
        ),
    },
}

# What the new API replaced, as it was at BASE.
REPLACED = {
    "maglevx/model.py": (
        "_Changes _ServiceList RealServer.__setattr__ VirtualService.__setattr__ "
        "Director.__setattr__ VirtualService.rebuild VirtualService.table "
        "VirtualService._lookup_state _LookupState _address_array"
    ),
    "maglevx/ipvsadm.py": "apply_command",
}


def git(*args: str) -> str:
    """The output of a git command in this checkout."""
    return subprocess.run(
        ["git", *args], check=True, capture_output=True, text=True
    ).stdout


def definitions(source: str) -> dict[str, range]:
    """Line numbers (1-based, decorators included) of each def and class."""
    found: dict[str, range] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.ClassDef)):
                name = prefix + child.name
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                assert child.end_lineno is not None
                found.setdefault(name, range(first, child.end_lineno + 1))
                visit(child, name + ".")

    visit(ast.parse(source), "")
    return found


def lines_of(source: str, names: str, path: str) -> set[int]:
    """The line numbers of the definitions named (see NEW_API)."""
    defs = definitions(source)
    lines: set[int] = set()
    for name in names.split():
        drop = name.startswith("-")
        span = defs.get(name.lstrip("-"))
        if span is None:
            sys.exit(f"{path}: no definition {name.lstrip('-')!r}")
        lines = lines - set(span) if drop else lines | set(span)
    return lines


def main() -> None:
    """Print the lines per issue of the old files at the revision asked."""
    args = sys.argv[1:]
    ignore: list[str] = []
    since = None
    if args[:1] == ["--refactors"]:
        since, args = args[1], args[2:]
    new_api = args[:1] == ["--new-api"]
    args = args[1:] if new_api else args
    rev = args[0] if args else "HEAD"
    if since is not None:
        commits = git("rev-list", "--no-merges", f"{since}..{rev}", "--", "maglevx")
        for c in commits.split():
            ignore += ["--ignore-rev", c]
    issue_of = {}
    for issue, commits in OTHER_ISSUES.items():
        for c in commits.split():
            issue_of[git("rev-parse", c).strip()] = issue
    old = [f for f in git("ls-tree", "-r", "--name-only", BASE, "maglevx").split()]
    files = [f for f in old + SPLIT_OUT if f.endswith(SOURCE)]
    present = set(git("ls-tree", "-r", "--name-only", rev, "maglevx").split())
    base_lines = sum(
        len(git("show", f"{BASE}:{f}").splitlines()) for f in old if f.endswith(SOURCE)
    )
    per_issue: collections.Counter[str] = collections.Counter()
    per_bullet: collections.Counter[str] = collections.Counter()
    for f in files:
        if f not in present:
            continue
        api = {}
        if new_api:
            source = git("show", f"{rev}:{f}")
            for bullet, names in NEW_API.get(f, {}).items():
                api.update(dict.fromkeys(lines_of(source, names, f), bullet))
        lineno = 0
        for line in git(
            "blame", "--line-porcelain", "-w", *ignore, rev, "--", f
        ).splitlines():
            head = line.split(" ", 1)[0]
            if len(head) == 40 and all(ch in "0123456789abcdef" for ch in head):
                lineno += 1
                issue = issue_of.get(head, "old")
                if issue == "old" and lineno in api:
                    issue = "16 (new API)"
                    per_bullet[api[lineno]] += 1
                per_issue[issue] += 1
    replaced = 0
    if new_api:
        for f, names in REPLACED.items():
            replaced += len(lines_of(git("show", f"{BASE}:{f}"), names, f))
    total = sum(per_issue.values())
    print(f"{BASE}: {base_lines} lines in the files maglevx/ had then")
    print(f"{rev}: {total} lines in those files and the modules split out of them")
    for issue in sorted(k for k in per_issue if k != "old"):
        print(f"  issue {issue}: {per_issue[issue]}")
    for bullet, n in per_bullet.items():
        print(f"    {n:4d}  {bullet}")
    old_lines = per_issue["old"]
    if new_api:
        added = per_issue["16 (new API)"]
        print(f"    -{replaced:3d}  lines of BASE that the new API replaced")
        print(f"  issue 16's new API, net: {added - replaced}")
        old_lines += replaced
    print(f"  old features: {old_lines} ({old_lines - base_lines:+d})")


if __name__ == "__main__":
    main()
