//! (owner: helper C1) not built yet.
