//! API keys for the management API: a secret shown once, stored only as its SHA-256.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::random_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// List and get.
    Read,
    /// Everything.
    Write,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            other => Err(format!("unknown role {other:?}: use read or write")),
        }
    }
}

/// A stored key: its hash, never the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub hash: String,
    pub role: Role,
    pub name: String,
    pub created: DateTime<Utc>,
    /// Refused from then on (`kickoff api-key create --expires-in`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Refused from then on (`kickoff api-key revoke`); the record stays, for the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// A fresh secret (256 bits from the OS CSPRNG, `kk_` + 64 hex) and the record to store.
    pub fn generate(role: Role, name: &str, now: DateTime<Utc>) -> (String, ApiKey) {
        let secret = format!("kk_{}", hex::encode(random_bytes::<32>()));
        let key = ApiKey::from_secret(&secret, role, name, now);
        (secret, key)
    }

    /// The record for a known secret (the embedded server's `KICKOFF_DEV_API_KEY`).
    pub fn from_secret(secret: &str, role: Role, name: &str, now: DateTime<Utc>) -> ApiKey {
        ApiKey {
            hash: hash_secret(secret),
            role,
            name: name.to_string(),
            created: now,
            expires_at: None,
            revoked_at: None,
        }
    }

    /// Whether the key lets its holder in at `now`: not revoked, not expired.
    pub fn usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none_or(|t| t > now) && self.expires_at.is_none_or(|t| t > now)
    }

    /// The first 12 hex digits of the key's hash: how `kickoff api-key list` shows it and `revoke` names it.
    pub fn id(&self) -> &str {
        self.hash.get(..12).unwrap_or(&self.hash)
    }

    /// Whether `secret` is this key, compared in constant time.
    pub fn matches(&self, secret: &str) -> bool {
        hash_secret(secret).as_bytes().ct_eq(self.hash.as_bytes()).into()
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_hashed_and_match_only_their_secret() {
        let (secret, key) = ApiKey::generate(Role::Write, "t", Utc::now());
        assert!(secret.starts_with("kk_") && secret.len() == 67);
        assert!(!key.hash.contains(&secret[3..]));
        assert!(key.matches(&secret));
        assert!(!key.matches("kk_wrong"));
    }
}
