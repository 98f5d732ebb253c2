"""Prototype: Adam for T1 s, then SHF (defaults) from Adam's best weights for T - T1 s; default preset.
usage: python hybrid.py SEED T1 T OUT.json [SHF --set overrides...]"""
import dataclasses
import json
import os
import sys

import torch

from shf.config import load
from shf.experiments.methods import build_method
from shf.experiments.run import build_network, prepare_data, squared_error
from shf.fit import SHFMethod, run_loop
from shf.optim.shf import SHF

seed, T1, T, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
LR = os.environ.get("LR", "1e-3")
torch.set_num_threads(1)
overrides = [f"run.seed={seed}", "first_order.batch_size=200", f"first_order.lr={LR}", *sys.argv[5:]]
cfg = load("default", overrides)
data = prepare_data(cfg)
net = build_network(cfg)
ev = squared_error(net)
curve = []
loop1 = dataclasses.replace(cfg.run.loop(), max_time=T1, max_iters=10**6)
r1 = run_loop(data, build_method("adam", net, data, cfg), loop1, evaluate=ev, seed=seed,
              on_iteration=lambda r: curve.append((r["time_s"], r["val_error"], "adam")))
w = [t.clone() for t in r1.weights]
net.to(dtype=data.train.dtype)
opt = SHF(net, config=cfg.optimizer, train_size=data.train.shape[0],
          generator=torch.Generator().manual_seed(seed))
m = SHFMethod(opt, data, lambda o: o.set_weights([t.clone() for t in w]), reuse_val=False)
loop2 = dataclasses.replace(cfg.run.loop(), max_time=T - T1, max_iters=10**6)
t0 = curve[-1][0]
r2 = run_loop(data, m, loop2, evaluate=ev, seed=seed,
              on_iteration=lambda r: curve.append((t0 + r["time_s"], r["val_error"], "shf")))
s = r2.summary
with open(out, "w") as f:
    json.dump({"seed": seed, "T1": T1, "T": T, "adam_best_val": r1.summary["val_error"],
               "val_error": s["val_error"], "test_error": s["test_error"], "curve": curve}, f)
print(seed, T1, T, "adam", r1.summary["val_error"], "final val", s["val_error"], "test", s["test_error"])
