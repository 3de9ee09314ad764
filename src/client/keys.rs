//! Key naming: limitlion's `throttle:<name>` layout, with a hash tag in cluster mode.

/// How throttle keys are named.
///
/// Standalone Redis uses limitlion's keys unchanged. On Redis Cluster a throttle's keys must
/// share a slot, so the name is wrapped in a hash tag `{<name>}` unless it already has one;
/// the daemon and every client must agree on the mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyLayout {
    /// Wrap names in a hash tag for Redis Cluster.
    pub cluster: bool,
}

impl KeyLayout {
    fn base(self, name: &str) -> String {
        if self.cluster && !has_hash_tag(name) {
            format!("throttle:{{{name}}}")
        } else {
            format!("throttle:{name}")
        }
    }

    /// The bucket hash: `throttle:<name>` (fields `tokens`, `refreshed`).
    #[must_use]
    pub fn bucket(self, name: &str) -> String {
        self.base(name)
    }

    /// The knobs hash: `throttle:<name>:knobs` (fields `rps`, `burst`, `window`).
    #[must_use]
    pub fn knobs(self, name: &str) -> String {
        self.base(name) + ":knobs"
    }

    /// The daemon's change log: `throttle:<name>:history`, a capped stream.
    #[must_use]
    pub fn history(self, name: &str) -> String {
        self.base(name) + ":history"
    }

    /// The daemon's write fence on a Redis Cluster: `throttle:<name>:fence`, the lease epoch of
    /// the last leader that wrote the knobs.
    #[must_use]
    pub fn fence(self, name: &str) -> String {
        self.base(name) + ":fence"
    }

    /// The token leases granted in the bucket's current window: `throttle:<name>:leases`, a
    /// hash (lease id -> tokens reserved, `anchor`, `next`; see `lua/token_bucket_lease.lua`).
    #[must_use]
    pub fn leases(self, name: &str) -> String {
        self.base(name) + ":leases"
    }

    /// A [`LeakyBucket`](crate::LeakyBucket)'s recent drains: `throttle:<name>:drains`, a
    /// sorted set (request id -> Redis time), so a drain repeated after a lost reply is not
    /// applied twice (see `lua/leaky_bucket.lua`).
    #[must_use]
    pub fn drains(self, name: &str) -> String {
        self.base(name) + ":drains"
    }

    /// A [`LeakyBucket`](crate::LeakyBucket)'s state: `throttle:<name>:leaky`, a hash
    /// (`level`, `updated`, `blocked_until`, `rate`). Distinct from limitlion's bucket of the
    /// same name, so both kinds of limiter can share one throttle's knobs.
    #[must_use]
    pub fn leaky(self, name: &str) -> String {
        self.base(name) + ":leaky"
    }

    /// A [`ContinuousBucket`](crate::ContinuousBucket)'s state: `throttle:<name>:continuous`,
    /// a hash (`tokens`, `updated`, `capacity`, `period`).
    #[must_use]
    pub fn continuous(self, name: &str) -> String {
        self.base(name) + ":continuous"
    }

    /// A semaphore's holders: `throttle:<name>:holders`, a sorted set (member = holder id,
    /// score = lease deadline in milliseconds of Redis time).
    #[must_use]
    pub fn holders(self, name: &str) -> String {
        self.base(name) + ":holders"
    }

    /// A scheduled bucket's state: `throttle:<name>:scheduled`, a hash (fields `slot`, the
    /// latest reserved slot in microseconds of Redis time, and `tokens`, those left at it).
    #[must_use]
    pub fn scheduled(self, name: &str) -> String {
        self.base(name) + ":scheduled"
    }
}

/// Whether Redis Cluster would hash only part of `name`: a `{` followed later by a `}` with at
/// least one byte between them (the first such pair counts).
#[must_use]
pub fn has_hash_tag(name: &str) -> bool {
    name.find('{')
        .is_some_and(|open| name[open + 1..].find('}').is_some_and(|len| len > 0))
}

/// The suffixes a throttle's own keys add to its bucket key `throttle:<name>`.
pub const SUFFIXES: [&str; 9] = [
    ":knobs",
    ":history",
    ":fence",
    ":leases",
    ":drains",
    ":leaky",
    ":continuous",
    ":holders",
    ":scheduled",
];

/// The suffix `name` ends with, if its bucket key would be another throttle's key: the
/// bucket of `orders:knobs` is the knobs hash of `orders`.
#[must_use]
pub fn clashing_suffix(name: &str) -> Option<&'static str> {
    SUFFIXES.into_iter().find(|s| name.ends_with(s))
}

/// Checks a throttle name: any bytes are allowed (limitlion allows them), but it must not be
/// empty nor end with one of a throttle's key suffixes.
///
/// # Errors
/// The reason, as a sentence.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("throttle name must not be empty".to_owned());
    }
    if let Some(suffix) = clashing_suffix(name) {
        let other = &name[..name.len() - suffix.len()];
        return Err(format!(
            "throttle name {name:?} ends with {suffix:?}: its bucket would be the {} key of throttle {other:?}",
            &suffix[1..]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_whose_bucket_is_another_throttles_key_is_refused() {
        let k = KeyLayout::default();
        for suffix in SUFFIXES {
            let name = format!("orders{suffix}");
            let err = check_name(&name).unwrap_err();
            assert!(err.contains("\"orders\""), "{err}");
            assert_eq!(
                k.bucket(&name),
                format!("{}{suffix}", k.bucket("orders")),
                "the clash is real"
            );
        }
        for fine in ["orders", "knobs", "a:b", "x:knob", "orders:knobs:1", "{o}"] {
            check_name(fine).unwrap();
        }
        assert!(check_name("").is_err());
        // Every key a throttle owns besides its bucket is one of the suffixes.
        for layout in [k, KeyLayout { cluster: true }] {
            let bucket = layout.bucket("orders");
            for key in [
                layout.knobs("orders"),
                layout.history("orders"),
                layout.fence("orders"),
                layout.leases("orders"),
                layout.drains("orders"),
                layout.leaky("orders"),
                layout.continuous("orders"),
                layout.holders("orders"),
                layout.scheduled("orders"),
            ] {
                let suffix = key.strip_prefix(&bucket).unwrap();
                assert!(SUFFIXES.contains(&suffix), "{key}");
            }
        }
    }

    #[test]
    fn standalone_keys_are_limitlions() {
        let k = KeyLayout::default();
        assert_eq!(k.bucket("orders-db"), "throttle:orders-db");
        assert_eq!(k.knobs("orders-db"), "throttle:orders-db:knobs");
        assert_eq!(k.history("a b"), "throttle:a b:history");
        assert_eq!(k.leaky("orders-db"), "throttle:orders-db:leaky");
        assert_eq!(k.continuous("orders-db"), "throttle:orders-db:continuous");
        assert_eq!(k.holders("pool"), "throttle:pool:holders");
        assert_eq!(k.scheduled("api"), "throttle:api:scheduled");
        assert_eq!(k.leases("api"), "throttle:api:leases");
        assert_eq!(k.drains("api"), "throttle:api:drains");
    }

    #[test]
    fn cluster_keys_share_a_slot() {
        let k = KeyLayout { cluster: true };
        assert_eq!(k.bucket("orders"), "throttle:{orders}");
        assert_eq!(k.knobs("orders"), "throttle:{orders}:knobs");
        assert_eq!(k.holders("orders"), "throttle:{orders}:holders");
        assert_eq!(k.scheduled("orders"), "throttle:{orders}:scheduled");
        assert_eq!(k.knobs("t:{tenant}"), "throttle:t:{tenant}:knobs");
        assert_eq!(k.leaky("orders"), "throttle:{orders}:leaky");
        assert_eq!(k.continuous("orders"), "throttle:{orders}:continuous");
        assert_eq!(k.leases("orders"), "throttle:{orders}:leases");
        assert_eq!(k.drains("orders"), "throttle:{orders}:drains");
        // `{}` is not a hash tag: Redis hashes the whole key, so we still wrap.
        assert_eq!(k.knobs("a{}b"), "throttle:{a{}b}:knobs");
    }

    #[test]
    fn hash_tag_rule_matches_redis() {
        assert!(has_hash_tag("{a}"));
        assert!(has_hash_tag("x{a}y{b}"));
        assert!(!has_hash_tag("{}"));
        assert!(!has_hash_tag("{}a}"));
        assert!(!has_hash_tag("a{b"));
        assert!(!has_hash_tag("a}b{"));
    }
}
