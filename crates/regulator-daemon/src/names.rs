//! Which policy governs each throttle name. Two controllers must never write one knobs hash:
//! a plain policy's name is reserved by it, and a template's generated name
//! (`<prefix><label value>`) is governed by the first policy that claims it; a later claim by
//! another policy is refused, counted and logged.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The owners of throttle names, shared by every policy of one daemon.
#[derive(Debug, Default)]
pub struct Names {
    owners: Mutex<HashMap<String, Owner>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    policy: String,
    /// A plain policy's own name: a template cannot take it, even first.
    reserved: bool,
}

impl Names {
    /// Reserves the names of plain (non-templated) `policies`, taking them from any template
    /// that had claimed one; the reservations of plain policies not listed are dropped.
    pub fn reserve<'a>(&self, policies: impl IntoIterator<Item = &'a str>) {
        let mut owners = self.owners();
        owners.retain(|_, o| !o.reserved);
        for name in policies {
            owners.insert(
                name.to_owned(),
                Owner {
                    policy: name.to_owned(),
                    reserved: true,
                },
            );
        }
    }

    /// Claims `name` for `policy`. True when `policy` governs it (now or already); false
    /// when another policy does.
    pub fn claim(&self, name: &str, policy: &str) -> bool {
        let mut owners = self.owners();
        if let Some(o) = owners.get(name) {
            return o.policy == policy;
        }
        owners.insert(
            name.to_owned(),
            Owner {
                policy: policy.to_owned(),
                reserved: false,
            },
        );
        true
    }

    /// Who governs `name`, if any policy does.
    #[must_use]
    pub fn owner(&self, name: &str) -> Option<String> {
        self.owners().get(name).map(|o| o.policy.clone())
    }

    /// `policy` no longer governs `name` (it left the template's answer).
    pub fn release(&self, name: &str, policy: &str) {
        let mut owners = self.owners();
        if owners
            .get(name)
            .is_some_and(|o| o.policy == policy && !o.reserved)
        {
            owners.remove(name);
        }
    }

    /// `policy` left the configuration: every name it claimed is free.
    pub fn release_policy(&self, policy: &str) {
        self.owners()
            .retain(|_, o| o.reserved || o.policy != policy);
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<String, Owner>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_wins_and_a_plain_name_is_never_taken() {
        let names = Names::default();
        names.reserve(["orders-db"]);
        assert!(
            !names.claim("orders-db", "tenants"),
            "a plain policy's name"
        );
        assert!(names.claim("tenant-a", "tenants"));
        assert!(
            names.claim("tenant-a", "tenants"),
            "claimed again by its owner"
        );
        assert!(!names.claim("tenant-a", "other-template"));
        assert_eq!(names.owner("tenant-a").as_deref(), Some("tenants"));

        names.release("tenant-a", "other-template");
        assert_eq!(
            names.owner("tenant-a").as_deref(),
            Some("tenants"),
            "not its to free"
        );
        names.release_policy("tenants");
        assert!(names.claim("tenant-a", "other-template"));

        // A reload turns a generated name into a plain policy's: the plain one wins.
        names.reserve(["orders-db", "tenant-a"]);
        assert!(!names.claim("tenant-a", "other-template"));
        names.release_policy("tenant-a");
        assert_eq!(
            names.owner("tenant-a").as_deref(),
            Some("tenant-a"),
            "reserved"
        );
        names.reserve(["orders-db"]);
        assert_eq!(names.owner("tenant-a"), None);
    }
}
