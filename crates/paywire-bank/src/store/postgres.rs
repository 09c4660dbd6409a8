//! (owner: helper B) not built yet.
