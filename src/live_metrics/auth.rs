//! Live Metrics' Entra ID tokens (LIVE-METRICS.md §9): the Track path's token cache, so that one
//! token per (provider, scope) serves the whole process.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use reqwest::header::HeaderValue;

use super::client::LiveAuth;
use crate::auth::{AuthFailure, Bearer, TokenCache};

/// [`LiveAuth`] over the process's [`TokenCache`]: remembers the bearer it handed out, so that
/// a 401 drops exactly that token.
pub(crate) struct CacheAuth {
    cache: TokenCache,
    last: Mutex<Option<Bearer>>,
}

impl CacheAuth {
    pub(crate) fn new(cache: TokenCache) -> Self {
        CacheAuth {
            cache,
            last: Mutex::new(None),
        }
    }
}

impl LiveAuth for CacheAuth {
    fn bearer(&self) -> Pin<Box<dyn Future<Output = Result<HeaderValue, String>> + Send + '_>> {
        Box::pin(async move {
            let bearer = self.cache.bearer().await.map_err(|e| e.to_string())?;
            let value = bearer.header_value();
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(bearer);
            Ok(value)
        })
    }

    fn invalidate(&self) {
        let last = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(bearer) = last {
            self.cache.refused(AuthFailure::Unauthorized, &bearer);
        }
    }
}
