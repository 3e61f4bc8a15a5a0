//! Feature `azure-identity`: `azure_core` credentials as [`TokenProvider`]s, and the managed
//! identity that `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` asks for.
//!
//! The credentials' HTTP client (`reqwest`) needs a Tokio runtime: their futures are polled by
//! the token cache's fetch task, on the exporter's transmit worker thread, inside its Tokio
//! current-thread runtime (with I/O and timers), whichever processor drives the exporter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};

use super::settings::AuthenticationString;
use super::{AccessToken, ProviderRef, TokenError, TokenFuture, TokenProvider};

/// An `azure_core` credential as a token provider.
pub(super) struct Credential(pub(super) Arc<dyn TokenCredential>);

impl TokenProvider for Credential {
    fn get_token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let token = self
                .0
                .get_token(&[scope], None)
                .await
                .map_err(TokenError::new)?;
            let nanos = token.expires_on.unix_timestamp_nanos();
            let expires_at = u64::try_from(nanos)
                .ok()
                .map_or(SystemTime::UNIX_EPOCH, |n| {
                    SystemTime::UNIX_EPOCH + Duration::from_nanos(n)
                });
            Ok(AccessToken::new(token.token.secret(), expires_at))
        })
    }
}

/// The managed identity of `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`. Its credential keeps
/// its token until the token nears expiry; after the service refused that token (401), it is
/// replaced by a new credential, whose first call fetches a new token from the identity
/// endpoint.
struct ManagedIdentity {
    client_id: Option<String>,
    credential: Mutex<Arc<dyn TokenCredential>>,
}

impl ManagedIdentity {
    fn credential(client_id: Option<&str>) -> azure_core::Result<Arc<dyn TokenCredential>> {
        let options = ManagedIdentityCredentialOptions {
            user_assigned_id: client_id.map(|id| UserAssignedId::ClientId(id.to_owned())),
            ..ManagedIdentityCredentialOptions::default()
        };
        Ok(ManagedIdentityCredential::new(Some(options))?)
    }
}

impl TokenProvider for ManagedIdentity {
    fn get_token<'a>(&'a self, scope: &'a str) -> TokenFuture<'a> {
        let credential = Arc::clone(
            &self
                .credential
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        Box::pin(async move { Credential(credential).get_token(scope).await })
    }

    fn token_refused(&self, _: &AccessToken) {
        // The environment is read again; if the credential can no longer be made, the old
        // one stays.
        if let Ok(fresh) = Self::credential(self.client_id.as_deref()) {
            *self
                .credential
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = fresh;
        }
    }
}

/// The managed identity `parsed` names, one per identity for the whole process (so that every
/// exporter shares its token). `azure_identity` picks the source from the environment: App
/// Service and Functions (`IDENTITY_ENDPOINT` and `IDENTITY_HEADER`), else the VM's IMDS
/// endpoint.
///
/// # Errors
///
/// Why the managed identity cannot be used here (Service Fabric, Azure Arc and Azure ML are not
/// supported by `azure_identity` 1.0).
pub(super) fn managed_identity(parsed: &AuthenticationString) -> Result<ProviderRef, String> {
    static CREDENTIALS: Mutex<Option<HashMap<Option<String>, ProviderRef>>> = Mutex::new(None);
    let client_id = match parsed {
        AuthenticationString::SystemAssigned => None,
        AuthenticationString::UserAssigned(id) => Some(id.to_ascii_lowercase()),
    };
    let mut credentials = CREDENTIALS.lock().unwrap_or_else(PoisonError::into_inner);
    let credentials = credentials.get_or_insert_with(HashMap::new);
    if let Some(provider) = credentials.get(&client_id) {
        return Ok(provider.clone());
    }
    let credential =
        ManagedIdentity::credential(client_id.as_deref()).map_err(|e| e.to_string())?;
    let provider = ProviderRef::new(Arc::new(ManagedIdentity {
        client_id: client_id.clone(),
        credential: Mutex::new(credential),
    }));
    credentials.insert(client_id, provider.clone());
    Ok(provider)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use azure_core::credentials::{AccessToken as AzureToken, TokenRequestOptions};
    use azure_core::time::OffsetDateTime;

    #[derive(Debug)]
    struct Fixed(Option<&'static str>);

    #[async_trait::async_trait]
    impl TokenCredential for Fixed {
        async fn get_token(
            &self,
            scopes: &[&str],
            _: Option<TokenRequestOptions<'_>>,
        ) -> azure_core::Result<AzureToken> {
            assert_eq!(scopes, ["https://monitor.azure.com//.default"]);
            match self.0 {
                Some(secret) => Ok(AzureToken::new(
                    secret,
                    OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap(),
                )),
                None => Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "no identity here",
                )),
            }
        }
    }

    #[tokio::test]
    async fn credentials_become_tokens() {
        let ok = Credential(Arc::new(Fixed(Some("s3cr3t"))));
        let token = ok
            .get_token("https://monitor.azure.com//.default")
            .await
            .unwrap();
        assert_eq!(token.secret(), "s3cr3t");
        assert_eq!(
            token.expires_at(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)
        );
        assert!(!format!("{token:?}").contains("s3cr3t"));

        let failing = Credential(Arc::new(Fixed(None)));
        let error = failing
            .get_token("https://monitor.azure.com//.default")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("no identity here"), "{error}");
    }

    #[test]
    fn one_credential_shares_one_identity() {
        let credential: Arc<dyn TokenCredential> = Arc::new(Fixed(Some("x")));
        let a = ProviderRef::credential(Arc::clone(&credential));
        let b = ProviderRef::credential(credential);
        assert_eq!(a.identity, b.identity);
        assert!(!Arc::ptr_eq(&a.provider, &b.provider));
    }
}
