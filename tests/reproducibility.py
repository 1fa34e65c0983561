"""The numbers of the reproducibility contract (docs/reproducibility.md), for every test that compares probabilities
computed on another CPU (fixtures written on one machine, subprocesses under other kernels)."""

#: the largest |Δp| allowed between two CPU instruction sets for one model and one file
CROSS_ISA_BOUND = 1e-3
