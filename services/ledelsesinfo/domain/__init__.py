"""Pure domain of ledelsesinfo: periods, figure definitions, a child's timeline, its deadlines and its
contributions to the period buckets. No I/O here."""
