"""The numbers of README's reproducibility contract, for every test that compares probabilities
computed on another CPU (fixtures written on one machine, subprocesses under other kernels)."""

#: the largest |Δp| allowed between two CPU instruction sets for one model and one file
CROSS_ISA_BOUND = 1e-3
