//! Validation of names, domains, ports and versions (pure).
