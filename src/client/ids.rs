//! Ids unique fleet-wide, for the calls a script must recognise when they come twice.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// An id no other call of any process will use: 64 random bits drawn once per process, the
/// process id, and a counter.
pub(crate) fn unique_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix =
        PREFIX.get_or_init(|| format!("{:016x}-{}", fastrand::u64(..), std::process::id()));
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_unique() {
        let a = super::unique_id();
        let b = super::unique_id();
        assert_ne!(a, b);
        assert_eq!(a.rsplit_once('-').unwrap().0, b.rsplit_once('-').unwrap().0);
    }
}
