//! (owner: helper C2) not built yet.
