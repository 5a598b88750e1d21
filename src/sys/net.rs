//! Port probes: is a TCP port in use on this machine, and by whom.
