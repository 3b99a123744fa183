"""Compare two `drasclr demo` run folders file by file (issue 12: the refactor changes nothing).

Usage: python docs/experiments/compare_demo_runs.py RUN_A RUN_B

Compares every file under evaluation/, cohort/, features/ and labels/ (Parquet as data frames,
other tables, arrays and images by SHA-256), results.json without times and paths, and report.md
line by line. The store is compared with ``drasclr.store.store_digest`` separately.
"""
import hashlib, json, sys
from pathlib import Path
import pandas as pd
a, b = Path(sys.argv[1]), Path(sys.argv[2])
def sha(p): return hashlib.sha256(p.read_bytes()).hexdigest()[:12]
same = diff = 0
for sub in ["evaluation", "cohort", "features", "labels"]:
    for pa in sorted((a / sub).rglob("*")):
        if not pa.is_file(): continue
        rel = pa.relative_to(a); pb = b / rel
        if not pb.exists():
            print("MISSING in after:", rel); diff += 1; continue
        if pa.suffix in (".csv", ".npz", ".npy", ".parquet") or pa.name.endswith(".nii.gz"):
            if pa.suffix == ".parquet":
                ok = pd.read_parquet(pa).equals(pd.read_parquet(pb))
            else:
                ok = sha(pa) == sha(pb)
            if ok: same += 1
            else: diff += 1; print("DIFF", rel)
for pb in sorted((b / "evaluation").rglob("*")):
    if pb.is_file() and not (a / pb.relative_to(b)).exists(): print("NEW in after:", pb.relative_to(b))
ra = json.loads((a/"evaluation/results.json").read_text()); rb = json.loads((b/"evaluation/results.json").read_text())
def strip(d):
    if isinstance(d, dict): return {k: strip(v) for k, v in d.items() if k not in ("created", "seconds", "timings", "output_dir", "files", "cohort_dir", "fingerprint")}
    if isinstance(d, list): return [strip(v) for v in d]
    if isinstance(d, str): return d.replace(str(a), "X").replace(str(b), "X")
    return d
print("results.json equal (ignoring times/paths):", strip(ra) == strip(rb))
if strip(ra) != strip(rb):
    for k in ra:
        if strip(ra.get(k)) != strip(rb.get(k)): print("  results differ at", k)
ta = (a/"report/report.md").read_text().replace(str(a), "X"); tb = (b/"report/report.md").read_text().replace(str(b), "X")
import difflib
d = [l for l in difflib.unified_diff(ta.splitlines(), tb.splitlines(), lineterm="", n=0) if l[:1] in "+-" and not l.startswith(("+++", "---"))]
print("report.md differing lines:", len(d)); print("\n".join(d[:30]))
print(f"files identical: {same}, differing: {diff}")
