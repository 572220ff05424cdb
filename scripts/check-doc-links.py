#!/usr/bin/env python3
"""Checks the relative links of the repository's Markdown files: every target exists inside the
repository and every #anchor names a heading of its file; reports external links and mentions of
documents outside the repository. Usage: python3 scripts/check-doc-links.py [files...]
(default: README.md, HACKING.md, docs/*.md, benches/runs/**/README.md). Exit status 1 on a problem."""
import glob
import os
import re
import sys
root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
files = sys.argv[1:] or (["README.md", "HACKING.md"] + sorted(glob.glob("docs/*.md", root_dir=root))
                         + sorted(glob.glob("benches/runs/**/README.md", root_dir=root, recursive=True)))
bad = 0
def anchors(path):
    out=set()
    for line in open(path):
        m=re.match(r'^#+\s+(.*)', line)
        if m:
            t=m.group(1).strip().lower()
            t=re.sub(r'[^\w\- ]','',t).replace(' ','-')
            out.add(t)
    return out
for f in files:
    text=open(os.path.join(root,f)).read()
    # strip fenced code
    text=re.sub(r'```.*?```','',text,flags=re.S)
    for m in re.finditer(r'\]\(([^)\s]+)\)', text):
        url=m.group(1)
        if url.startswith('http'):
            print(f"{f}: EXTERNAL {url}"); bad+=1; continue
        path, _, frag = url.partition('#')
        target = os.path.normpath(os.path.join(root, os.path.dirname(f), path)) if path else os.path.join(root,f)
        if not target.startswith(os.path.abspath(root)):
            print(f"{f}: OUTSIDE {url}"); bad+=1; continue
        if not os.path.exists(target):
            print(f"{f}: MISSING {url}"); bad+=1; continue
        if frag and os.path.isfile(target) and frag not in anchors(target):
            print(f"{f}: BAD ANCHOR {url}"); bad+=1
    if not f.startswith('benches/runs/'):  # the log keeps its history verbatim
        for m in re.finditer(r'\.\./shared|design §|spec §', text):
            print(f"{f}: MENTION {m.group(0)}"); bad+=1
print("problems:", bad)
sys.exit(1 if bad else 0)
