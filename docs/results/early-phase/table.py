"""Best validation error at 5-100 s of shf train runs under $ROOT (default runs/early-phase): python table.py NAME..."""
import json, sys, os
ROOT = os.environ.get("ROOT", "runs/early-phase")
ts=[5,10,20,40,60,100]
print("variant      " + " ".join(f"{t:>7}" for t in ts) + "   iters  best_test")
for name in sys.argv[1:]:
    p=f"{ROOT}/{name}/metrics.jsonl"
    if not os.path.exists(p): continue
    R=[json.loads(l) for l in open(p)]
    def at(t):
        w=[r['best_val_error'] for r in R if r['time_s']<=t]
        return w[-1] if w else float('nan')
    s={}
    sp=f"{ROOT}/{name}/summary.json"
    if os.path.exists(sp): s=json.load(open(sp))
    print(f"{name:12s} " + " ".join(f"{at(t):7.3f}" for t in ts) + f"  {len(R):5d}  {s.get('test_error', float('nan')):.3f}")
