//! Unpredictable identifiers.

/// 128 bits from the operating system's generator, as 32 hex digits (sign-in
/// nonces, session token ids).
///
/// # Panics
///
/// If the operating system's generator fails, as `rand`'s thread generator
/// would: nonces cannot be made unpredictable without it.
pub(crate) fn random_hex128() -> String {
    let mut bytes = [0u8; 16];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    hex::encode(bytes)
}
