//! The cache as the sweeper sees it; apart so the resolver knows nothing of the sweeper.

use super::resolver::Resolver;

/// The cache as the sweeper sees it: expired entries out, audio trimmed to its budget.
pub struct Expiry(pub Resolver);

#[async_trait::async_trait]
impl crate::resources::sweeper::Expiring for Expiry {
    async fn expire(&self) -> u64 {
        match self.0.expire().await {
            Ok(r) => r.entries_removed + r.files_evicted,
            Err(e) => {
                tracing::warn!(error = %e, "cache expiry failed");
                0
            }
        }
    }
}
