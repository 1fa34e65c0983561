import numpy as np
from hybridtmd.model import latent_table
from hybridtmd.model.discriminant import DiscriminantHead

d = np.load("/work/shared/data/paper_embeddings/mocvd1_center_resnet18_imagenet.npz")
X, y, g = d["X"].astype(float), d["y"].astype(str), d["groups"].astype(str)


def add_bias(r):
    tr = r["train"]
    classes, ye = np.unique(y[tr], return_inverse=True)
    h = DiscriminantHead().fit(X[tr], ye)
    Z = h.standardise(X[tr])
    R = Z - h.means_[ye]
    gt = g[tr]
    ug, gi = np.unique(gt, return_inverse=True)
    gm = np.zeros((len(ug), Z.shape[1])); np.add.at(gm, gi, R); m = np.bincount(gi); gm /= m[:, None]
    W = R - gm[gi]
    dof = max(np.sum(m - 1), 1)
    Sw = W.T @ W / dof
    S = R.T @ R / len(R)
    P = np.linalg.inv(h.covariance_)
    t_tot = float(np.sum(P * S)); t_w = min(float(np.sum(P * Sw)), t_tot); t_b = t_tot - t_w
    bias = np.zeros(len(classes))
    for c in range(len(classes)):
        mc = np.bincount(gi[ye == c]); mc = mc[mc > 0]; n = mc.sum()
        bias[c] = 0.5 * (t_w / n + t_b * np.sum(mc ** 2) / n ** 2)
    r["lda_bias"] = bias
    r["t"] = (t_tot, t_w, t_b)
