"""`gpuaf demo`: the whole portal on one machine, with a local stand-in for INDIGO IAM."""
