//! Port reservations.
