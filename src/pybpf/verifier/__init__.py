"""pybpf.verifier: proves programs safe before they run (the verifier issue builds it)."""
