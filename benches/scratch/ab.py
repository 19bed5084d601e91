#!/usr/bin/env python3
# Alternates binaries that print one figure per line (the scratch programs): ROUNDS rounds of
# each in turn, with ARG, GROVE_WORKERS=$W (default 1); prints the minimum and median of each.
# usage: ab.py ROUNDS ARG BINARY...
import sys, subprocess, os, statistics
R=int(sys.argv[1]); arg=sys.argv[2]; bins=sys.argv[3:]
res={b:[] for b in bins}
env=dict(os.environ, GROVE_WORKERS=os.environ.get("W","1"))
for r in range(R):
    for b in bins:
        out=subprocess.run([b,arg],capture_output=True,text=True,env=env).stdout
        res[b]+= [float(l.split()[0]) for l in out.splitlines() if l.strip()]
for b in bins:
    v=res[b]; print(f"{b}: min {min(v):.1f} median {statistics.median(v):.1f} (n={len(v)})")
