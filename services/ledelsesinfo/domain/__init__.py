"""Pure domain of ledelsesinfo: periods, figure definitions, and a child's contributions to the period
buckets. The case facts and deadline rules come from the shared engine (shared/casework). No I/O."""
