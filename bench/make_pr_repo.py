#!/usr/bin/env python3
"""Writes a git fast-import stream for a GitHub-style repository: a main branch with history, tags, and thousands of
refs/pull/N/head, a share of them at commits of their own (reachable only from that ref), as pallets/flask has
(3,671 refs, 3,536 of them refs/pull/*). Usage: make_pr_repo.py COMMITS PULLS UNIQUE_PULLS | git fast-import"""
import os, sys

commits, pulls, unique = (int(a) for a in sys.argv[1:4])
out = sys.stdout.buffer
mark = 0
def data(b):
    out.write(b"data %d\n" % len(b)); out.write(b); out.write(b"\n")
def blob(b):
    global mark
    mark += 1
    out.write(b"blob\nmark :%d\n" % mark); data(b)
    return mark
main_marks = []
text = b""
for i in range(commits):
    text += b"line %d of the changelog, with some words to compress\n" % i
    files = [(b"CHANGES.txt", blob(text))]
    if i % 10 == 0:
        files.append((b"assets/blob%d.bin" % i, blob(os.urandom(100_000))))
    mark += 1
    out.write(b"commit refs/heads/main\nmark :%d\ncommitter Bench <b@example.com> %d +0000\n" % (mark, 1_700_000_000 + i))
    data(b"commit %d" % i)
    if main_marks:
        out.write(b"from :%d\n" % main_marks[-1])
    for path, m in files:
        out.write(b"M 100644 :%d %s\n" % (m, path))
    main_marks.append(mark)
    if i % 50 == 49:
        out.write(b"reset refs/tags/v%d\nfrom :%d\n\n" % (i // 50, mark))
every = max(1, pulls // unique)
for n in range(1, pulls + 1):
    base = main_marks[(n * 7919) % len(main_marks)]
    if n % every == 0:
        m = blob(os.urandom(20_000))
        mark += 1
        out.write(b"commit refs/pull/%d/head\nmark :%d\ncommitter Bench <b@example.com> %d +0000\n" % (n, mark, 1_800_000_000 + n))
        data(b"pull request %d" % n)
        out.write(b"from :%d\nM 100644 :%d pr/%d.bin\n" % (base, m, n))
    else:
        out.write(b"reset refs/pull/%d/head\nfrom :%d\n\n" % (n, base))
out.write(b"done\n")
