import sys
import numpy as np
from scipy.special import log_softmax
from hybridtmd.evaluation.modalities import PAPER_CLASS_ORDER

d = np.load("/work/shared/data/paper_embeddings/mocvd1_center_resnet18_imagenet.npz")
y = d["y"].astype(str)
recs = []
for f in sys.argv[1:]:
    recs += list(np.load(f, allow_pickle=True))
import os
if os.environ.get("BIAS"):
    from bias import add_bias
    for r in recs:
        add_bias(r)


def metrics(yt, yp, labels, newest):
    rec = [np.mean(yp[yt == c] == c) for c in labels]
    f1 = []
    for c in labels:
        tp = np.sum((yp == c) & (yt == c)); fp = np.sum((yp == c) & (yt != c)); fn = np.sum((yp != c) & (yt == c))
        f1.append(0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return np.array([np.mean(yp == yt), np.mean(rec), np.mean(f1), rec[labels.index(newest)]])


def variants(r):
    classes = r["svm_classes"]
    counts = np.array([np.sum(y[r["train"]] == c) for c in classes], float)
    lda = r["lda_dec"]
    out = {"svm": r["svm_pred"], "lda": classes[lda.argmax(1)]}
    few = counts < counts.max() / 1.5
    for tau in (0.25, 0.5, 1.0):
        out[f"lda+la{tau}"] = classes[(lda + tau * np.log(counts.max() / counts)).argmax(1)]
    lp = log_softmax(lda, axis=1)
    sp = np.log(np.clip(r["svm_proba"], 1e-6, 1))
    for w in (0.5, 1.0):
        out[f"prod{w}"] = classes[(w * sp + lp).argmax(1)]
    lda_pred = lda.argmax(1)
    override = r["svm_pred"].copy()
    m = few[lda_pred]
    override[m] = classes[lda_pred[m]]
    out["override"] = override
    for tau in (0.5, 1.0):
        lp2 = lda + tau * np.log(counts.max() / counts)
        p2 = lp2.argmax(1)
        o2 = r["svm_pred"].copy(); m2 = few[p2]; o2[m2] = classes[p2[m2]]
        out[f"override_la{tau}"] = o2
    lda_b = r.get("lda_bias")
    if lda_b is not None:
        for a in (0.5, 1.0, 1.5):
            sb = lda + a * lda_b
            out[f"ldab{a}"] = classes[sb.argmax(1)]
            pb = sb.argmax(1)
            o3 = r["svm_pred"].copy(); m3 = few[pb]; o3[m3] = classes[pb[m3]]
            out[f"override_b{a}"] = o3
    return out


rows = {}
for r in recs:
    k = r["k"]; order = list(PAPER_CLASS_ORDER[:k]); yt = y[r["test"]]
    for name, yp in variants(r).items():
        rows.setdefault((name, r["cap"]), {}).setdefault((r["seed"], r["fold"]), []).append(
            metrics(yt, yp, order, order[-1]))
        rows.setdefault((name, f"{k}-{r['cap']}"), {}).setdefault((r["seed"], r["fold"]), []).append(
            metrics(yt, yp, order, order[-1]))
print("name cap | acc bal f1 newest (mean over k, +-std over seed x fold)")
for (name, cap), units in sorted(rows.items(), key=lambda t: (str(t[0][1]), t[0][0])):
    a = np.array([np.mean(v, axis=0) for v in units.values()])
    m, s = a.mean(0), a.std(0)
    print(f"{name:16s} {cap!s:6s} " + " ".join(f"{x:.3f}±{e:.3f}" for x, e in zip(m, s)), f"n={len(a)}")
