//! (owner: helper A) not built yet.
