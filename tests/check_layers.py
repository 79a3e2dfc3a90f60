#!/usr/bin/env python3
"""The library's layering (docs/architecture.md): every include and every call
of a function that only one file defines points from a folder to one below it
(or within it), and no files form a circle.
    check_layers.py SOURCE_DIR [OBJECT_DIR]
OBJECT_DIR: the dsrt_core target's object folder, for the calls (nm)."""
import collections, os, re, subprocess, sys

LAYERS = {'base': 2, 'config': 3, 'ckpt': 3, 'kernels': 3, 'model': 4, 'zero': 5, 'engine': 6, 'plugin': 7}
src = sys.argv[1]
objdir = sys.argv[2] if len(sys.argv) > 2 else None
bad = []


def folder(path):
    return path.split('/')[0]


def check_arrow(kind, a, b):
    fa, fb = folder(a), folder(b)
    if fa == fb:
        return
    if LAYERS[fb] >= LAYERS[fa]:
        bad.append('%s %s -> %s: %s (layer %d) may not use %s (layer %d)' % (kind, a, b, fa, LAYERS[fa], fb, LAYERS[fb]))


def circles(edges):
    found, state, stack = [], {}, []

    def dfs(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                found.append(stack[stack.index(m):] + [m])
            elif m not in state:
                dfs(m)
        stack.pop()
        state[n] = 2
    for n in sorted(edges):
        if n not in state:
            dfs(n)
    return found


# includes, file to file
inc = collections.defaultdict(set)
n_inc = 0
for d in LAYERS:
    for dp, _, fn in os.walk(os.path.join(src, d)):
        for f in fn:
            if not f.endswith(('.c', '.h', '.cu', '.cuh')):
                continue
            rel = os.path.relpath(os.path.join(dp, f), src)
            for m in re.finditer(r'#include "([^"]+)"', open(os.path.join(dp, f)).read()):
                target = m.group(1)
                if target == 'dsrt.h':
                    continue
                if '/' not in target:
                    bad.append('include %s -> "%s": name the folder ("%s/...")' % (rel, target, folder(rel)))
                    continue
                n_inc += 1
                check_arrow('include', rel, target)
                inc[rel].add(target)
for c in circles(inc):
    bad.append('include circle: ' + ' -> '.join(c))

n_calls = 0
if objdir:
    defs, undefs = {}, {}
    for dp, _, fn in os.walk(objdir):
        for f in fn:
            if f.endswith('.o'):
                o = os.path.relpath(os.path.join(dp, f), objdir)
                out = subprocess.check_output(['nm', os.path.join(dp, f)], text=True)
                defs[o] = {l.split()[2] for l in out.splitlines() if len(l.split()) == 3 and l.split()[1] in 'TDBR'}
                undefs[o] = {l.split()[1] for l in out.splitlines() if len(l.split()) == 2 and l.split()[0] == 'U'}
    owner = {s: o for o, d in defs.items() for s in d}
    calls = collections.defaultdict(set)
    for o, u in undefs.items():
        for s in u:
            if s in owner and owner[s] != o:
                a, b = re.sub(r'\.(c|cu)\.o$', '', o), re.sub(r'\.(c|cu)\.o$', '', owner[s])
                if b not in calls[a]:
                    n_calls += 1
                    check_arrow('call', a, b)
                calls[a].add(b)
    if not defs:
        bad.append('no object files under %s' % objdir)
    for c in circles(calls):
        bad.append('call circle: ' + ' -> '.join(c))

for b in bad:
    print('FAIL', b)
print('%d includes%s checked: %d problems' % (n_inc, ', %d file-to-file calls' % n_calls if objdir else '', len(bad)))
sys.exit(1 if bad else 0)
