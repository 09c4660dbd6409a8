//! Examples for the paywire workspace; see `examples/` and `docs/`.
//!
//! Each example is compiled by CI (`cargo clippy --all-targets`), so the code
//! in the guides cannot silently rot.
